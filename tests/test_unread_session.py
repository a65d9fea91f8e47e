"""A session read on first use (TrackedSession.defer): C code that reads the dict directly never sees it as empty.

json.dumps writes ``{}`` for a dict that is empty at C level without calling
its methods, and orjson reads entries without calling anything. A session
still to be read holds one entry of its own so that json.dumps calls
``items()`` (which reads it), and orjson stops at that entry instead of
writing ``{}``. Through Starlette's JSONResponse and Flask's jsonify too.
"""

import asyncio
import json

import flask
import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastsession.asgi import SessionMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.session import TrackedSession


def unread():
    """A session whose store holds {"user": "ann"}, still to be read; and the list of reads made."""
    reads = []

    def opener(session):
        reads.append(1)
        dict.update(session, {"user": "ann"})

    session = TrackedSession("x" * 43)
    session.defer(opener)
    return session, reads


def test_json_dumps_reads_a_session_still_to_be_read():
    session, reads = unread()
    assert json.dumps({"session": session}) == '{"session": {"user": "ann"}}'
    assert reads == [1] and session.accessed


def test_orjson_refuses_a_session_still_to_be_read_instead_of_writing_an_empty_one():
    session, reads = unread()
    with pytest.raises(TypeError, match="NotReadYet"):
        orjson.dumps(session)
    assert reads == []  # orjson called nothing: the session is still to be read
    session.get("user")  # read once: from here on it is a dict like any other
    assert orjson.loads(orjson.dumps(session)) == {"user": "ann"}


@pytest.mark.parametrize(
    "use",
    [len, list, dict, lambda s: "user" in s, lambda s: s.copy(), lambda s: {**s}, lambda s: s == {"user": "ann"}],
)
def test_no_way_of_reading_it_shows_the_sessions_own_entry(use):
    session, reads = unread()
    seen = use(session)
    assert "fastsession" not in str(seen) and "NotReadYet" not in str(seen)
    assert dict.items(session) == {"user": "ann"}.items() and reads == [1]


def test_the_repr_of_a_session_still_to_be_read_reads_nothing():
    session, reads = unread()
    assert repr(session) == "<TrackedSession (not read yet)>" and reads == []


def test_starlette_json_response_of_a_session_it_has_not_read_yet(session_dir):
    def sync_view(request):
        return JSONResponse({"session": request.session})

    async def async_view(request):
        return JSONResponse(request.session)

    async def login(request):
        request.session["user"] = "ann"
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/sync", sync_view), Route("/async", async_view), Route("/login", login)],
        middleware=[Middleware(SessionMiddleware, session_directory=session_dir)],
    )

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            await client.get("/login")
            return (await client.get("/sync")).json(), (await client.get("/async")).json()

    assert asyncio.run(go()) == ({"session": {"user": "ann"}}, {"user": "ann"})


def test_flask_jsonify_of_a_session_it_has_not_read_yet(session_dir):
    app = flask.Flask(__name__)
    app.session_interface = FastSessionInterface(session_dir)

    @app.route("/login")
    def login():
        flask.session["user"] = "ann"
        return "in"

    @app.route("/json")
    def as_json():
        return flask.jsonify(flask.session._get_current_object())  # (jsonify takes no LocalProxy)

    @app.route("/dict")
    def as_dict():
        return flask.session._get_current_object()  # Flask turns a dict into JSON

    client = app.test_client()
    client.get("/login")
    assert client.get("/json").json == {"user": "ann"}
    assert client.get("/dict").json == {"user": "ann"}
