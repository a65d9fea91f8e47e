"""Every adapter: a lock timeout is a 503 with Retry-After and one log line naming the holder; early release."""

import asyncio
import logging
import os

import httpx
from conftest import Transaction
from flask import Flask, session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client as WSGIClient

import fastsession
from fastsession.asgi import SessionMiddleware as ASGIMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.wsgi import SessionMiddleware


def stored(directory, data):
    trans = Transaction()
    with fastsession.SessionStore(trans, directory) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


def locked(directory, session_id):
    store = fastsession.SessionStore(Transaction({"SID": session_id}), directory)
    store.get_session(False)
    return store


def one_busy_record(caplog):
    records = [r for r in caplog.records if "answered 503" in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    message = records[0].getMessage()
    assert f"pid {os.getpid()}" in message and "alive" in message and "locked" in message
    return message


def wsgi_app(environ, start_response):
    store = environ["fastsession.store"]
    session = store.get_session(True)
    session["n"] = session.get("n", 0) + 1
    if environ["PATH_INFO"] == "/early":
        store.close()  # stored now, lock released
        with fastsession.SessionStore(Transaction({"SID": session.session_id}), environ["dir"], timeout=0) as other:
            assert other.get_session(False)["n"] == session["n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def test_wsgi_answers_503_when_the_session_stays_locked(tmp_path, caplog):
    directory = str(tmp_path)
    sid = stored(directory, {"n": 1})
    holder = locked(directory, sid)
    client = WSGIClient(SessionMiddleware(wsgi_app, directory, timeout=0.05))
    client.set_cookie("SID", sid)
    with caplog.at_level(logging.WARNING, "fastsession"):
        response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in response.headers
    one_busy_record(caplog)
    holder.rollback()
    assert client.get("/").text == "2"  # nothing lost: the next request goes on from the stored session


def test_wsgi_early_close_stores_now_and_still_sends_the_new_cookie(tmp_path):
    directory = str(tmp_path)

    def app(environ, start_response):
        environ["dir"] = directory
        return wsgi_app(environ, start_response)

    client = WSGIClient(SessionMiddleware(app, directory))
    response = client.get("/early")
    assert response.text == "1" and "SID=" in response.headers["Set-Cookie"]
    assert client.get("/early").text == "2"


def test_wsgi_adapter_waits_10_s_by_default_not_forever(tmp_path):
    seen = {}

    def app(environ, start_response):
        seen["timeout"] = environ["fastsession.store"].backend.timeout
        start_response("200 OK", [])
        return [b""]

    WSGIClient(SessionMiddleware(app, str(tmp_path))).get("/")
    assert seen["timeout"] == 10.0


def flask_app(directory, **options):
    app = Flask(__name__)
    app.session_interface = FastSessionInterface(directory, **options)

    @app.get("/")
    def count():
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    @app.get("/early")
    def early():
        session["n"] = session.get("n", 0) + 1
        session.release()
        with fastsession.SessionStore(
            Transaction({"session": session.session_id}), directory, "session", timeout=0
        ) as other:
            return str(other.get_session(False)["n"])  # stored, and not locked any more

    @app.get("/untouched")
    def untouched():
        return "fine"

    return app


def test_flask_answers_503_when_the_view_touches_a_session_that_stays_locked(tmp_path, caplog):
    directory = str(tmp_path)
    client = flask_app(directory, timeout=0.05).test_client()
    assert client.get("/").text == "1"
    sid = client.get_cookie("session").value
    holder = fastsession.SessionStore(Transaction({"session": sid}), directory, "session")
    holder.get_session(False)
    with caplog.at_level(logging.WARNING, "fastsession"):
        response = client.get("/")
        assert client.get("/untouched").text == "fine"  # a view that does not use the session never waits
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert len([r for r in caplog.records if "answered 503" in r.getMessage()]) == 1
    holder.rollback()
    assert client.get("/").text == "2"


def test_flask_release_stores_now_and_the_new_session_still_gets_its_cookie(tmp_path):
    client = flask_app(str(tmp_path)).test_client()
    assert client.get("/early").text == "1"
    assert client.get_cookie("session") is not None
    assert client.get("/early").text == "2"
    assert client.get("/").text == "3"


def test_flask_commit_locking_merges_overlapping_requests(tmp_path):
    directory = str(tmp_path)
    client = flask_app(directory, locking="commit").test_client()
    client.get("/")
    sid = client.get_cookie("session").value
    overlapping = fastsession.SessionStore(Transaction({"session": sid}), directory, "session", locking="commit")
    overlapping.get_session(False)["other"] = "kept"  # read before the next request, committed after it
    assert client.get("/").text == "2"
    overlapping.close()
    assert client.get("/").text == "3"
    with fastsession.SessionStore(Transaction({"session": sid}), directory, "session") as check:
        assert check.get_session(False) == {"n": 3, "other": "kept"}


async def asgi_count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    if request.url.path == "/early":
        await request.scope["fastsession.store"].close()
    return PlainTextResponse(str(request.session["n"]))


def asgi_client(directory, **options):
    app = Starlette(routes=[Route("/", asgi_count), Route("/early", asgi_count)])
    app.add_middleware(ASGIMiddleware, session_directory=directory, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_asgi_answers_503_when_the_session_stays_locked(tmp_path, caplog):
    directory = str(tmp_path)

    async def go():
        async with asgi_client(directory, timeout=0.05) as client:
            assert (await client.get("/")).text == "1"
            sid = client.cookies["session"]
            holder = locked_as(directory, sid)
            with caplog.at_level(logging.WARNING, "fastsession"):
                busy = await client.get("/")
            holder.rollback()
            return busy, (await client.get("/")).text

    busy, after = asyncio.run(go())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    one_busy_record(caplog)
    assert after == "2"


def locked_as(directory, sid):
    store = fastsession.SessionStore(Transaction({"session": sid}), directory, "session")
    store.get_session(False)
    return store


def test_asgi_early_close_stores_a_new_session_and_sends_its_cookie(tmp_path):
    async def go():
        async with asgi_client(str(tmp_path)) as client:
            first = await client.get("/early")
            return first, (await client.get("/early")).text

    first, second = asyncio.run(go())
    assert first.text == "1" and "session=" in first.headers["set-cookie"]
    assert second == "2"
