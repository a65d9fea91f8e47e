"""The extensions that keep their state in the session, end to end through each adapter, files and Redis:
Flask-Login, Flask-WTF's CSRF token, Django's CSRF with CSRF_USE_SESSIONS=True (in test_django.py)."""

import logging
import re
import uuid

import flask
import pytest
import redis
from conftest import Transaction
from flask_login import UserMixin

from fastsession.contrib.flask import FastSessionInterface
from fastsession.redis import RedisSessionStore


@pytest.fixture(params=["files", "redis"])
def interface(request, tmp_path):
    def made(**options):
        if request.param == "files":
            return FastSessionInterface(str(tmp_path / "sessions"), **options)
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        prefix = f"ext-{uuid.uuid4().hex[:8]}:"
        return FastSessionInterface(client, store_class=RedisSessionStore, prefix=prefix, **options)

    return made


class User(UserMixin):
    """Flask-Login's user of these tests."""

    def __init__(self, user_id):
        self.id = user_id


def login_app(interface):
    from flask_login import LoginManager, current_user, login_required, login_user, logout_user

    app = flask.Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="ext-" + "k" * 30)
    app.session_interface = interface
    LoginManager(app).user_loader(User)

    @app.route("/login")
    def login():
        login_user(User("7"), remember=flask.request.args.get("remember") == "1")
        return "in"

    @app.route("/me")
    @login_required
    def me():
        return current_user.get_id()

    @app.route("/public")
    def public():
        return "public"

    @app.route("/logout")
    def logout():
        logout_user()
        return "out"

    return app


def test_flask_login_logs_in_remembers_and_logs_out(interface):
    client = login_app(interface()).test_client()
    assert client.get("/me").status_code == 401
    assert client.get("/login?remember=1").text == "in"
    assert client.get("/me").text == "7"
    assert client.get("/public").text == "public"
    assert client.get_cookie("remember_token") is not None  # Flask-Login's after_request hook ran on our session
    assert client.get("/logout").text == "out"
    client.delete_cookie("remember_token")
    assert client.get("/me").status_code == 401


def test_flask_login_under_a_held_lock_answers_503_with_retry_after(interface, caplog):
    app = login_app(interface(timeout=0.05))
    client = app.test_client()
    client.get("/login")
    sid = client.get_cookie("session").value
    backend = app.session_interface.store_class
    where = app.session_interface.directory
    holder = backend(Transaction({"session": sid}), where, "session", **_prefix(app.session_interface))
    assert holder.get_session(False) is not None
    try:
        with caplog.at_level(logging.WARNING, "fastsession"):
            for path in ("/me", "/public"):  # the view reads first; Flask-Login's after_request reads first
                response = client.get(path)
                assert response.status_code == 503 and response.headers["Retry-After"] == "1", path
    finally:
        holder.rollback()
    assert client.get("/me").text == "7"  # still logged in: nothing was lost


def _prefix(interface):
    return {"prefix": interface.options["prefix"]} if "prefix" in interface.options else {}


def test_flask_wtf_csrf_token_lives_in_the_session(interface):
    from flask_wtf import CSRFProtect
    from flask_wtf.csrf import generate_csrf

    app = flask.Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="wtf-" + "k" * 30, WTF_CSRF_ENABLED=True)
    app.session_interface = interface()
    CSRFProtect(app)

    @app.route("/form")
    def form():
        return generate_csrf()

    @app.route("/submit", methods=["POST"])
    def submit():
        return "accepted"

    client = app.test_client()
    token = client.get("/form").text
    assert client.get("/form").text == token  # the same token: its secret was kept in the session
    assert client.post("/submit", data={"csrf_token": token}).text == "accepted"
    assert client.post("/submit", data={"csrf_token": "forged"}).status_code == 400
    stranger = app.test_client()  # another browser: no session, so no token is valid
    assert stranger.post("/submit", data={"csrf_token": token}).status_code == 400
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", client.get_cookie("session").value)  # the cookie holds only the id


def test_no_secret_key_is_needed_for_the_session_itself(interface):
    app = flask.Flask(__name__)
    app.session_interface = interface()

    @app.route("/")
    def count():
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    client = app.test_client()
    assert [client.get("/").text for _ in range(2)] == ["1", "2"]  # Flask's own would have no session at all


def test_flask_max_sessions_evicts_the_least_recently_used_login(interface):
    import time

    app = login_app(interface(max_sessions=2, max_age=3600))

    @app.route("/visit")
    def visit():
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return "ok"

    devices = [app.test_client() for _ in range(3)]
    for device in devices[:2]:
        assert device.get("/login").text == "in"
        time.sleep(0.02)
    devices[0].get("/visit")  # the first device's session is used now: the second is the least recently used
    time.sleep(0.02)
    devices[2].get("/login")
    assert [d.get("/me").status_code for d in devices] == [200, 401, 200]


def test_flask_when_full_refuse_undoes_login_user_and_raises_too_many_sessions(interface):
    from flask_login import current_user, login_user

    from fastsession import TooManySessions

    app = login_app(interface(max_sessions=1, when_full="refuse"))

    @app.route("/login-or-refused")
    def login_or_refused():
        try:
            login_user(User("7"))
        except TooManySessions:
            return f"refused, {current_user.is_authenticated}"
        return "in"

    first, second = app.test_client(), app.test_client()
    assert first.get("/login").text == "in"
    assert second.get("/login-or-refused").text == "refused, False"
    assert second.get("/me").status_code == 401  # not logged in by the refused login
    assert first.get("/me").text == "7"
