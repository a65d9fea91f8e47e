"""The ASGI middleware reads (and locks) a session on first use: a request that never touches it takes no lock.

Files and Redis, Starlette's routing through httpx's in-process transport. A
request of the same user holding the lock is a real store opened beside the
app (as another worker's request would be).
"""

import asyncio
import logging
import uuid

import httpx
import pytest
import redis
import redis.asyncio
from conftest import Transaction, session_files
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import fastsession
from fastsession.asgi import SessionMiddleware, load_session
from fastsession.redis import RedisSessionStore


async def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(str(request.session["n"]))


async def plain(request):
    await asyncio.sleep(0)
    return PlainTextResponse("no session here")


async def late_read(request):
    """Reads the session only after awaiting something else (the read is a plain call, not awaited)."""
    await asyncio.sleep(0)
    request.session["late"] = request.session.get("late", 0) + 1
    return PlainTextResponse(str(request.session["late"]))


def sync_count(request):
    """A sync endpoint: Starlette runs it in a worker thread."""
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(str(request.session["n"]))


async def catches_busy(request):
    try:
        request.session["n"] = 99
    except fastsession.LockTimeout:
        return PlainTextResponse("the app answered itself")
    return PlainTextResponse("stored")


async def loads_first(request):
    await load_session(request)  # (an app behind a BaseHTTPMiddleware: another task)
    return await count(request)


async def close_then_write(request):
    request.session["n"] = 5
    await request.scope["fastsession.store"].close()  # stored now, the lock released
    try:
        request.session["n"] = 6
    except fastsession.SessionError:
        return PlainTextResponse(f"refused, still {request.session['n']}")
    return PlainTextResponse("a change after close was taken")


async def fills_while_streaming(request):
    async def chunks():
        yield b"headers are out; "
        request.session["too"] = "late"  # a new session: no cookie can carry it now
        yield b"filled"

    return StreamingResponse(chunks())


ROUTES = [
    Route("/fills-while-streaming", fills_while_streaming),
    Route("/close-then-write", close_then_write),
    Route("/", count),
    Route("/plain", plain),
    Route("/late", late_read),
    Route("/sync", sync_count),
    Route("/catches", catches_busy),
    Route("/loads-first", loads_first),
]


class Where:
    """Files or Redis: the middleware's keywords, and a store that holds a session's lock as another request."""

    def __init__(self, kind, session_dir, redis_url):
        self.kind = kind
        self.session_dir = session_dir
        self.redis_url = redis_url
        self.prefix = f"test-lazy-{uuid.uuid4().hex[:8]}:"

    def options(self):
        if self.kind == "files":
            return {"session_directory": self.session_dir}
        return {"redis": redis.asyncio.Redis.from_url(self.redis_url), "prefix": self.prefix}

    def holder(self, sid):
        """Another request of this user, in the middle of its work: it holds the session's lock."""
        trans = Transaction({"session": sid})
        if self.kind == "files":
            store = fastsession.SessionStore(trans, self.session_dir, "session")
        else:
            store = RedisSessionStore(trans, redis.Redis.from_url(self.redis_url), "session", prefix=self.prefix)
        assert store.get_session(False) is not None
        return store


@pytest.fixture(params=["files", "redis"])
def where(request, session_dir):
    return Where(request.param, session_dir, request.getfixturevalue("redis_url") if request.param == "redis" else None)


def client_of(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def app_of(where, *inner, **options):
    middleware = [Middleware(SessionMiddleware, **where.options(), **options), *inner]
    return Starlette(routes=ROUTES, middleware=middleware)


def test_a_request_that_never_touches_the_session_runs_beside_a_request_holding_it(where, caplog):
    async def go():
        async with client_of(app_of(where, timeout=0.05)) as client:
            await client.get("/")
            holder = where.holder(client.cookies["session"])
            try:
                with caplog.at_level(logging.WARNING, "fastsession"):
                    untouched = await asyncio.gather(*(client.get("/plain") for _ in range(3)))
                    waited = caplog.records[:]
                touched = await client.get("/")  # this one reads it: it waits for the lock (out of time here)
            finally:
                holder.rollback()
            return untouched, waited, touched, (await client.get("/")).text

    untouched, waited, touched, after = asyncio.run(go())
    assert [r.status_code for r in untouched] == [200, 200, 200] and not waited  # none waited for the lock
    assert all("set-cookie" not in r.headers and "vary" not in r.headers for r in untouched)
    assert touched.status_code == 503 and touched.headers["retry-after"] == "1"
    assert after == "2"  # the 503 stored nothing; the next request counts on


def test_a_first_read_after_an_await_waits_on_the_loop_while_other_requests_run(where):
    # A holds the lock; B reads the session (a plain call) and waits; C, which never reads it, finishes
    # meanwhile; A lets go; B goes on with what A stored. Ordered by events, not by time.
    async def go():
        async with client_of(app_of(where, timeout=10)) as client:
            await client.get("/late")
            holder = where.holder(client.cookies["session"])
            waiting = asyncio.ensure_future(client.get("/late"))
            for _ in range(20):  # B is in, and waiting
                await asyncio.sleep(0.01)
            assert not waiting.done()
            other = await client.get("/plain")
            assert not waiting.done()  # C finished while B still waited
            holder.get_session(False)["late"] = 10  # A's change, stored as it lets go
            holder.close()
            return other, await waiting

    other, waited = asyncio.run(go())
    assert other.status_code == 200
    assert waited.status_code == 200 and waited.text == "11"


def test_overlapping_requests_that_write_lose_no_update(where):
    async def go():
        async with client_of(app_of(where)) as client:
            await client.get("/late")
            await asyncio.gather(*(client.get(path) for path in ["/late", "/plain"] * 15))
            return (await client.get("/late")).text

    assert asyncio.run(go()) == "17"


def test_a_sync_endpoint_reads_and_locks_on_first_use_from_its_worker_thread(where):
    async def go():
        async with client_of(app_of(where, timeout=10)) as client:
            first = await client.get("/sync")
            together = await asyncio.gather(*(client.get("/sync") for _ in range(8)))
            return first.text, sorted(int(r.text) for r in together), (await client.get("/")).text

    first, together, after = asyncio.run(go())
    assert first == "1" and together == list(range(2, 10)) and after == "10"


def test_an_app_that_catches_the_busy_read_answers_itself_and_stores_nothing(where):
    async def go():
        async with client_of(app_of(where, timeout=0.05)) as client:
            await client.get("/")
            holder = where.holder(client.cookies["session"])
            try:
                caught = await client.get("/catches")
            finally:
                holder.rollback()
            return caught, (await client.get("/")).text

    caught, after = asyncio.run(go())
    assert caught.status_code == 200 and caught.text == "the app answered itself"
    assert "set-cookie" not in caught.headers
    assert after == "2"  # neither the 99 nor a new session: the stored one was kept as it was


def test_behind_a_base_http_middleware_a_first_read_says_to_load_the_session(where):
    async def passthrough(request, call_next):  # runs the app in a task of its own
        return await call_next(request)

    inner = Middleware(BaseHTTPMiddleware, dispatch=passthrough)

    async def go():
        async with client_of(app_of(where, inner)) as client:
            await client.get("/loads-first")  # (a new session: nothing to wait for)
            loaded = [(await client.get("/loads-first")).text for _ in range(2)]
            with pytest.raises(fastsession.SessionError, match="load_session"):
                await client.get("/")
            return loaded

    assert asyncio.run(go()) == ["2", "3"]


def test_a_request_cancelled_while_its_first_read_waits_leaves_no_lock(session_dir):
    where = Where("files", session_dir, None)

    async def go():
        app = app_of(where, timeout=10)
        async with client_of(app) as client:
            await client.get("/")
            sid = client.cookies["session"]
            holder = where.holder(sid)
            waiting = asyncio.ensure_future(client.get("/late"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            holder.rollback()
            await asyncio.sleep(0.05)
            return (await client.get("/")).text

    assert asyncio.run(go()) == "2"
    assert [f for f in session_files(session_dir) if f.endswith(".lock")] == []


def test_a_change_after_the_app_closed_the_store_raises_and_what_was_closed_is_stored(where):
    async def go():
        async with client_of(app_of(where)) as client:
            new = await client.get("/close-then-write")  # a new session
            existing = await client.get("/close-then-write")  # read on first use, then closed
            return new.text, existing.text, (await client.get("/")).text

    assert asyncio.run(go()) == ("refused, still 5", "refused, still 5", "6")


def test_a_new_session_filled_after_the_headers_is_not_stored_and_says_so(session_dir, caplog):
    where = Where("files", session_dir, None)

    async def go():
        async with client_of(app_of(where)) as client:
            with caplog.at_level(logging.WARNING, "fastsession"):
                return await client.get("/fills-while-streaming")

    response = asyncio.run(go())
    assert response.text == "headers are out; filled" and "set-cookie" not in response.headers
    assert session_files(session_dir) == []  # no record that no cookie names
    assert "filled after the response headers went out" in caplog.text
