"""Switching to fastsession without logging anyone out: sessions made by the real old stores, then read here.

Flask-Session (Redis and filesystem) through Flask's test client, and
Django's file, db, cache and cached_db backends in processes of their own
(a deploy: the old app logs users in, the new one is started with
FASTSESSION_MIGRATE_FROM).
"""

import json
import os
import pickle
import subprocess
import sys
import uuid
import warnings

import pytest
import redis
from flask import Flask, session

from fastsession.contrib.flask import FastSessionInterface
from fastsession.migrate import FlaskSessionFiles, FlaskSessionRedis, plain_pickle

SECRET = "fastsession-migration-" + "k" * 20


def views(app):
    @app.route("/login")
    def login():
        session["user"] = "ann"
        session["cart"] = [1, 2]
        return "ok"

    @app.route("/whoami")
    def whoami():
        session["visits"] = session.get("visits", 0) + 1
        return f"{session.get('user')} {session.get('cart')} {session['visits']}"

    return app


def old_flask_session_app(**config):
    from flask_session import Session

    app = views(Flask("old"))
    app.config.update(SECRET_KEY=SECRET, **config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the filesystem interface is deprecated
        Session(app)
    return app


def new_app(directory, reader):
    app = views(Flask("new"))
    app.config.update(SECRET_KEY=SECRET)
    app.session_interface = FastSessionInterface(directory, migrate_from=reader)
    return app


def switch(old_app, new_app_):
    """Log in on the old app, then bring the same browser (its cookie) to the new one."""
    old = old_app.test_client()
    assert old.get("/login").status_code == 200
    cookie = old.get_cookie("session").value
    new = new_app_.test_client()
    new.set_cookie("session", cookie)
    return cookie, new


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.mark.parametrize("signed", [False, True])
def test_flask_session_redis_users_stay_logged_in_and_the_old_record_goes(client, tmp_path, signed):
    prefix = f"session-{uuid.uuid4().hex[:6]}:"
    old_app = old_flask_session_app(
        SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix, SESSION_USE_SIGNER=signed
    )
    reader = FlaskSessionRedis(client, key_prefix=prefix, use_signer=signed, secret_key=SECRET)
    cookie, browser = switch(old_app, new_app(str(tmp_path / "s"), reader))
    sid = cookie.rsplit(".", 1)[0] if signed else cookie
    assert client.exists(prefix + sid) == 1
    assert browser.get("/whoami").text == "ann [1, 2] 1"
    assert client.exists(prefix + sid) == 0  # moved, not copied
    now = browser.get_cookie("session").value
    assert now == sid  # the same id (a signed cookie becomes the bare id)
    assert browser.get("/whoami").text == "ann [1, 2] 2"  # from fastsession now


def test_flask_session_files_users_stay_logged_in_and_the_old_file_goes(tmp_path):
    cache_dir = str(tmp_path / "flask_session")
    old_app = old_flask_session_app(SESSION_TYPE="filesystem", SESSION_FILE_DIR=cache_dir)
    reader = FlaskSessionFiles(cache_dir)
    cookie, browser = switch(old_app, new_app(str(tmp_path / "s"), reader))
    old_file = reader.path("session:" + cookie)
    assert os.path.exists(old_file)
    assert browser.get("/whoami").text == "ann [1, 2] 1"
    assert not os.path.exists(old_file)
    assert browser.get_cookie("session").value == cookie
    assert browser.get("/whoami").text == "ann [1, 2] 2"


class Planted:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_is_never_run_and_migrates_nothing(tmp_path, caplog):
    cache_dir = str(tmp_path / "flask_session")
    os.mkdir(cache_dir)
    reader = FlaskSessionFiles(cache_dir)
    marker = tmp_path / "ran"
    payload = Planted()
    payload.marker = marker
    sid = "A" * 43
    with open(reader.path("session:" + sid), "wb") as f:
        f.write(b"\0\0\0\0" + pickle.dumps({"user": "admin", "x": payload}))
    browser = new_app(str(tmp_path / "s"), reader).test_client()
    browser.set_cookie("session", sid)
    assert browser.get("/whoami").text == "None None 1"  # a fresh session, not the planted one
    assert not marker.exists()
    assert "not plain data" in caplog.text
    assert os.path.exists(reader.path("session:" + sid))  # left as it was: not ours to judge


def test_an_expired_or_unknown_old_record_is_not_migrated(client, tmp_path):
    cache_dir = str(tmp_path / "flask_session")
    os.mkdir(cache_dir)
    reader = FlaskSessionFiles(cache_dir)
    sid = "B" * 43
    with open(reader.path("session:" + sid), "wb") as f:
        f.write((1).to_bytes(4, "little") + pickle.dumps({"user": "ann"}, 5))  # expired in 1970
    browser = new_app(str(tmp_path / "s"), reader).test_client()
    browser.set_cookie("session", sid)
    assert browser.get("/whoami").text == "None None 1"
    other = new_app(str(tmp_path / "s2"), FlaskSessionRedis(client, key_prefix="none:")).test_client()
    other.set_cookie("session", "C" * 43)
    assert other.get("/whoami").text == "None None 1"


def test_plain_pickle_reads_plain_data_and_refuses_the_rest():
    import datetime

    value = {
        "s": "é" * 300,
        "b": b"x" * 300,
        "i": [0, 255, 65535, 2**31 - 1, -5, 10**30],
        "f": 1.5,
        "t": (1, (2,), ()),
        "n": None,
        "yes": True,
        "no": False,
        "nested": {"k": [{"a": 1}]},
    }
    for protocol in (3, 4, 5):
        assert plain_pickle(pickle.dumps(value, protocol)) == value
    for bad in (
        pickle.dumps({"d": datetime.date(2026, 1, 1)}),
        pickle.dumps({1, 2}),
        b"\x80\x05",
        b"\x80\x05a.",
        b"\x80\x05K\x01K\x02.",
    ):
        with pytest.raises(ValueError):
            plain_pickle(bad)


# -- Django: the old engine's app logs in; the new one, switched, keeps the user -----------------

DJANGO_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "django_switch_app.py")


def django_app(action, workdir, engine, redis_url, cookie=""):
    done = subprocess.run(
        [sys.executable, DJANGO_APP, action, workdir, engine, redis_url, cookie],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("engine", ["file", "db", "cache", "cached_db"])
def test_django_users_stay_logged_in_across_the_switch_and_the_old_record_goes(engine, tmp_path, redis_url):
    workdir = str(tmp_path)
    old = django_app("login", workdir, engine, redis_url)  # Django's own engine, a real login
    assert old["old_record"] is True
    new = django_app("whoami", workdir, engine, redis_url, old["cookie"])  # fastsession, migrating
    assert new["user"] == "ann" and new["cookie"] == old["cookie"]  # the same user, the same key
    assert new["old_record"] is False
    again = django_app("whoami", workdir, engine, redis_url, old["cookie"])  # from fastsession now
    assert again["user"] == "ann" and again["old_record"] is False


# -- a planted or odd old record migrates nothing that cannot be stored and breaks nothing (issue 24, 8-10) -----


def odd_login(app):
    @app.route("/odd")
    def odd():
        session["user"] = "ann"
        session["blob"] = b"\x00\x01raw"  # Flask-Session stores bytes (msgpack bin); JSON cannot
        session["by_id"] = {7: "seven"}  # an int key, as msgpack keeps it
        return "ok"

    return app


def test_a_real_flask_session_record_with_bytes_and_int_keys_migrates_what_it_can(client, tmp_path, caplog):
    prefix = f"session-{uuid.uuid4().hex[:6]}:"
    old_app = odd_login(old_flask_session_app(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix))
    old = old_app.test_client()
    assert old.get("/odd").status_code == 200
    browser = new_app(str(tmp_path / "s"), FlaskSessionRedis(client, key_prefix=prefix)).test_client()
    browser.set_cookie("session", old.get_cookie("session").value)
    assert browser.get("/whoami").text == "ann None 1"  # kept: the user; int keys as str, as JSON has them
    assert "'blob'" in caplog.text  # left out, and said so
    assert browser.get("/whoami").text == "ann None 2"  # and never a 500, now or later


def test_msgpack_extension_types_and_deep_nesting_migrate_nothing_they_hold(client, tmp_path, caplog):
    import msgspec

    prefix = f"session-{uuid.uuid4().hex[:6]}:"
    ext, deep = "D" * 43, "E" * 43
    client.set(prefix + ext, msgspec.msgpack.encode({"user": "ann", "x": msgspec.msgpack.Ext(5, b"opaque")}))
    nested = b"\x91" * 10_000 + b"\xc0"  # a list in a list ... 10,000 deep
    client.set(prefix + deep, b"\x82\xa4user\xa3bob\xa1x" + nested)
    app = new_app(str(tmp_path / "s"), FlaskSessionRedis(client, key_prefix=prefix))
    for sid, who in ((ext, "ann"), (deep, "None")):
        browser = app.test_client()
        browser.set_cookie("session", sid)
        assert browser.get("/whoami").status_code == 200
        assert browser.get("/whoami").text.startswith(who)


def billion_laughs(levels=9, width=10):
    """A small pickle of {"user": "ann", "l0": [1], "l1": [l0] * width, ...}: each list holds `width` references
    to the one before it, so "l9" alone unfolds into width**levels values."""

    def text(value):
        return b"\x8c" + bytes([len(value)]) + value.encode()

    out = bytearray(b"\x80\x05}(" + text("user") + text("ann"))
    out += text("l0") + b"]\x94K\x01a"  # memo 0 = [1]
    for level in range(1, levels + 1):  # memo level = [memo level-1] * width
        out += text(f"l{level}") + b"]\x94(" + (b"h" + bytes([level - 1])) * width + b"e"
    return bytes(out + b"u.")


def test_a_billion_laughs_pickle_is_bounded_before_it_is_encoded(tmp_path, caplog):
    cache_dir = str(tmp_path / "flask_session")
    os.mkdir(cache_dir)
    reader = FlaskSessionFiles(cache_dir)
    sid = "F" * 43
    body = billion_laughs()
    assert len(body) < 1000
    data = plain_pickle(body)  # read in no time: the shared lists are shared, not copied
    assert data["user"] == "ann"
    with open(reader.path("session:" + sid), "wb") as f:
        f.write(b"\0\0\0\0" + body)
    browser = new_app(str(tmp_path / "s"), reader).test_client()
    browser.set_cookie("session", sid)
    assert browser.get("/whoami").text == "None None 1"  # nothing of it: it would be ~10**9 values
    assert "values" in caplog.text


@pytest.mark.parametrize("plant", ["fifo", "dev-zero", "directory"])
def test_an_old_record_that_is_no_file_is_never_read(tmp_path, plant):
    cache_dir = str(tmp_path / "flask_session")
    os.mkdir(cache_dir)
    reader = FlaskSessionFiles(cache_dir)
    sid = "G" * 43
    path = reader.path("session:" + sid)
    {
        "fifo": lambda: os.mkfifo(path),
        "dev-zero": lambda: os.symlink("/dev/zero", path),
        "directory": lambda: os.mkdir(path),
    }[plant]()
    browser = new_app(str(tmp_path / "s"), reader).test_client()
    browser.set_cookie("session", sid)
    assert browser.get("/whoami").text == "None None 1"  # no hang, no MemoryError


class QuietPickle:
    """A SESSION_SERIALIZER with an innocent name that unpickles all the same."""

    def dumps(self, obj):
        return pickle.dumps(obj)

    def loads(self, data):
        return pickle.loads(data)


def test_django_refuses_a_serializer_that_rebuilds_objects_whatever_its_name():
    pytest.importorskip("django")
    from django.core.signing import JSONSerializer

    from fastsession.contrib.django import builds_objects

    assert builds_objects(QuietPickle) is True
    assert builds_objects(JSONSerializer) is False
