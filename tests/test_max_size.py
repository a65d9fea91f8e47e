"""max_size: a commit over it raises SessionTooLarge naming the largest keys, keeps what was stored, locks nothing.

On the four stores (files and Redis, sync and async) and through every adapter.
"""

import asyncio

import httpx
import pytest
from conftest import Transaction
from flask import Flask, session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from test_adapter_locking import stored
from werkzeug.test import Client as WSGIClient

import fastsession
from fastsession import SessionError, SessionTooLarge
from fastsession.asgi import SessionMiddleware as ASGIMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.wsgi import SessionMiddleware

BIG = "x" * 5000


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_a_commit_over_max_size_names_the_largest_keys_and_keeps_what_was_stored(face, locking):
    sid = face.stored({"user": "ann", "cart": [1, 2, 3]})
    store = face.store(sid, max_size=1000, locking=locking)
    session = store.get_session(False)
    session["blob"] = BIG
    session["note"] = "y" * 300
    with pytest.raises(SessionTooLarge) as caught:
        store.close()
    error = caught.value
    assert isinstance(error, SessionError) and error.max_size == 1000 and error.size > 5000
    assert [key for key, _ in error.largest] == ["blob", "note", "cart"]
    assert "'blob' (5002 bytes)" in str(error) and "max_size=1000" in str(error)
    assert face.read(sid) == {"user": "ann", "cart": [1, 2, 3]}  # read under a lock: none left behind
    within = face.store(sid, max_size=1000, timeout=0)
    within.get_session(False)["n"] = 1
    within.close()
    assert face.read(sid) == {"user": "ann", "cart": [1, 2, 3], "n": 1}


def test_a_new_session_over_max_size_is_not_stored(face):
    store = face.store(max_size=100)
    store.get_session(True)["blob"] = BIG
    with pytest.raises(SessionTooLarge):
        store.close()
    assert face.read(store.trans.cookies["SID"]) is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_max_size_must_be_a_positive_int(tmp_path, bad):
    with pytest.raises(ValueError, match="max_size"):
        fastsession.SessionStore(None, str(tmp_path), max_size=bad)


# -- adapters --------------------------------------------------------------------------------


def test_wsgi(tmp_path):
    directory = str(tmp_path)
    sid = stored(directory, {"n": 1})

    def app(environ, start_response):
        data = environ["fastsession.store"].get_session(True)
        data["blob"] = BIG
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = WSGIClient(SessionMiddleware(app, directory, max_size=1000))
    client.set_cookie("SID", sid)
    with pytest.raises(SessionTooLarge):  # the commit, before any byte went out: the server answers 500
        client.get("/")
    with fastsession.SessionStore(Transaction({"SID": sid}), directory, timeout=0) as store:
        assert dict(store.get_session(False)) == {"n": 1}


def test_flask(tmp_path):
    directory = str(tmp_path)
    sid = stored(directory, {"n": 1})
    app = Flask(__name__)
    app.config["SESSION_COOKIE_NAME"] = "SID"
    app.session_interface = FastSessionInterface(directory, max_size=1000)

    @app.route("/")
    def view():
        session["blob"] = BIG
        return "ok"

    client = app.test_client()
    client.set_cookie("SID", sid)
    assert client.get("/").status_code == 500  # save_session raised SessionTooLarge (Flask logs it)
    with fastsession.SessionStore(Transaction({"SID": sid}), directory, timeout=0) as store:
        assert dict(store.get_session(False)) == {"n": 1}


def test_asgi(tmp_path):
    directory = str(tmp_path)
    sid = stored(directory, {"n": 1})

    async def view(request):
        request.session["blob"] = BIG
        return PlainTextResponse("ok")

    app = ASGIMiddleware(
        Starlette(routes=[Route("/", view)]), session_directory=directory, max_size=1000, session_cookie="SID"
    )

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", cookies={"SID": sid}) as client:
            return await client.get("/")

    with pytest.raises(SessionTooLarge):  # at the last body chunk: the server drops the connection
        asyncio.run(go())
    with fastsession.SessionStore(Transaction({"SID": sid}), directory, timeout=0) as store:
        assert dict(store.get_session(False)) == {"n": 1}
