"""max_lifetime: an absolute lifetime beside the idle max_age, counted from creation, kept across regenerate_id.

On the four stores (files and Redis, sync and async) and through every adapter. Real time:
lifetimes of a second or so, and sleeps past them.
"""

import asyncio
import time

import httpx
import pytest
from flask import Flask, session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client as WSGIClient

import fastsession
from fastsession.asgi import SessionMiddleware as ASGIMiddleware
from fastsession.contrib.flask import FastSessionInterface
from fastsession.store import META
from fastsession.wsgi import SessionMiddleware

LIFETIME = 0.6


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_a_session_used_all_along_ends_at_its_lifetime(face, locking):
    sid = face.stored({"user": "ann"}, max_lifetime=LIFETIME)
    started = time.monotonic()
    while time.monotonic() - started < LIFETIME - 0.2:  # in use the whole time: idle never
        store = face.store(sid, max_lifetime=LIFETIME, locking=locking)
        store.get_session(False)["seen"] = time.monotonic()
        store.close()
        time.sleep(0.05)
    time.sleep(0.3)
    store = face.store(sid, max_lifetime=LIFETIME, locking=locking)
    assert store.get_session(False) is None  # past its lifetime: gone, however recently used
    store.close()
    assert face.read(sid) is None  # and deleted, not just hidden


def test_the_creation_time_is_kept_across_regenerate_id_and_hidden_from_the_app(face):
    sid = face.stored({"user": "ann"}, max_lifetime=LIFETIME)
    store = face.store(sid, max_lifetime=LIFETIME)
    session = store.get_session(False)
    assert META not in session and dict(session) == {"user": "ann"}
    new_id = store.regenerate_id()  # a login
    store.close()
    time.sleep(LIFETIME + 0.1)
    store = face.store(new_id, max_lifetime=LIFETIME)
    assert store.get_session(False) is None  # counted from the first creation, not from the new id
    store.close()


def test_a_new_session_gets_a_fresh_id_after_the_lifetime(face):
    sid = face.stored({"user": "ann"}, max_lifetime=LIFETIME)
    time.sleep(LIFETIME + 0.1)
    store = face.store(sid, max_lifetime=LIFETIME)
    fresh = store.get_session(True)
    assert fresh.session_id != sid and dict(fresh) == {}
    fresh["n"] = 1
    store.close()
    assert face.read(sid) is None and face.read(fresh.session_id) == {"n": 1}


def test_without_max_lifetime_nothing_extra_is_stored(face):
    sid = face.stored({"user": "ann"})
    store = face.store(sid)
    assert dict(store.get_session(False)) == {"user": "ann"}
    store.close()
    if face.kind == "files":
        with open(_file(face.directory, sid), "rb") as f:
            assert f.read().split(b"\n", 1)[1] == b'{"user":"ann"}'


def test_a_session_stored_before_max_lifetime_was_set_counts_from_its_first_request_after(face):
    sid = face.stored({"user": "ann"})  # no lifetime then: no creation time stored
    store = face.store(sid, max_lifetime=LIFETIME)
    assert dict(store.get_session(False)) == {"user": "ann"}
    store.close()  # records "now" as its creation
    store = face.store(sid, max_lifetime=LIFETIME)
    assert dict(store.get_session(False)) == {"user": "ann"}
    store.close()
    time.sleep(LIFETIME + 0.1)
    store = face.store(sid, max_lifetime=LIFETIME)
    assert store.get_session(False) is None
    store.close()


@pytest.mark.parametrize("bad", [0, -1])
def test_max_lifetime_must_be_positive(tmp_path, bad):
    with pytest.raises(ValueError, match="max_lifetime"):
        fastsession.SessionStore(None, str(tmp_path), max_lifetime=bad)


def _file(directory, sid):
    from helpers import session_path

    return session_path(directory, sid)


# -- adapters --------------------------------------------------------------------------------


def test_wsgi(tmp_path):
    directory = str(tmp_path)

    def app(environ, start_response):
        data = environ["fastsession.store"].get_session(True)
        data["n"] = data.get("n", 0) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(data["n"]).encode()]

    client = WSGIClient(SessionMiddleware(app, directory, max_lifetime=LIFETIME))

    def request():
        response = client.get("/")
        body = response.get_data()
        response.close()  # where the WSGI middleware commits
        return body

    assert [request() for _ in range(2)] == [b"1", b"2"]
    time.sleep(LIFETIME + 0.1)
    assert request() == b"1"  # a new session


def test_flask(tmp_path):
    app = Flask(__name__)
    app.session_interface = FastSessionInterface(str(tmp_path), max_lifetime=LIFETIME)

    @app.route("/")
    def view():
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/").text for _ in range(2)] == ["1", "2"]
    time.sleep(LIFETIME + 0.1)
    assert client.get("/").text == "1"


def test_asgi(tmp_path):
    async def view(request):
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse(str(request.session["n"]))

    app = ASGIMiddleware(Starlette(routes=[Route("/", view)]), session_directory=str(tmp_path), max_lifetime=LIFETIME)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            first = [(await client.get("/")).text for _ in range(2)]
            await asyncio.sleep(LIFETIME + 0.1)
            return first, (await client.get("/")).text

    assert asyncio.run(go()) == (["1", "2"], "1")


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_with_encrypt_a_session_read_all_along_still_ends_at_its_lifetime(face, locking):
    """The sealed creation time is read back on every request (and kept by reads that write nothing)."""
    sid = face.stored({"user": "ann"}, max_lifetime=LIFETIME, encrypt=True)
    started = time.monotonic()
    while time.monotonic() - started < LIFETIME - 0.2:
        store = face.store(sid, max_lifetime=LIFETIME, locking=locking, encrypt=True)
        assert dict(store.get_session(False)) == {"user": "ann"}  # read, never changed
        store.close()
        time.sleep(0.05)
    time.sleep(0.3)
    store = face.store(sid, max_lifetime=LIFETIME, locking=locking, encrypt=True)
    assert store.get_session(False) is None
    store.close()


def test_a_bound_record_without_a_creation_time_keeps_its_binding_when_max_lifetime_dates_it(face):
    """A record bound before max_lifetime was set (or by an older version) gets a creation time at its next
    write, and nothing else of its metadata is lost: "log out everywhere" still finds it."""
    import orjson
    from test_sealed import put_bytes

    from fastsession.users import user_hash

    sid = face.stored({"user": "ann"})
    store = face.store(sid)
    store.get_session(False)
    store.bind_user("ann")
    store.close()
    put_bytes(face, sid, orjson.dumps({"user": "ann", META: {"u": user_hash("ann")}}))  # no "c"
    later = face.store(sid, max_lifetime=3600)
    later.get_session(False)["n"] = 1
    later.close()
    admin = face.store()
    assert admin.revoke_all("ann") == 1
    admin.close()
    assert face.read(sid) is None


def test_get_session_by_id_of_an_outlived_session_gives_an_empty_one_locked_and_dated_anew(face):
    sid = face.stored({"n": 1}, max_lifetime=0.2)
    time.sleep(0.3)
    store = face.store(max_lifetime=0.2)
    assert store._get_session(sid, True) == {}  # gone at its lifetime; an empty one under the same id
    other = face.store(sid, timeout=0)
    with pytest.raises(fastsession.LockTimeout):  # and this store holds its lock
        other.get_session(False)
    other.rollback()
    store._get_session(sid, True)["m"] = 2
    store.close()
    assert face.read(sid) == {"m": 2}
    time.sleep(0.3)  # the new one has a creation time of its own: it ends at its lifetime too
    again = face.store(sid, max_lifetime=0.2)
    assert again.get_session(False) is None
    again.close()
