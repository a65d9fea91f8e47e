"""fastsession.contrib.django through Django's own test client and real processes."""

import os
import re
import stat
import tempfile

import django
import pytest
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

from conftest import session_files
from helpers import run_in_processes


def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


def boom(request):
    request.session["n"] = -1
    raise RuntimeError("view bug")


def stream(request):
    request.session["streamed"] = True
    return StreamingHttpResponse(iter([b"a", b"b"]))


def peek(request):
    return HttpResponse(str(request.session.get("n")))


urlpatterns = [path("count", count), path("boom", boom), path("stream", stream), path("peek", peek)]

if not settings.configured:
    settings.configure(
        SECRET_KEY="fastsession-tests-" + "d" * 40,
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["fastsession.contrib.django.LockingSessionMiddleware"],
        SESSION_ENGINE="fastsession.contrib.django",
        DATABASES={},
    )
    django.setup()

from django.core import management  # noqa: E402  (needs the settings above)
from django.test import Client, override_settings  # noqa: E402

from fastsession.contrib.django import SessionStore  # noqa: E402


@pytest.fixture
def session_path(tmp_path):
    directory = str(tmp_path / "django-sessions")
    with override_settings(SESSION_FILE_PATH=directory):
        yield directory


def test_default_storage_is_a_private_folder_inside_the_temp_directory():
    with override_settings(SESSION_FILE_PATH=None):
        store = SessionStore()
        store["a"] = 1
        store.save()
        expected = os.path.join(tempfile.gettempdir(), "fastsession-django")
        assert os.path.exists(os.path.join(expected, store.session_key[:2], store.session_key))
        assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700
        store.delete()


def test_new_keys_are_fastsession_ids(session_path):
    store = SessionStore()
    store["a"] = 1
    store.save()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", store.session_key)
    assert session_files(session_path) == [os.path.join(store.session_key[:2], store.session_key)]


@pytest.mark.parametrize("key", ["../../../../etc/passwd", "a/b/c/d/e/f", "a\\b\\c\\d\\e", "........", "abcdefgh\n"])
def test_keys_that_are_not_path_safe_never_reach_a_path(session_path, key, tmp_path):
    store = SessionStore(key)
    assert store.load() == {}
    assert store.exists(key) is False
    store["x"] = 1
    store.save()
    assert store.session_key != key
    for name in session_files(str(tmp_path)):
        assert re.fullmatch(r"django-sessions/[A-Za-z0-9_-]{2}/[A-Za-z0-9_-]{43}", name), name


def test_existing_django_style_keys_keep_working(session_path):
    key = "abcdefgh12345678"  # the shape of key Django's own generator makes
    existing = SessionStore()
    existing._session_key = key
    existing._session_cache = {"a": 1}
    existing.save(must_create=True)
    assert SessionStore(key)["a"] == 1
    assert SessionStore("unknown1234567")._get_session() == {}  # an unknown one is still not adopted


def test_clearsessions_removes_expired_sessions_only(session_path):
    keep, gone = SessionStore(), SessionStore()
    keep["a"], gone["a"] = 1, 2
    keep.set_expiry(3600)
    gone.set_expiry(-10)
    keep.save()
    gone.save()
    management.call_command("clearsessions")
    assert SessionStore(keep.session_key).exists(keep.session_key)
    assert not SessionStore(gone.session_key).exists(gone.session_key)


def test_client_round_trip_with_the_locking_middleware(session_path):
    client = Client()
    assert [client.get("/count").content for _ in range(3)] == [b"1", b"2", b"3"]
    assert not [f for f in session_files(session_path) if f.endswith(".lock")]


def test_lock_is_released_when_the_view_raises(session_path):
    client = Client(raise_request_exception=False)
    client.get("/count")
    assert client.get("/boom").status_code == 500
    with override_settings(FASTSESSION_LOCK_TIMEOUT=2):
        assert Client(raise_request_exception=False).get("/peek").status_code == 200  # no one left waiting
        client.cookies = client.cookies
        assert client.get("/count").content == b"2"  # the failed request's change was not saved
    assert not [f for f in session_files(session_path) if f.endswith(".lock")]


def test_streaming_response_holds_the_lock_until_closed(session_path):
    client = Client()
    client.get("/count")
    response = client.get("/stream")
    locks = [f for f in session_files(session_path) if f.endswith(".lock")]
    assert len(locks) == 1  # still streaming: still held
    assert b"".join(response.streaming_content) == b"ab"
    response.close()
    assert not [f for f in session_files(session_path) if f.endswith(".lock")]


def test_four_processes_through_the_locking_middleware_lose_no_update(session_path):
    client = Client()
    client.get("/count")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    def worker():
        own = Client()
        own.cookies[settings.SESSION_COOKIE_NAME] = cookie
        for _ in range(50):
            assert own.get("/count").status_code == 200

    run_in_processes(worker)
    assert client.get("/peek").content == b"201"


def test_plain_session_middleware_works_with_the_engine(session_path):
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        client = Client()
        assert [client.get("/count").content for _ in range(2)] == [b"1", b"2"]
        assert not [f for f in session_files(session_path) if f.endswith(".lock")]
