"""Real servers, real clients: Django under uvicorn, with a client that disconnects."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import session_files

DJANGO_ASGI_APP = """
import asyncio
import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

async def slow(request):
    await request.session.aset("slow", True)
    await asyncio.sleep(30)  # the client hangs up long before
    return HttpResponse("late")

def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))

urlpatterns = [path("slow", slow), path("count", count)]
settings.configure(
    SECRET_KEY="fastsession-deploy-" + "x" * 40, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"], DATABASES={},
    MIDDLEWARE=["fastsession.contrib.django.LockingSessionMiddleware"],
    SESSION_ENGINE="fastsession.contrib.django", SESSION_FILE_PATH=DIRECTORY,
    FASTSESSION_LOCK_TIMEOUT=20,
)
django.setup()
from django.core.asgi import get_asgi_application
application = get_asgi_application()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_serving(folder, source, workers=1, env=None):
    """``source`` written to ``folder/deployed.py`` and served by a real uvicorn; yields (port, its pid)."""
    (folder / "deployed.py").write_text(source)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "deployed:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(server.stderr.read().decode()) from None
            time.sleep(0.05)
    try:
        yield port, server.pid
    finally:
        server.terminate()
        try:
            server.wait(10)  # graceful shutdown does not hang on a stranded lock
        except subprocess.TimeoutExpired:
            server.kill()
            raise AssertionError("uvicorn's graceful shutdown hung") from None


@pytest.fixture
def django_under_uvicorn(tmp_path):
    directory = str(tmp_path / "sessions")
    with uvicorn_serving(tmp_path, DJANGO_ASGI_APP.replace("DIRECTORY", repr(directory))) as (port, _):
        yield port, directory


def request(port, path, cookie=None, timeout=10.0, cookie_name="sessionid"):
    """(status, body, session cookie) of one request, through http.client."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/" + path, headers={"Cookie": f"{cookie_name}={cookie}"} if cookie else {})
        response = conn.getresponse()
        body = response.read()
        found = re.search(f"{cookie_name}=([^;]+)", response.getheader("Set-Cookie") or "")
        return response.status, body, found.group(1) if found else cookie
    finally:
        conn.close()


def test_a_client_that_disconnects_leaves_no_lock_behind(django_under_uvicorn):
    port, directory = django_under_uvicorn
    status, body, cookie = request(port, "count")
    assert (status, body) == (200, b"1")
    hung_up = socket.create_connection(("127.0.0.1", port))
    hung_up.sendall(f"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={cookie}\r\n\r\n".encode())
    time.sleep(0.5)  # the view is running, the session locked
    assert [f for f in session_files(directory) if f.endswith(".lock")]
    hung_up.close()  # the client goes away: Django cancels the view
    started = time.monotonic()
    status, body, _ = request(port, "count", cookie)
    assert (status, body) == (200, b"2")
    assert time.monotonic() - started < 2  # served at once, not after the 30 s view or the 20 s timeout
    assert [f for f in session_files(directory) if f.endswith(".lock")] == []


STARLETTE_APP = """
import asyncio, os
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

KIND, DIRECTORY, REDIS_URL, PREFIX = (os.environ[k] for k in ("KIND", "DIRECTORY", "REDIS_URL", "PREFIX"))

async def count(request: Request):
    seen = request.session.get("n", 0)
    await asyncio.sleep(0.002)  # a query between the read and the write
    request.session["n"] = seen + 1
    return PlainTextResponse(str(seen + 1))

async def peek(request: Request):
    return PlainTextResponse(str(request.session.get("n", 0)))

async def plain(request: Request):
    return PlainTextResponse("no session here")

async def stream(request):
    request.session["n"] = 1000
    async def chunks():
        for _ in range(3000):
            yield b"."
            await asyncio.sleep(0.01)
    return StreamingResponse(chunks())

if KIND.startswith("fastsession"):
    from fastsession.asgi import SessionMiddleware
    if KIND.endswith("redis"):
        import redis.asyncio
        where = dict(redis=redis.asyncio.Redis.from_url(REDIS_URL), prefix=PREFIX)
    else:
        where = dict(session_directory=DIRECTORY)
    locking = os.environ.get("LOCKING", "request")
    middleware = [Middleware(SessionMiddleware, timeout=30, locking=locking, **where)]
elif KIND == "starlette-signed-cookie":
    from starlette.middleware.sessions import SessionMiddleware
    middleware = [Middleware(SessionMiddleware, secret_key="fastsession-deploy-test-" + "x" * 32)]
elif KIND == "starsessions-redis":
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore
    middleware = [Middleware(SessionMiddleware, store=RedisStore(REDIS_URL, prefix=PREFIX), lifetime=3600,
                             cookie_https_only=False), Middleware(SessionAutoloadMiddleware)]

if KIND == "fastsession-fastapi":
    from fastapi import FastAPI
    application = FastAPI(middleware=middleware)
    application.get("/count", response_class=PlainTextResponse)(count)
    application.get("/peek", response_class=PlainTextResponse)(peek)
else:
    application = Starlette(routes=[Route("/count", count), Route("/peek", peek), Route("/stream", stream),
                                    Route("/plain", plain)],
                            middleware=middleware)
"""

DJANGO_ASYNC_VIEWS = """
async def acount(request):
    seen = await request.session.aget("n", 0)
    await asyncio.sleep(0.002)
    await request.session.aset("n", seen + 1)
    return HttpResponse(str(seen + 1))

def peek(request):
    return HttpResponse(str(request.session.get("n", 0)))

async def hold(request):
    await request.session.aset("held", True)
    await asyncio.sleep(3)  # the session's lock is held all along
    return HttpResponse("held")

async def plain(request):
    return HttpResponse("no session here")
"""


def hammer(port, cookie_name, path="/count", total=400, connections=8, acknowledged=None):
    """``total`` increments of one user over ``connections`` connections at once; the counter the server keeps.

    The client keeps the cookie as a browser does: the latest Set-Cookie wins. ``acknowledged``, a list:
    a 409 (a refused change) is allowed too, and each 200 is counted in it.
    """
    import asyncio

    import httpx

    async def go():
        jar = {}
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:

            async def get(url):
                headers = {"Cookie": f"{cookie_name}={jar['cookie']}"} if "cookie" in jar else {}
                response = await client.get(url, headers=headers)
                if acknowledged is not None and response.status_code == 409:
                    return response  # refused, and said so: not an increment
                assert response.status_code == 200, response.text
                if acknowledged is not None and url == path:
                    acknowledged.append(1)
                found = re.search(f"{cookie_name}=([^;]*)", response.headers.get("set-cookie", ""))
                if found:
                    jar["cookie"] = found.group(1)
                return response

            await get(path)  # the first: the session exists from here on

            async def tab(count):
                for _ in range(count):
                    await get(path)

            rest = total - 1
            await asyncio.gather(*(tab(rest // connections + (i < rest % connections)) for i in range(connections)))
            return int((await get("/peek")).text)

    return asyncio.run(go())


def test_one_user_over_8_connections_to_2_uvicorn_workers_loses_nothing_where_the_others_lose(tmp_path, redis_url):
    results = {}
    for kind in (
        "fastsession-files",
        "fastsession-redis",
        "fastsession-fastapi",
        "starlette-signed-cookie",
        "starsessions-redis",
    ):
        folder = tmp_path / kind
        folder.mkdir()
        env = {
            "KIND": kind,
            "DIRECTORY": str(folder / "sessions"),
            "REDIS_URL": redis_url,
            "PREFIX": f"deploy-{kind}-{os.getpid()}:",
        }
        with uvicorn_serving(folder, STARLETTE_APP, workers=2, env=env) as (port, _):
            results[kind] = 400 - hammer(port, "session")
    print("\nlost of 400 increments (one user, 8 connections, 2 uvicorn workers):", results)
    assert results["fastsession-files"] == results["fastsession-redis"] == results["fastsession-fastapi"] == 0
    # What the stores without a lock lose, side by side (hundreds, on this 2-core machine):
    assert results["starlette-signed-cookie"] > 0 and results["starsessions-redis"] > 0


@pytest.mark.parametrize("kind", ["fastsession-files", "fastsession-redis"])
def test_commit_locking_never_acknowledges_an_increment_it_loses_under_uvicorn(tmp_path, redis_url, kind):
    """locking="commit" through a real server: every 200 is an increment stored; the rest are 409s."""
    env = {
        "KIND": kind,
        "DIRECTORY": str(tmp_path / "sessions"),
        "REDIS_URL": redis_url,
        "PREFIX": f"deploy-commit-{os.getpid()}:",
        "LOCKING": "commit",
    }
    acknowledged = []
    with uvicorn_serving(tmp_path, STARLETTE_APP, workers=2, env=env) as (port, _):
        stored = hammer(port, "session", acknowledged=acknowledged)
    print(f"\n{kind}, locking='commit': {len(acknowledged)} of 400 acknowledged, {stored} stored")
    assert stored == len(acknowledged) > 0


def test_django_asgi_with_the_locking_middleware_loses_nothing_on_two_workers(tmp_path):
    directory = str(tmp_path / "sessions")
    source = DJANGO_ASGI_APP.replace("DIRECTORY", repr(directory)).replace(
        "urlpatterns = [",
        DJANGO_ASYNC_VIEWS + '\nurlpatterns = [path("acount", acount), path("peek", peek), path("hold", hold), ',
    )
    with uvicorn_serving(tmp_path, source, workers=2) as (port, _):
        assert hammer(port, "sessionid", path="/acount") == 400
        assert hammer(port, "sessionid", path="/count") == 400  # a sync view: a fresh user, the same
    assert [f for f in session_files(directory) if f.endswith(".lock")] == []


def test_a_client_that_disconnects_from_starlette_leaves_no_lock_and_no_change(tmp_path, redis_url):
    env = {
        "KIND": "fastsession-files",
        "DIRECTORY": str(tmp_path / "sessions"),
        "REDIS_URL": redis_url,
        "PREFIX": "unused:",
    }
    with uvicorn_serving(tmp_path, STARLETTE_APP, env=env) as (port, _):
        status, body, cookie = request(port, "count", cookie_name="session")
        assert (status, body) == (200, b"1")
        hung_up = socket.create_connection(("127.0.0.1", port))
        hung_up.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session={cookie}\r\n\r\n".encode())
        assert hung_up.recv(100).startswith(b"HTTP/1.1 200")  # streaming, the session locked
        hung_up.close()  # the client goes away mid-response
        started = time.monotonic()
        status, body, _ = request(port, "count", cookie, cookie_name="session")
        assert (status, body) == (200, b"2")  # the stream's change (1000) was rolled back
        assert time.monotonic() - started < 2  # and its lock went with the client
    assert [f for f in session_files(str(tmp_path / "sessions")) if f.endswith(".lock")] == []


@pytest.mark.parametrize("kind", ["files", "redis"])
def test_django_asgi_requests_waiting_for_a_lock_stall_no_one_else(tmp_path, kind, redis_url):
    # Where Django shares one thread-sensitive executor, a lock waited for in
    # it would keep every sync view waiting; on Redis, 12 waits in the loop's
    # default pool (6 threads here) kept another user's request waiting 9 s.
    # The lock is waited for on the loop, files and Redis alike.
    import threading

    directory = str(tmp_path / "sessions")
    source = DJANGO_ASGI_APP.replace("DIRECTORY", repr(directory)).replace(
        "urlpatterns = [", DJANGO_ASYNC_VIEWS + '\nurlpatterns = [path("hold", hold), '
    )
    if kind == "redis":
        source = source.replace(
            "FASTSESSION_LOCK_TIMEOUT=20,",
            f"FASTSESSION_LOCK_TIMEOUT=20, FASTSESSION_REDIS_URL={redis_url!r}, FASTSESSION_REDIS_PREFIX='burst:',",
        )
    with uvicorn_serving(tmp_path, source) as (port, _):
        _, _, cookie_a = request(port, "count")
        _, _, cookie_b = request(port, "count")  # user B has a session too: its request takes B's lock
        slow = threading.Thread(target=request, args=(port, "hold", cookie_a))
        slow.start()
        time.sleep(0.3)  # A's slow request holds A's lock
        waiting = [threading.Thread(target=request, args=(port, "count", cookie_a)) for _ in range(12)]
        for thread in waiting:
            thread.start()  # A's other tabs wait for it
        time.sleep(0.4)
        status, body, _ = request(port, "count", cookie_b)  # user B, a sync view
        served_during_the_hold = slow.is_alive()  # an order of events, not a time bound
        slow.join()
        for thread in waiting:
            thread.join()
        assert (status, body) == (200, b"2")
        assert served_during_the_hold  # B was served while A's hold still ran, not after A's queue


@pytest.mark.parametrize("kind", ["files", "redis"])
def test_under_uvicorn_requests_that_never_read_the_session_do_not_wait_for_its_lock(tmp_path, kind, redis_url):
    # One user's stream holds the session's lock (30 s); its other requests that never read the session
    # (a page's API and asset calls) are served meanwhile, as an order of events: the stream still runs.
    env = {
        "KIND": f"fastsession-{kind}",
        "DIRECTORY": str(tmp_path / "sessions"),
        "REDIS_URL": redis_url,
        "PREFIX": f"lazy-{kind}:",
    }
    with uvicorn_serving(tmp_path, STARLETTE_APP, env=env) as (port, _):
        _, _, cookie = request(port, "count", cookie_name="session")
        streaming = socket.create_connection(("127.0.0.1", port))
        streaming.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session={cookie}\r\n\r\n".encode())
        assert streaming.recv(100).startswith(b"HTTP/1.1 200")  # streaming, the session locked
        served = [request(port, "plain", cookie, cookie_name="session") for _ in range(3)]
        still_streaming = streaming.recv(10)  # the stream goes on: its lock was held all along
        streaming.close()
    assert [status for status, _, _ in served] == [200, 200, 200] and still_streaming


def test_django_asgi_async_views_that_never_read_the_session_do_not_wait_for_its_lock(tmp_path):
    directory = str(tmp_path / "sessions")
    source = DJANGO_ASGI_APP.replace("DIRECTORY", repr(directory)).replace(
        "urlpatterns = [", DJANGO_ASYNC_VIEWS + '\nurlpatterns = [path("hold", hold), path("plain", plain), '
    )
    import threading

    with uvicorn_serving(tmp_path, source) as (port, _):
        _, _, cookie = request(port, "count")
        slow = threading.Thread(target=request, args=(port, "hold", cookie))
        slow.start()
        for _ in range(100):  # until the hold has the lock
            if [f for f in session_files(directory) if f.endswith(".lock")]:
                break
            time.sleep(0.05)
        served = [request(port, "plain", cookie) for _ in range(3)]
        served_during_the_hold = slow.is_alive()  # an order of events, not a time bound
        slow.join()
    assert [status for status, _, _ in served] == [200, 200, 200]
    assert served_during_the_hold
