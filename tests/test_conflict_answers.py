"""locking="commit": an update that cannot be stored is answered 409, never acknowledged with a 200.

In each adapter a view reads a counter, another request of the same user
stores its own increment meanwhile (made here, inside the view, so the
overlap is certain), and the view's increment of the same key then meets it.
What is kept: the increment that was answered 200; the refused one is 409.
"""

import flask
import pytest
from conftest import Transaction
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from test_wsgi import call, sid_from

import fastsession
from fastsession.asgi import SessionMiddleware as ASGIMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.wsgi import SessionMiddleware


def increment_elsewhere(directory, sid):
    """Another request of the same user: reads and increments n, and commits, while the view is running."""
    with fastsession.SessionStore(Transaction({"SID": sid}), directory, locking="commit") as other:
        session = other.get_session(False)
        session["n"] += 1


def stored_n(directory, sid):
    with fastsession.SessionStore(Transaction({"SID": sid}), directory) as store:
        return store.get_session(False)["n"]


def test_wsgi_answers_409_for_a_refused_commit(session_dir):
    def app(environ, start_response):
        store = environ["fastsession.store"]
        session = store.get_session(True)
        n = session.get("n", 0)
        if environ["PATH_INFO"] == "/clash":
            increment_elsewhere(session_dir, session.session_id)
        session["n"] = n + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(n + 1).encode()]

    wrapped = SessionMiddleware(app, session_dir, locking="commit")
    status, headers, _ = call(wrapped)
    sid = sid_from(headers)
    status, _, body = call(wrapped, f"SID={sid}", path="/clash")
    assert status.startswith("409") and b"not stored" in body
    assert stored_n(session_dir, sid) == 2  # the other request's increment, which was acknowledged
    status, _, body = call(wrapped, f"SID={sid}")
    assert status.startswith("200") and body == b"3"


def test_starlette_answers_409_before_any_status_goes_out(session_dir):
    async def view(request):
        n = request.session.get("n", 0)
        if request.url.path == "/clash":
            increment_elsewhere(session_dir, request.session.session_id)
        request.session["n"] = n + 1
        return PlainTextResponse(str(n + 1))

    app = Starlette(routes=[Route("/", view), Route("/clash", view)])
    app.add_middleware(ASGIMiddleware, session_directory=session_dir, locking="commit")
    with TestClient(app) as client:
        assert client.get("/").text == "1"
        sid = client.cookies["session"]
        response = client.get("/clash")
        assert response.status_code == 409 and "not stored" in response.text
        assert stored_n(session_dir, sid) == 2
        assert client.get("/").text == "3"


def test_flask_answers_409_for_a_refused_commit(session_dir):
    app = flask.Flask(__name__)
    app.session_interface = FastSessionInterface(session_dir, locking="commit")

    @app.route("/")
    @app.route("/clash")
    def view():
        n = flask.session.get("n", 0)
        if flask.request.path == "/clash":
            increment_elsewhere(session_dir, flask.session.session_id)
        flask.session["n"] = n + 1
        return str(n + 1)

    client = app.test_client()
    assert client.get("/").data == b"1"
    sid = client.get_cookie("session").value
    response = client.get("/clash")
    assert response.status_code == 409 and b"not stored" in response.data
    assert stored_n(session_dir, sid) == 2
    assert client.get("/").data == b"3"


@pytest.mark.parametrize("value", [2, 7])
def test_the_merge_refuses_a_key_changed_on_both_sides_whatever_the_values(session_dir, value):
    """Equal values are no exception: the view's n+1 equals the other's n+1 and is still refused."""
    sid_trans = Transaction()
    with fastsession.SessionStore(sid_trans, session_dir) as store:
        store.get_session(True)["n"] = 1
    sid = sid_trans.cookies["SID"]
    view = fastsession.SessionStore(Transaction({"SID": sid}), session_dir, locking="commit")
    view.get_session(False)["n"] = value
    other = fastsession.SessionStore(Transaction({"SID": sid}), session_dir, locking="commit")
    other.get_session(False)["n"] = 2
    other.close()
    with pytest.raises(fastsession.SessionConflict):
        view.close()
    assert stored_n(session_dir, sid) == 2
