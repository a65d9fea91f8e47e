"""fastsession.contrib.flask through Flask's own test client and real processes."""

import re

import flask
import pytest
from conftest import session_files
from helpers import run_in_processes, stored_relpath

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


def test_lock_is_released_at_teardown_when_save_session_never_runs(session_dir):
    app = make_app(session_dir, timeout=2)

    @app.after_request
    def broken_hook(response):
        if flask.request.path == "/peek":
            raise RuntimeError("after_request bug: save_session is never reached")
        return response

    client = app.test_client()
    client.get("/count")
    with pytest.raises(RuntimeError):
        client.get("/peek")
    assert not [f for f in session_files(session_dir) if f.endswith(".lock")]
    assert client.get("/count").data == b"2"


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
