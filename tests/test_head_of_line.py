"""Head-of-line under real servers: one user's slow request must not queue that user's reads, nor other users.

User A sends one slow request (2 s) and, while it runs, 3 fast reads; user B
sends one request. With ``locking="commit"``, early release, or a read-only
request, the fast reads and B finish in a fraction of the slow request, and
the slow request's change is still stored. gunicorn (4 sync workers) serves
WSGI, Flask and Django; uvicorn serves Starlette (ASGI).
"""

import concurrent.futures
import os
import subprocess
import sys
import time

import pytest
from test_deploy import free_port, request, uvicorn_serving

SLOW = 2.0

WSGI_APPS = """
import os, time
DIRECTORY, FRAMEWORK, MODE = os.environ["SESSIONS"], os.environ["FRAMEWORK"], os.environ["MODE"]

if FRAMEWORK == "flask":
    from flask import Flask, session
    from fastsession.contrib.flask import FastSessionInterface
    app = Flask(__name__)
    app.session_interface = FastSessionInterface(DIRECTORY, locking="commit" if MODE == "commit" else "request")

    @app.get("/login")
    def login():
        session["user"] = "ann"
        return "ok"

    @app.get("/slow")
    def slow():
        session["slow"] = session.get("slow", 0) + 1
        if MODE == "release":
            session.release()
        time.sleep(SLOW)
        return "slow"

    @app.get("/fast")
    def fast():
        return str(session.get("user"))

    @app.get("/show")
    def show():
        return repr(sorted(session.items()))
    application = app

elif FRAMEWORK == "django":
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def login(request):
        request.session["user"] = "ann"
        return HttpResponse("ok")

    def slow(request):
        request.session["slow"] = request.session.get("slow", 0) + 1
        if MODE == "release":
            request.session.release()
        time.sleep(SLOW)
        return HttpResponse("slow")

    def fast(request):
        return HttpResponse(str(request.session.get("user")))

    def show(request):
        return HttpResponse(repr(sorted(request.session.items())))

    urlpatterns = [path("login", login), path("slow", slow), path("fast", fast), path("show", show)]
    settings.configure(
        SECRET_KEY="fastsession-hol-" + "x" * 40, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"], DATABASES={},
        MIDDLEWARE=["fastsession.contrib.django.LockingSessionMiddleware"],
        SESSION_ENGINE="fastsession.contrib.django", SESSION_FILE_PATH=DIRECTORY,
        FASTSESSION_LOCKING="commit" if MODE == "commit" else "request",
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application
    application = get_wsgi_application()

else:  # plain WSGI
    from fastsession.wsgi import SessionMiddleware

    def app(environ, start_response):
        store = environ["fastsession.store"]
        where = environ["PATH_INFO"]
        session = store.get_session(where == "/login")
        body = "none"
        if where == "/login":
            session["user"] = "ann"
        elif where == "/slow":
            session["slow"] = session.get("slow", 0) + 1
            if MODE == "release":
                store.close()  # write now, release the lock, carry on
            time.sleep(SLOW)
        elif where == "/show":
            body = repr(sorted(session.items()))
        elif session is not None:
            body = str(session.get("user"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    # release mode: fast reads are marked read-only (no lock at all)
    application = SessionMiddleware(
        app, DIRECTORY, locking="commit" if MODE == "commit" else "request",
        read_only=(lambda environ: environ["PATH_INFO"] == "/fast") if MODE == "release" else None)
SLOW = float(os.environ["SLOW"])
"""

STARLETTE_APP = """
import asyncio, os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from fastsession.asgi import SessionMiddleware

MODE = os.environ["MODE"]

async def login(request):
    request.session["user"] = "ann"
    return PlainTextResponse("ok")

async def slow(request):
    request.session["slow"] = request.session.get("slow", 0) + 1
    if MODE == "release":
        await request.scope["fastsession.store"].close()
    await asyncio.sleep(float(os.environ["SLOW"]))
    return PlainTextResponse("slow")

async def fast(request):
    return PlainTextResponse(str(request.session.get("user")))

async def show(request):
    return PlainTextResponse(repr(sorted(request.session.items())))

application = Starlette(routes=[Route("/login", login), Route("/slow", slow), Route("/fast", fast),
                                Route("/show", show)])
application.add_middleware(SessionMiddleware, session_directory=os.environ["SESSIONS"],
                           locking="commit" if MODE == "commit" else "request")
"""


def gunicorn_serving(folder, env):
    (folder / "hol_app.py").write_text(WSGI_APPS)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "hol_app:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "4",
            "-k",
            "sync",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            request(port, "fast")
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(server.stderr.read().decode()) from None
            time.sleep(0.1)


def timed(port, path, cookie, name):
    began = time.monotonic()
    status, body, _ = request(port, path, cookie, cookie_name=name)
    return status, body, time.monotonic() - began


def scenario(port, name):
    """A's slow request, then (while it runs) A's 3 fast reads and B's request: their times."""
    status, _, cookie_a = request(port, "login", cookie_name=name)
    assert status == 200 and cookie_a
    _, _, cookie_b = request(port, "login", cookie_name=name)
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        slow = pool.submit(timed, port, "slow", cookie_a, name)
        time.sleep(0.3)  # the slow request has its session
        fast = [pool.submit(timed, port, "fast", cookie_a, name) for _ in range(3)]
        other = pool.submit(timed, port, "fast", cookie_b, name)
        fast = [f.result() for f in fast]
        other = other.result()
        slow = slow.result()
    assert slow[0] == 200 and slow[2] >= SLOW
    for status, body, _ in [*fast, other]:
        assert (status, body) == (200, b"ann")
    deadline = time.monotonic() + 5
    while True:  # plain WSGI commits in close(), which the server calls after the client has the response
        _, shown, _ = request(port, "show", cookie_a, cookie_name=name)
        if b"('slow', 1)" in shown or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert b"('slow', 1)" in shown and b"('user', 'ann')" in shown  # the slow request's change is stored
    return [f[2] for f in fast], other[2]


@pytest.mark.parametrize("framework", ["wsgi", "flask", "django"])
@pytest.mark.parametrize("mode", ["commit", "release"])
def test_gunicorn_fast_reads_of_a_user_do_not_queue_behind_their_slow_request(tmp_path, framework, mode):
    env = {"SESSIONS": str(tmp_path / "sessions"), "FRAMEWORK": framework, "MODE": mode, "SLOW": str(SLOW)}
    server, port = gunicorn_serving(tmp_path, env)
    try:
        fast, other = scenario(
            port, "sessionid" if framework == "django" else "session" if framework == "flask" else "SID"
        )
    finally:
        server.terminate()
        server.wait(10)
    # Without the fix the fast reads wait out the slow request (~1.7 s) and, with every
    # worker taken, so does user B.
    assert max(fast) < SLOW / 2, fast
    assert other < SLOW / 2, other


@pytest.mark.parametrize("mode", ["commit", "release"])
def test_uvicorn_fast_reads_of_a_user_do_not_queue_behind_their_slow_request(tmp_path, mode):
    env = {"SESSIONS": str(tmp_path / "sessions"), "MODE": mode, "SLOW": str(SLOW)}
    with uvicorn_serving(tmp_path, STARLETTE_APP, env=env) as (port, _):
        fast, other = scenario(port, "session")
    assert max(fast) < SLOW / 2, fast
    assert other < SLOW / 2, other


def test_gunicorn_request_locking_queues_them_which_is_what_the_options_above_fix(tmp_path):
    env = {"SESSIONS": str(tmp_path / "sessions"), "FRAMEWORK": "flask", "MODE": "request", "SLOW": str(SLOW)}
    server, port = gunicorn_serving(tmp_path, env)
    try:
        fast, _ = scenario(port, "session")
    finally:
        server.terminate()
        server.wait(10)
    assert min(fast) > SLOW / 2  # the baseline: the scenario does measure the queueing
