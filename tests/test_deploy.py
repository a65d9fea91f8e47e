"""Real servers, real clients: Django under uvicorn, with a client that disconnects."""

import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import session_files

DJANGO_ASGI_APP = '''
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
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def django_under_uvicorn(tmp_path):
    directory = str(tmp_path / "sessions")
    (tmp_path / "deployed.py").write_text(DJANGO_ASGI_APP.replace("DIRECTORY", repr(directory)))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "deployed:application", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(server.stderr.read().decode())
            time.sleep(0.05)
    yield port, directory
    server.terminate()
    try:
        server.wait(10)  # graceful shutdown does not hang on a stranded lock
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError("uvicorn's graceful shutdown hung")


def request(port, path, cookie=None, timeout=10.0):
    """(status, body, session cookie) of one request, through http.client."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/" + path, headers={"Cookie": f"sessionid={cookie}"} if cookie else {})
        response = conn.getresponse()
        body = response.read()
        found = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
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
