"""fastsession.contrib.flask through Flask's own test client and real processes."""

import logging
import os
import re
import time

import flask
import pytest
from conftest import session_files
from helpers import run_in_processes, stored_relpath

import fastsession
from fastsession.contrib.flask import FastSessionInterface

ID = re.compile(r"[A-Za-z0-9_-]{43}")


def make_app(directory, **options):
    app = flask.Flask(__name__)
    app.session_interface = FastSessionInterface(directory, **options)
    app.config["TESTING"] = True

    @app.route("/count")
    def count():
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    @app.route("/peek")
    def peek():
        return str(flask.session.get("n"))

    @app.route("/nothing")
    def nothing():
        return "ok"

    @app.route("/clear")
    def clear():
        flask.session.clear()
        return "cleared"

    @app.route("/login")
    def login():
        flask.session.regenerate()
        flask.session["user"] = "ann"
        return "in"

    @app.route("/boom")
    def boom():
        flask.session["n"] = -1
        raise RuntimeError("view bug")

    @app.route("/locked")
    def locked():
        flask.session.get("n")
        held = [f for f in session_files(directory) if f.endswith(".lock")]
        return str(len(held))

    @app.route("/permanent")
    def permanent():
        flask.session.permanent = True
        flask.session["p"] = 1
        return "p"

    return app


@pytest.fixture
def app(session_dir):
    return make_app(session_dir)


def set_cookies(response):
    return response.headers.getlist("Set-Cookie")


def test_cookie_carries_only_the_opaque_id(app, session_dir):
    client = app.test_client()
    response = client.get("/count")
    (cookie,) = set_cookies(response)
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == "session" and ID.fullmatch(value)
    assert "HttpOnly" in cookie and "Path=/" in cookie
    assert session_files(session_dir) == [stored_relpath(value)]
    assert [client.get("/count").data for _ in range(2)] == [b"2", b"3"]


def test_request_that_never_writes_sends_and_stores_nothing(app, session_dir):
    client = app.test_client()
    response = client.get("/nothing")
    assert set_cookies(response) == []
    response = client.get("/peek")  # reads: Vary, but still nothing stored
    assert set_cookies(response) == [] and "Cookie" in response.headers.get("Vary", "")
    assert session_files(session_dir) == []


def test_reading_an_existing_session_varies_on_cookie_without_resending_it(app):
    client = app.test_client()
    client.get("/count")
    response = client.get("/peek")
    assert response.data == b"1"
    assert set_cookies(response) == []
    assert "Cookie" in response.headers["Vary"]


def test_cleared_session_deletes_record_and_cookie(app, session_dir):
    client = app.test_client()
    client.get("/count")
    response = client.get("/clear")
    (cookie,) = set_cookies(response)
    assert cookie.startswith("session=;") and "Expires=Thu, 01 Jan 1970" in cookie
    assert session_files(session_dir) == []


@pytest.mark.parametrize("forged", ["A" * 43, "../../etc/passwd", "x", "A" * 42 + "\n"])
def test_forged_or_unknown_id_is_never_adopted(app, forged, session_dir):
    client = app.test_client()
    client.set_cookie("session", forged)
    response = client.get("/count")
    (cookie,) = set_cookies(response)
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value != forged and ID.fullmatch(value)
    assert response.data == b"1"


def test_regenerate_issues_a_new_id_and_deletes_the_old(app, session_dir):
    client = app.test_client()
    old = set_cookies(client.get("/count"))[0].split(";")[0].split("=", 1)[1]
    response = client.get("/login")
    new = set_cookies(response)[0].split(";")[0].split("=", 1)[1]
    assert new != old
    assert session_files(session_dir) == [stored_relpath(new)]
    assert client.get("/peek").data == b"1"  # the data moved with it


def test_flask_cookie_settings_are_honoured(session_dir):
    app = make_app(session_dir)
    app.config.update(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_DOMAIN="example.org",
        SESSION_COOKIE_PATH="/app",
    )
    (cookie,) = set_cookies(app.test_client().get("/count", base_url="https://example.org"))
    assert cookie.startswith("sid=")
    for part in ("Secure", "SameSite=Strict", "Domain=example.org", "Path=/app"):
        assert part in cookie
    assert "HttpOnly" not in cookie


def test_permanent_session_cookie_expires_after_the_lifetime(app):
    from datetime import timedelta

    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=3)
    (cookie,) = set_cookies(app.test_client().get("/permanent"))
    assert "Expires=" in cookie


def test_lock_is_held_during_the_request_and_released_after(app, session_dir):
    client = app.test_client()
    client.get("/count")
    assert client.get("/locked").data == b"1"
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]


def test_lock_is_released_when_the_view_raises(session_dir):
    app = make_app(session_dir, timeout=2)
    app.config["TESTING"] = False  # let Flask turn the error into a 500
    client = app.test_client()
    client.get("/count")
    assert client.get("/boom").status_code == 500
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]
    # As with Flask's own sessions, Flask saves the session on its error path too.
    assert client.get("/count").data == b"0"


def test_no_locking_option(session_dir):
    app = make_app(session_dir, concurrent=0)
    client = app.test_client()
    client.get("/count")
    assert client.get("/locked").data == b"0"


def test_four_processes_through_the_test_client_lose_no_update(app, session_dir):
    client = app.test_client()
    cookie = set_cookies(client.get("/count"))[0].split(";")[0].split("=", 1)[1]

    def worker():
        own = app.test_client()
        own.set_cookie("session", cookie)
        for _ in range(50):
            assert own.get("/count").status_code == 200

    run_in_processes(worker)
    assert client.get("/peek").data == b"201"


def count_then_fail_after_the_view(app):
    """A request that stores a session, then one whose after_request hook raises: save_session never runs."""

    @app.after_request
    def broken_hook(response):
        if flask.request.path == "/peek":
            raise RuntimeError("after_request bug: save_session is never reached")
        return response

    client = app.test_client()
    client.get("/count")
    with pytest.raises(RuntimeError):
        client.get("/peek")
    return client


def test_lock_is_released_at_teardown_when_save_session_never_runs(session_dir):
    client = count_then_fail_after_the_view(make_app(session_dir, timeout=2))
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]
    assert client.get("/count").data == b"2"


def test_one_teardown_receiver_serves_every_interface_and_app(tmp_path):
    from flask.signals import request_tearing_down

    apps = [make_app(str(tmp_path / name), timeout=2) for name in ("a", "b")]
    receivers = len(request_tearing_down.receivers)
    more = [FastSessionInterface(str(tmp_path / f"more{n}")) for n in range(3)]
    assert len(request_tearing_down.receivers) == receivers  # not one more per interface
    for app in apps:
        count_then_fail_after_the_view(app)
    del more
    for name in ("a", "b"):  # each app's lock went at its teardown
        assert not [f for f in session_files(str(tmp_path / name)) if f.endswith(".lock")]


READS = {
    "in": lambda s: "user" in s,
    "len": len,
    "bool": bool,
    "iter": list,
    "keys": lambda s: s.keys(),
    "values": lambda s: s.values(),
    "items": lambda s: s.items(),
    "get": lambda s: s.get("user"),
}


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
def test_every_kind_of_read_marks_the_session_accessed(read):
    from fastsession.contrib.flask import FlaskSession

    session = FlaskSession("x" * 43, {"user": "ann"})
    read(session)
    assert session.accessed  # Flask before 3.1.3 sends Vary: Cookie only for an accessed session


def test_a_view_that_only_tests_membership_gets_vary_cookie(tmp_path):
    app = make_app(str(tmp_path / "s"))

    @app.route("/member")
    def member():
        return "yes" if "n" in flask.session else "no"

    client = app.test_client()
    client.get("/count")
    response = client.get("/member")
    assert response.text == "yes"
    assert "Cookie" in response.headers.get("Vary", "")


@pytest.mark.parametrize(
    "apps_vary, sent",
    [
        ([], "Cookie"),
        (["Accept-Encoding"], "Accept-Encoding, Cookie"),
        (["accept-encoding, COOKIE"], "accept-encoding, COOKIE"),
        (["*"], "*"),
        (["Accept-Encoding", "Origin"], "Accept-Encoding, Origin, Cookie"),  # werkzeug's own add kept the first only
    ],
)
def test_a_session_adds_cookie_to_the_apps_own_vary_once_and_keeps_the_rest(tmp_path, apps_vary, sent):
    app = make_app(str(tmp_path / "s"))

    @app.route("/varied")
    def varied():
        flask.session["n"] = 1  # stored, so the response also sets the cookie (a second Vary: Cookie asked for)
        response = flask.make_response("ok")
        for value in apps_vary:
            response.headers.add("Vary", value)
        return response

    response = app.test_client().get("/varied")
    assert response.headers.getlist("Vary") == [sent]
    assert response.headers.getlist("Set-Cookie")


# -- behaving like Flask's own session (issue 25) ----------------------------


def held(directory, session_id, cookie="session"):
    """A store in another 'request' that holds the session's lock until rolled back."""
    from conftest import Transaction

    import fastsession

    store = fastsession.SessionStore(Transaction({"SID": session_id}), directory)
    assert store.get_session(False) is not None
    return store


def counted(client):
    response = client.get("/count")
    return (
        response.headers.getlist("Set-Cookie")[0].split(";")[0].split("=", 1)[1]
        if response.headers.getlist("Set-Cookie")
        else None
    )


def test_a_request_that_never_touches_the_session_takes_no_lock(session_dir, caplog):
    app = make_app(session_dir, timeout=0.05)
    client = app.test_client()
    sid = counted(client)
    holder = held(session_dir, sid)  # another request of this user is in the middle of its work
    try:
        with caplog.at_level(logging.WARNING, "fastsession"):
            untouched = client.get("/nothing")
        assert not caplog.records  # it never waited for the lock (a wait out of time is logged)
        touched = client.get("/peek")
    finally:
        holder.rollback()
    assert untouched.status_code == 200 and untouched.text == "ok"  # ran beside it, not queued behind it
    assert "Cookie" not in untouched.headers.get("Vary", "")
    assert touched.status_code == 503 and touched.headers["Retry-After"] == "1"  # a read does wait for the lock
    assert client.get("/count").text == "2"


def test_session_transaction_on_a_new_and_an_existing_session(app, session_dir):
    client = app.test_client()
    with client.session_transaction() as sess:
        assert len(sess) == 0
        sess["n"] = 41
    assert client.get("/count").text == "42"  # the transaction's change was stored, and its cookie kept
    with client.session_transaction() as sess:
        assert sess["n"] == 42
        sess["n"] = 9
    assert client.get("/count").text == "10"
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]  # no lock left behind


def test_flask_tagged_types_round_trip_and_are_stored_as_json(session_dir):
    import datetime
    import json
    import uuid

    from markupsafe import Markup

    app = make_app(session_dir)
    when = datetime.datetime(2026, 12, 7, 1, 2, 3, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    kept = {
        "t": (1, (2, 3)),
        "b": b"\xff\x00",
        "m": Markup("<b>ok</b>"),
        "u": ident,
        "d": when,
        "nested": {"inner": [(4, 5), b"x"]},
        "looks_tagged": {" t": "not-a-tuple"},
    }

    @app.route("/put")
    def put():
        flask.session.update(kept)
        return ""

    @app.route("/types")
    def types():
        values = {key: flask.session[key] for key in kept}
        assert values == kept
        assert type(values["m"]) is Markup and type(values["b"]) is bytes and type(values["t"]) is tuple
        return "same"

    client = app.test_client()
    sid = client.get("/put").headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert client.get("/types").text == "same"
    (path,) = [f for f in session_files(session_dir) if not f.endswith(".lock")]
    stored = json.loads(open(os.path.join(session_dir, path), "rb").read().split(b"\n", 1)[1])
    assert stored["t"] == {" t": [1, {" t": [2, 3]}]} and stored["m"] == {" m": "<b>ok</b>"}
    assert sid not in json.dumps(stored)


def test_unchanged_tagged_values_are_not_rewritten(session_dir):
    app = make_app(session_dir)

    @app.route("/put")
    def put():
        flask.session["t"] = (1, 2)
        return ""

    @app.route("/read")
    def read():
        return str(flask.session["t"])

    client = app.test_client()
    client.get("/put")
    (path,) = [os.path.join(session_dir, f) for f in session_files(session_dir) if not f.endswith(".lock")]
    before = os.stat(path).st_ino
    assert client.get("/read").text == "(1, 2)"
    assert os.stat(path).st_ino == before  # a commit renames a new file in: none happened


def test_a_change_to_an_existing_session_sends_the_cookie_again(app):
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False

    @app.route("/forget")
    def forget():
        flask.session.permanent = False
        return ""

    client = app.test_client()
    first = client.get("/permanent").headers["Set-Cookie"]
    assert "Expires=" in first
    assert "Set-Cookie" not in client.get("/peek").headers  # read only, refresh off: nothing to send
    again = client.get("/forget").headers["Set-Cookie"]  # changed: the browser must hear of it
    assert "Expires=" not in again and again.split(";")[0] == first.split(";")[0]


def test_accessed_and_modified_mean_what_they_mean_in_flask(app):
    from flask.globals import request_ctx

    client = app.test_client()
    with client:
        client.get("/nothing")
        assert not request_ctx._session.accessed and not request_ctx._session.modified
    with client:
        client.get("/count")
        assert request_ctx._session.accessed and request_ctx._session.modified
    with client:
        client.get("/peek")
        assert request_ctx._session.accessed and not request_ctx._session.modified


def left_idle(session_dir, seconds):
    """The one stored session of ``session_dir``, last used ``seconds`` ago."""
    (path,) = [os.path.join(session_dir, f) for f in session_files(session_dir) if not f.endswith(".lock")]
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_sessions_expire_on_the_server_after_permanent_session_lifetime(session_dir):
    import datetime

    app = make_app(session_dir)
    app.permanent_session_lifetime = datetime.timedelta(seconds=100)
    client = app.test_client()
    client.get("/count")
    left_idle(session_dir, 50)
    assert client.get("/count").text == "2"  # idle 50 s of 100: kept
    left_idle(session_dir, 101)
    assert client.get("/count").text == "1"  # idle longer than the lifetime: gone on the server


def test_a_lifetime_changed_between_requests_is_the_one_the_server_keeps(session_dir):
    import datetime

    app = make_app(session_dir)
    app.permanent_session_lifetime = datetime.timedelta(seconds=1000)
    client = app.test_client()
    client.get("/count")
    left_idle(session_dir, 200)
    assert client.get("/count").text == "2"  # idle 200 s of 1000: kept
    app.config["PERMANENT_SESSION_LIFETIME"] = 100  # as seconds now, and shorter
    left_idle(session_dir, 200)
    assert client.get("/count").text == "1"  # idle 200 s of 100: gone
    app.permanent_session_lifetime = datetime.timedelta(seconds=1000)  # back, as a timedelta
    left_idle(session_dir, 200)
    assert client.get("/count").text == "2"  # the new session, idle 200 s of 1000 again: kept


def test_an_explicit_max_age_wins_over_the_app_lifetime(session_dir):
    app = make_app(session_dir, max_age=None)
    client = app.test_client()
    client.get("/count")
    (path,) = [os.path.join(session_dir, f) for f in session_files(session_dir) if not f.endswith(".lock")]
    os.utime(path, (time.time() - 40 * 86400, time.time() - 40 * 86400))
    assert client.get("/count").text == "2"  # max_age=None: never expires on the server


def test_session_permanent_setting_makes_new_sessions_permanent(app):
    app.config["SESSION_PERMANENT"] = True
    client = app.test_client()
    assert "Expires=" in client.get("/count").headers["Set-Cookie"]


@pytest.mark.parametrize(
    "options, error",
    [({"timeot": 10}, TypeError), ({"max_age": -1}, ValueError), ({"locking": "sometimes"}, ValueError)],
)
def test_options_are_checked_when_the_interface_is_made(session_dir, options, error):
    with pytest.raises(error):
        FastSessionInterface(session_dir, **options)


def test_a_busy_session_first_read_by_an_after_request_hook_is_a_503_not_a_500(session_dir):
    app = make_app(session_dir, timeout=0.05)

    @app.after_request
    def reads_the_session(response):  # as Flask-Login's _update_remember_cookie does
        if "_remember" in flask.session:
            response.headers["X-Remembered"] = "1"
        return response

    client = app.test_client()
    sid = counted(client)
    holder = held(session_dir, sid)
    try:
        untouched_view = client.get("/nothing")
        touched_view = client.get("/peek")
    finally:
        holder.rollback()
    for response in (untouched_view, touched_view):
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "Set-Cookie" not in response.headers
    assert client.get("/count").text == "2"  # nothing was lost or changed


def test_an_untouched_request_renews_a_permanent_cookie_without_taking_the_lock(app, session_dir):
    client = app.test_client()
    sid = client.get("/permanent").headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    holder = held(session_dir, sid)
    try:
        response = client.get("/nothing")
    finally:
        holder.rollback()
    assert response.status_code == 200
    assert f"session={sid}" in response.headers["Set-Cookie"] and "Expires=" in response.headers["Set-Cookie"]
    assert response.headers["Vary"] == "Cookie"


def test_a_change_after_the_session_was_stored_raises(app):
    @app.route("/late")
    def late():
        flask.session["n"] = 1
        flask.session.release()
        try:
            flask.session["n"] = 2
        except fastsession.SessionError:
            return "refused"
        return "lost"

    client = app.test_client()
    assert client.get("/late").text == "refused"
    assert client.get("/peek").text == "1"


def test_a_tag_registered_on_the_interfaces_own_serializer_is_used_to_store_and_to_read(session_dir):
    from flask.json.tag import JSONTag, TaggedJSONSerializer

    class TagSet(JSONTag):
        key = " set"

        def check(self, value):
            return isinstance(value, set)

        def to_json(self, value):
            return sorted(value)

        def to_python(self, value):
            return set(value)

    app = make_app(session_dir)
    app.session_interface.serializer = TaggedJSONSerializer()  # this interface's own, not the class's
    app.session_interface.serializer.register(TagSet)

    @app.route("/put-set")
    def put_set():
        flask.session["tags"] = {"b", "a"}
        return ""

    @app.route("/get-set")
    def get_set():
        return repr(type(flask.session["tags"]).__name__) + ":" + ",".join(sorted(flask.session["tags"]))

    client = app.test_client()
    assert client.get("/put-set").status_code == 200
    assert client.get("/get-set").text == "'set':a,b"


def test_lifecycle_events_reach_the_blinker_signal_with_the_app_as_sender(app):
    from fastsession import events
    from fastsession.contrib.flask import session_event
    from fastsession.names import stored_name

    seen = []

    def receiver(sender, event, **extra):
        seen.append((sender, event.kind, event.session, event.previous, event.reason))

    session_event.connect(receiver)
    try:
        client = app.test_client()
        first = set_cookies(client.get("/count"))[0].split(";")[0].split("=", 1)[1]
        second = set_cookies(client.get("/login"))[0].split(";")[0].split("=", 1)[1]
        client.get("/clear")
    finally:
        session_event.disconnect(receiver)
    assert seen == [
        (app, "created", stored_name(first), None, None),
        (app, "regenerated", stored_name(second), stored_name(first), None),
        (app, "deleted", stored_name(second), None, "logout"),
    ]
    assert events.handlers == []  # no receiver left: the stores build no event


def test_an_id_header_carries_the_id_both_ways_beside_the_cookie(session_dir):
    app = make_app(session_dir, id_header="X-Session-Id")
    api = app.test_client(use_cookies=False)
    response = api.get("/count", headers={"X-Session-Id": ""})  # a new API client asks for its id this way
    sid = response.headers["X-Session-Id"]
    assert ID.fullmatch(sid) and response.text == "1" and set_cookies(response) == []
    assert "X-Session-Id" in response.headers["Vary"]
    again = api.get("/count", headers={"X-Session-Id": sid})
    assert again.text == "2" and "X-Session-Id" not in again.headers
    regenerated = api.get("/login", headers={"X-Session-Id": sid})
    new = regenerated.headers["X-Session-Id"]
    assert new != sid and api.get("/peek", headers={"X-Session-Id": new}).text == "2"
    cleared = api.get("/clear", headers={"X-Session-Id": new})
    assert cleared.headers["X-Session-Id"] == "" and set_cookies(cleared) == []
    browser = app.test_client()
    assert browser.get("/count").text == "1" and len(set_cookies(browser.get("/login"))) == 1


def test_id_cookie_false_takes_the_id_from_the_header_only(session_dir):
    app = make_app(session_dir, id_header="X-Session-Id", id_cookie=False)
    client = app.test_client()
    response = client.get("/count")
    assert ID.fullmatch(response.headers["X-Session-Id"]) and set_cookies(response) == []
    with pytest.raises(ValueError):
        make_app(session_dir, id_cookie=False)


def test_an_apps_stores_are_copied_from_one_made_at_its_first_request(session_dir, monkeypatch):
    """The options are checked and the backend found once per app (a StoreFactory): later requests run no
    store constructor."""
    from fastsession import store as store_module

    client = make_app(session_dir).test_client()
    assert client.get("/count").text == "1"
    constructed = []
    found = store_module.shared_backend
    monkeypatch.setattr(store_module, "shared_backend", lambda *args: constructed.append(args) or found(*args))
    assert [client.get("/count").text for _ in range(3)] == ["2", "3", "4"]
    assert constructed == []


def test_a_cookie_name_changed_between_requests_is_the_one_the_next_store_uses(session_dir):
    app = make_app(session_dir)
    client = app.test_client()
    assert client.get("/count").text == "1"
    app.config["SESSION_COOKIE_NAME"] = "other"
    response = client.get("/count")
    assert response.text == "1"  # the session under the old name is not this cookie's
    assert [c for c in set_cookies(response) if c.startswith("other=")]
    assert client.get("/count").text == "2"
