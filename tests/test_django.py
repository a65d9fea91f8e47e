"""fastsession.contrib.django through Django's own test client and real processes."""

import logging
import os
import re
import stat
import tempfile
import time

import django
import pytest
from conftest import session_files
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from helpers import run_in_processes, stored_relpath
from helpers import session_path as file_of


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


def early(request):
    request.session["n"] = request.session.get("n", 0) + 1
    request.session.release()
    other = SessionStore(request.session.session_key)
    other.lock()  # not held by this request any more
    other.unlock()
    return HttpResponse(str(other.load()["n"]))


def nothing(request):
    return HttpResponse("ok")


class ReadsTheSessionLast:
    """Middleware inside the locking one whose process_response is the first to read the session."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Has-N"] = str("n" in request.session)
        return response


def csrf_form(request):
    from django.middleware.csrf import get_token

    return HttpResponse(get_token(request))


def csrf_submit(request):
    return HttpResponse("accepted")


urlpatterns = [
    path("csrf-form", csrf_form),
    path("csrf-submit", csrf_submit),
    path("nothing", nothing),
    path("count", count),
    path("boom", boom),
    path("stream", stream),
    path("peek", peek),
    path("early", early),
]

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

from fastsession.contrib.django import SessionStore, path_safe  # noqa: E402
from fastsession.names import stored_name  # noqa: E402


@pytest.fixture
def session_path(tmp_path):
    directory = str(tmp_path / "django-sessions")
    with override_settings(SESSION_FILE_PATH=directory):
        yield directory


class Storage:
    """Where the engine keeps sessions in a test: a directory, or a Redis prefix."""

    def __init__(self, path=None, client=None, prefix=None):
        self.path, self.client, self.prefix = path, client, prefix

    def locks(self):
        if self.client is None:
            return [f for f in session_files(self.path) if f.endswith(".lock")]
        return sorted(k.decode() for k in self.client.scan_iter(match=self.prefix + "*:lock"))


@pytest.fixture(params=["files", "redis"])
def storage(request, tmp_path):
    """The engine on files (SESSION_FILE_PATH) and on Redis (FASTSESSION_REDIS_URL), in turn."""
    if request.param == "files":
        directory = str(tmp_path / "django-sessions")
        with override_settings(SESSION_FILE_PATH=directory):
            yield Storage(path=directory)
        return
    import uuid

    import redis

    url = request.getfixturevalue("redis_url")
    prefix = f"django-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url)
    with override_settings(FASTSESSION_REDIS_URL=url, FASTSESSION_REDIS_PREFIX=prefix):
        yield Storage(client=client, prefix=prefix)
    client.close()


@pytest.fixture
def own_tempdir(tmp_path, monkeypatch):
    """tempfile.gettempdir() is a fresh folder, as /tmp on a new host."""
    from fastsession import files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(files, "_private_made", set())
    os.chmod(tmp_path, 0o1777)  # a shared temp folder, as /tmp is
    return tmp_path


def test_default_storage_is_a_private_per_user_folder_inside_the_temp_directory(own_tempdir):
    with override_settings(SESSION_FILE_PATH=None):
        store = SessionStore()
        store["a"] = 1
        store.save()
        expected = os.path.join(tempfile.gettempdir(), f"fastsession-django-{os.geteuid()}")
        assert os.path.exists(file_of(expected, store.session_key))
        assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700
        store.delete()


def plant_default_folder(own_tempdir, how):
    planted = own_tempdir / f"fastsession-django-{os.geteuid()}"
    if how == "symlink":
        (own_tempdir / "elsewhere").mkdir(mode=0o700)
        planted.symlink_to(own_tempdir / "elsewhere")
        return planted
    planted.mkdir()
    (planted / "ab").mkdir()  # shard folders, ready for planted sessions
    if how == "world-writable":
        os.chmod(planted, 0o777)
    elif how == "another user's":
        os.chmod(planted, 0o700)
        os.chown(planted, 65534, 65534)
    return planted


@pytest.mark.parametrize("how", ["world-writable", "another user's", "symlink"])
def test_a_default_folder_someone_else_made_is_refused_naming_it(own_tempdir, how):
    from fastsession import SessionError

    planted = plant_default_folder(own_tempdir, how)
    with override_settings(SESSION_FILE_PATH=None):
        with pytest.raises(SessionError, match=re.escape(str(planted))):
            SessionStore()


@pytest.mark.parametrize("how", ["world-writable", "another user's", "symlink"])
def test_a_session_file_path_others_can_write_or_a_symlink_is_refused(tmp_path, how):
    from fastsession import SessionError

    planted = plant_default_folder(tmp_path, how)
    with override_settings(SESSION_FILE_PATH=str(planted)):
        with pytest.raises(SessionError, match=re.escape(str(planted))):
            SessionStore()


def test_a_symlinked_shard_folder_is_refused(tmp_path):
    from fastsession import SessionError

    directory = tmp_path / "sessions"
    directory.mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir()
    (directory / "ab").symlink_to(tmp_path / "elsewhere")
    with override_settings(SESSION_FILE_PATH=str(directory)):
        with pytest.raises(SessionError, match="shard folder .*ab"):
            SessionStore()


def test_new_keys_are_fastsession_ids(session_path):
    store = SessionStore()
    store["a"] = 1
    store.save()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", store.session_key)
    assert session_files(session_path) == [stored_relpath(store.session_key)]


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


def test_client_round_trip_with_the_locking_middleware(storage):
    client = Client()
    assert [client.get("/count").content for _ in range(3)] == [b"1", b"2", b"3"]
    assert locks(storage) == []


def test_the_save_of_a_finished_response_commits_and_releases_in_one_step(session_path, monkeypatch):
    """On files the middleware's save writes the next version into the lockfile and renames it over the session:
    no temporary file, no second step to release. A view's own save() keeps the lock for the rest of the request."""
    from fastsession.files import FileBackend

    written = []
    write = FileBackend.write
    monkeypatch.setattr(FileBackend, "write", lambda self, *args: (written.append(args[0][0]), write(self, *args))[1])
    client = Client()
    assert [client.get("/count").content for _ in range(3)] == [b"1", b"2", b"3"]
    assert written == [] and locks(Storage(path=session_path)) == []
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert SessionStore(key).load()["n"] == 3
    held = SessionStore(key)
    held.lock()
    held["n"] = 10
    held.save()  # not the middleware's: written beside the lock, which stays
    assert len(written) == 1 and len(locks(Storage(path=session_path))) == 1
    held.unlock()
    assert client.get("/count").content == b"11"


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_on_redis_a_request_that_changes_the_session_makes_two_round_trips(storage, monkeypatch):
    """Lock-and-read, then commit-and-release: the save of a finished response ends the lock in its own script."""
    from fastsession.redis import ScriptCaller

    made = []
    call = ScriptCaller.__call__
    monkeypatch.setattr(
        ScriptCaller, "__call__", lambda self, name, *args: (made.append(name), call(self, name, *args))[1]
    )
    client = Client()
    client.get("/count")
    made.clear()
    assert client.get("/count").content == b"2"
    assert made == ["acquire", "commit"]
    made.clear()
    assert client.get("/peek").status_code == 200
    assert made == ["acquire", "release"] and locks(storage) == []


def test_a_stored_name_sent_as_the_session_cookie_is_a_stranger(storage):
    """Issue 24 item 1: a victim's stored name (from a log line or a listing) opens, moves and deletes nothing."""
    victim = Client()
    assert [victim.get("/count").content for _ in range(2)] == [b"1", b"2"]
    key = victim.cookies["sessionid"].value
    attacker = Client()
    attacker.cookies["sessionid"] = stored_name(key)
    assert attacker.get("/count").content == b"1"  # a session of its own
    assert attacker.cookies["sessionid"].value not in (key, stored_name(key))
    assert victim.get("/count").content == b"3"


def test_lock_is_released_when_the_view_raises(storage):
    client = Client(raise_request_exception=False)
    client.get("/count")
    assert client.get("/boom").status_code == 500
    with override_settings(FASTSESSION_LOCK_TIMEOUT=2):
        assert Client(raise_request_exception=False).get("/peek").status_code == 200  # no one left waiting
        client.cookies = client.cookies
        assert client.get("/count").content == b"2"  # the failed request's change was not saved
    assert locks(storage) == []


def test_streaming_response_holds_the_lock_until_closed(storage):
    client = Client()
    client.get("/count")
    response = client.get("/stream")
    assert len(locks(storage)) == 1  # still streaming: still held
    assert b"".join(response.streaming_content) == b"ab"
    response.close()
    assert locks(storage) == []


def count_in_four_processes(each):
    """One user's session: counted once here, then ``each`` times by each of 4 processes; (its key, the count)."""
    client = Client()
    client.get("/count")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    def worker():
        own = Client()
        own.cookies[settings.SESSION_COOKIE_NAME] = cookie
        for _ in range(each):
            assert own.get("/count").status_code == 200

    run_in_processes(worker)
    return cookie, int(client.get("/peek").content)


def test_four_processes_through_the_locking_middleware_lose_no_update(storage):
    assert count_in_four_processes(50)[1] == 201


def test_plain_session_middleware_works_with_the_engine(storage):
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        client = Client()
        assert [client.get("/count").content for _ in range(2)] == [b"1", b"2"]
        assert locks(storage) == []


# -- expiry: the same answers as Django's own file backend ------------------------------

EXPIRIES = {
    "0 (browser close)": 0,
    "an int": 300,
    "a negative int": -10,
    "None": None,
    "a future datetime": "future",
    "a past datetime": "past",
}


def expiry_value(spec):
    import datetime

    from django.utils import timezone

    if spec == "future":
        return timezone.now() + datetime.timedelta(hours=1)
    if spec == "past":
        return timezone.now() - datetime.timedelta(hours=1)
    return spec


def survives_save_and_load(engine, spec):
    store = engine()
    store["a"] = 1
    store.set_expiry(expiry_value(spec))
    store.save()
    again = engine(store.session_key)
    return again.get("a") == 1, again.get_expire_at_browser_close()


@pytest.mark.parametrize("spec", list(EXPIRIES.values()), ids=list(EXPIRIES))
def test_load_after_save_agrees_with_djangos_file_backend(storage, spec):
    from django.contrib.sessions.backends.file import SessionStore as DjangoFileStore

    assert survives_save_and_load(SessionStore, spec) == survives_save_and_load(DjangoFileStore, spec)


def test_set_expiry_zero_keeps_the_session_on_the_next_requests(session_path):
    store = SessionStore()
    store["_auth_user_id"] = "1"
    store.set_expiry(0)  # a login without "remember me"
    store.save()
    path = file_of(session_path, store.session_key)
    then = time.time() - 600
    os.utime(path, (then, then))  # ten minutes later: still well within SESSION_COOKIE_AGE
    assert SessionStore(store.session_key).get("_auth_user_id") == "1"


def test_an_int_expiry_counts_from_the_last_save(session_path):
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(60)
    store.save()
    path = file_of(session_path, store.session_key)
    then = time.time() - 120
    os.utime(path, (then, then))
    assert SessionStore(store.session_key).get("a") is None  # as Django's db and cache backends say


@pytest.mark.parametrize("past_the_age", [-30.0, -1.5, -0.5, 0.5, 30.0])
def test_the_default_age_expires_a_session_when_djangos_own_rule_says(session_path, past_the_age, monkeypatch):
    # SESSION_COOKIE_AGE from the last save, counted in whole seconds as SessionBase.get_expiry_age counts. The
    # engine's clock is held still, so the half-second cases do not depend on how fast this machine runs.
    import datetime
    import types

    from django.contrib.sessions.backends.base import SessionBase

    import fastsession.contrib.django as engine

    store = SessionStore()
    store["a"] = 1
    store.save()
    now = time.time()
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(time=lambda: now))
    then = now - settings.SESSION_COOKIE_AGE - past_the_age
    os.utime(file_of(session_path, store.session_key), (then, then))
    utc = datetime.timezone.utc
    modified, at = datetime.datetime.fromtimestamp(then, tz=utc), datetime.datetime.fromtimestamp(now, tz=utc)
    expiry = modified + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    age = SessionBase.get_expiry_age(store, modification=at, expiry=expiry)
    assert (SessionStore(store.session_key).get("a") is None) == (age <= 0)
    assert (age <= 0) == (past_the_age > -1)  # each case is on the side of the boundary it is named for


def test_a_subclass_that_counts_expiry_its_own_way_is_asked(session_path):
    class Strict(SessionStore):
        def get_expiry_age(self, **kwargs):
            return 0  # everything is expired

    store = SessionStore()
    store["a"] = 1
    store.save()
    assert SessionStore(store.session_key).get("a") == 1
    assert Strict(store.session_key).get("a") is None


def refresh_after_first_read(monkeypatch, key):
    """Make a request save a fresh version of ``key`` right after the next unlocked read of it."""
    from fastsession.files import FileBackend

    real_load = FileBackend.load
    done = []

    def load(self, handle, want_mtime=False):
        loaded = real_load(self, handle, want_mtime)
        if not done and handle[2] < 0:  # the unlocked read that decides "expired"
            done.append(True)
            fresh = SessionStore(key)
            fresh._session_cache = {"a": "saved meanwhile", "_session_expiry": 3600}  # no load first
            fresh.save()
        return loaded

    monkeypatch.setattr(FileBackend, "load", load)


def expired_session(session_path):
    store = SessionStore()
    store["a"] = 1
    store.set_expiry(-10)
    store.save()
    return store.session_key


def test_load_of_an_expired_session_never_deletes_one_saved_meanwhile(session_path, monkeypatch):
    key = expired_session(session_path)
    refresh_after_first_read(monkeypatch, key)
    assert SessionStore(key).load() == {}  # what it read was expired
    monkeypatch.undo()
    assert SessionStore(key).get("a") == "saved meanwhile"  # re-checked under the lock: kept


def test_clearsessions_never_deletes_a_session_saved_meanwhile(session_path, monkeypatch):
    key = expired_session(session_path)
    refresh_after_first_read(monkeypatch, key)
    management.call_command("clearsessions")
    monkeypatch.undo()
    assert SessionStore(key).get("a") == "saved meanwhile"


def test_clearsessions_passes_over_a_session_in_use(session_path):
    key = expired_session(session_path)
    holder = SessionStore(key)
    holder.lock()
    try:
        management.call_command("clearsessions")  # returns: does not wait for the request
    finally:
        holder.unlock()
    assert SessionStore(key).exists(key)


# -- the lock never outlives its request -------------------------------------------------


def locks(where):
    """The held locks: of a Storage (files or Redis), or of a session directory."""
    if isinstance(where, Storage):
        return where.locks()
    return [f for f in session_files(where) if f.endswith(".lock")]


def cancel_a_request(view, cookie, cancel_when, then=None):
    """Run one async request through the middleware, cancel it once ``cancel_when()`` is done.

    ``then()`` runs after, on the same event loop (a server's loop lives on).
    """
    import asyncio

    from django.test import AsyncRequestFactory

    from fastsession.contrib.django import LockingSessionMiddleware

    async def request_then_cancel():
        request = AsyncRequestFactory().get("/")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = cookie
        task = asyncio.ensure_future(LockingSessionMiddleware(view)(request))
        await cancel_when()
        task.cancel()  # what Django's ASGI handler does on http.disconnect
        with pytest.raises(asyncio.CancelledError):
            await task
        if then is not None:
            await then()

    asyncio.run(request_then_cancel())


def test_cancelled_async_request_releases_the_lock(storage):
    import asyncio

    client = Client()
    client.get("/count")
    entered = asyncio.Event()

    async def slow_view(request):
        entered.set()
        await asyncio.sleep(60)  # the client disconnects long before
        return HttpResponse("late")

    async def view_running():
        await asyncio.wait_for(entered.wait(), 10)
        assert len(locks(storage)) == 1  # held while the view runs

    cancel_a_request(slow_view, client.cookies[settings.SESSION_COOKIE_NAME].value, view_running)
    assert locks(storage) == []
    with override_settings(FASTSESSION_LOCK_TIMEOUT=2):
        assert client.get("/count").content == b"2"  # the user is served at once


def test_cancelled_while_waiting_for_the_lock_releases_it_once_taken(storage):
    import asyncio

    client = Client()
    client.get("/count")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    holder = SessionStore(cookie)
    holder.lock()

    async def view(request):
        raise AssertionError("never reached")

    async def waiting_for_the_holder():
        await asyncio.sleep(0.3)  # the worker thread is waiting for the lock

    async def holder_done():
        holder.unlock()  # now the worker thread gets the lock...
        for _ in range(500):
            await asyncio.sleep(0.01)
            if not locks(storage):
                return
        raise AssertionError("the cancelled request kept the lock")  # ...and must let it go

    cancel_a_request(view, cookie, waiting_for_the_holder, holder_done)


def test_async_requests_wait_for_the_lock_on_the_event_loop_not_in_a_thread(session_path, monkeypatch):
    import asyncio
    import threading

    from fastsession.files import FileBackend

    client = Client()
    client.get("/count")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    holder = SessionStore(cookie)
    holder.lock()
    tried_in, blocking_opens = set(), []
    try_open, open_ = FileBackend.try_open, FileBackend.open

    def recording_try_open(self, key):
        tried_in.add(threading.get_ident())
        return try_open(self, key)

    def recording_open(self, *args):
        blocking_opens.append(threading.get_ident())
        return open_(self, *args)

    monkeypatch.setattr(FileBackend, "try_open", recording_try_open)
    monkeypatch.setattr(FileBackend, "open", recording_open)

    async def view(request):
        return HttpResponse(str(await request.session.aget("n")))

    async def go():
        from django.test import AsyncRequestFactory

        from fastsession.contrib.django import LockingSessionMiddleware

        request = AsyncRequestFactory().get("/")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = cookie
        waiter = asyncio.ensure_future(LockingSessionMiddleware(view)(request))
        await asyncio.sleep(0.2)
        assert not waiter.done()  # waiting, and the loop runs: this coroutine did
        holder.unlock()
        response = await asyncio.wait_for(waiter, 5)
        return response.content, threading.get_ident()

    content, loop_thread = asyncio.run(go())
    assert content == b"1"
    assert tried_in == {loop_thread} and blocking_opens == []  # every try on the loop; no thread sat waiting
    assert locks(session_path) == []


def replace_session(request):
    request.session = SessionStore()  # a view (or a library) swaps the session object
    request.session["other"] = 1
    return HttpResponse("replaced")


urlpatterns.append(path("replace", replace_session))


def test_a_view_that_replaces_request_session_strands_no_lock(storage):
    client = Client()
    client.get("/count")
    assert client.get("/replace").status_code == 200
    assert locks(storage) == []


def logout_view(request):
    from django.contrib.sessions.backends.base import SessionBase

    assert isinstance(request.session, SessionBase)
    request.session.flush()  # what django.contrib.auth.logout does
    request.session["after"] = "logout"
    return HttpResponse("bye")


urlpatterns.append(path("logout", logout_view))


def test_logout_while_the_middleware_holds_the_lock(storage):
    client = Client()
    client.get("/count")
    old = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get("/logout").status_code == 200
    new = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new != old
    assert not SessionStore(old).exists(old)  # the old session is gone
    assert SessionStore(new)["after"] == "logout"
    assert locks(storage) == []


@pytest.mark.parametrize("must_create", [False, True])
def test_save_outside_the_middleware_releases_on_create_and_update_errors(session_path, must_create):
    from django.contrib.sessions.backends.base import CreateError, UpdateError

    store = SessionStore()
    store["a"] = 1
    store.save()
    key = store.session_key
    if not must_create:
        os.unlink(file_of(session_path, key))  # logged out elsewhere meanwhile
    again = SessionStore(key)
    again._session_cache = {"a": 2}
    with pytest.raises(CreateError if must_create else UpdateError):
        again.save(must_create=must_create)
    assert locks(session_path) == []


def client_and_holder():
    """A client whose session another request (the holder) has locked."""
    client = Client()
    client.get("/count")
    holder = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
    holder.lock()
    return client, holder


def test_fastsession_lock_timeout_bounds_the_wait_and_answers_503(storage):
    client, holder = client_and_holder()
    try:
        with override_settings(FASTSESSION_LOCK_TIMEOUT=0.3):
            started = time.monotonic()
            busy = client.get("/count")
            assert time.monotonic() - started < 2
        assert busy.status_code == 503 and busy["Retry-After"] == "1"
    finally:
        holder.unlock()
    assert client.get("/count").content == b"2"


# -- mutants the first mutation run left (tools/mutation.sh) -----------------------------------


def test_a_default_folder_open_to_the_group_is_refused(own_tempdir):
    from fastsession import SessionError

    planted = own_tempdir / f"fastsession-django-{os.geteuid()}"
    planted.mkdir(mode=0o750)  # this user's, not writable by others, but readable by a group
    with override_settings(SESSION_FILE_PATH=None):
        with pytest.raises(SessionError, match="^Django's default session folder .*SESSION_FILE_PATH"):
            SessionStore()


def test_loading_an_expired_session_waits_for_its_holder_then_deletes_it(session_path):
    import threading

    key = expired_session(session_path)
    holder = SessionStore(key)
    holder.lock()
    threading.Timer(0.3, holder.unlock).start()
    assert SessionStore(key).load() == {}
    assert not os.path.exists(file_of(session_path, key))  # deleted once the holder left
    assert locks(session_path) == []


def test_loading_an_expired_session_under_the_middlewares_lock_keeps_that_lock(session_path):
    key = expired_session(session_path)
    store = SessionStore(key)
    store.lock()
    assert store.load() == {}
    assert len(locks(session_path)) == 1  # still held: released by the middleware, at the end
    store.unlock()
    assert locks(session_path) == []


def test_clearsessions_skips_a_busy_session_at_once_and_survives_a_corrupt_one(session_path):
    key = expired_session(session_path)
    other = expired_session(session_path)
    with open(file_of(session_path, other), "wb") as f:
        f.write(b"not a session")
    holder = SessionStore(key)
    holder.lock()
    try:
        started = time.monotonic()
        management.call_command("clearsessions")
        assert time.monotonic() - started < 0.9  # passed over, not waited for
    finally:
        holder.unlock()
    assert SessionStore(key).exists(key)


# -- the engine's async API, through Django's async request path -------------------------


async def alogin(request):
    await request.session.acycle_key()  # as django.contrib.auth.alogin does
    await request.session.aset("user", "ann")
    await request.session.aset_expiry(300)
    return HttpResponse(str(await request.session.aget_expiry_age()))


async def awhoami(request):
    user = await request.session.aget("user")
    keys = sorted(await request.session.akeys())
    return HttpResponse(f"{user} {keys}")


async def alogout(request):
    await request.session.aflush()
    return HttpResponse("bye")


urlpatterns += [path("alogin", alogin), path("awhoami", awhoami), path("alogout", alogout)]


def test_the_async_session_api_under_djangos_async_handler(storage):
    import asyncio

    from django.test import AsyncClient

    async def go():
        client = AsyncClient()
        await client.get("/count")
        before = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert (await client.get("/alogin")).content == b"300"
        after = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert after != before  # a fresh key at login; the old one is gone
        assert not SessionStore().exists(before) and SessionStore().exists(after)
        assert (await client.get("/awhoami")).content == b"ann ['_session_expiry', 'n', 'user']"
        assert (await client.get("/alogout")).content == b"bye"
        assert not SessionStore().exists(after)
        assert (await client.get("/awhoami")).content == b"None []"

    asyncio.run(go())
    assert locks(storage) == []


# -- locking="commit", early release, read-only requests (issue: locks that don't queue readers) ------------


def test_release_saves_now_unlocks_and_the_new_session_still_gets_its_cookie(storage):
    client = Client()
    assert client.get("/early").content == b"1"
    assert settings.SESSION_COOKIE_NAME in client.cookies
    assert client.get("/early").content == b"2"
    assert client.get("/count").content == b"3"
    assert locks(storage) == []


def test_commit_locking_takes_no_lock_for_the_view_and_merges_overlapping_saves(storage):
    client = Client()
    client.get("/count")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(FASTSESSION_LOCKING="commit"):
        holder = SessionStore(key)
        holder.lock()
        try:
            assert client.get("/peek").content == b"1"  # read while another holds the lock: no wait
        finally:
            holder.unlock()
        overlapping = SessionStore(key)
        overlapping["other"] = "kept"  # loaded now, saved after the next request saved
        assert client.get("/count").content == b"2"
        overlapping.save()
        assert SessionStore(key).load() == {"n": 2, "other": "kept"}
        clash = SessionStore(key)
        clash["n"] = 10
        assert client.get("/count").content == b"3"
        from fastsession.errors import SessionConflict

        with pytest.raises(SessionConflict, match="'n'"):
            clash.save()
        assert SessionStore(key).load() == {"n": 3, "other": "kept"}
    assert locks(storage) == []


def count_clash(request):
    """/count, while another request of the same user stores its own increment."""
    n = request.session.get("n", 0)
    other = SessionStore(request.session.session_key)
    other["n"] = other["n"] + 1
    other.save()
    request.session["n"] = n + 1
    return HttpResponse(str(n + 1))


urlpatterns.append(path("count_clash", count_clash))


def test_commit_locking_answers_409_for_a_save_that_met_another_requests_change(storage):
    client = Client()
    client.get("/count")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(FASTSESSION_LOCKING="commit"):
        response = client.get("/count_clash")
        assert response.status_code == 409 and b"not stored" in response.content
        assert SessionStore(key).load() == {"n": 2}  # the other request's increment
        assert client.get("/count").content == b"3"
    assert locks(storage) == []


def test_a_read_only_request_takes_no_lock(storage):
    client, holder = client_and_holder()
    try:
        with override_settings(
            FASTSESSION_READ_ONLY=lambda request: request.path == "/peek", FASTSESSION_LOCK_TIMEOUT=0.05
        ):
            assert client.get("/peek").content == b"1"
            assert client.get("/count").status_code == 503
    finally:
        holder.unlock()


# -- on Redis (FASTSESSION_REDIS_URL, FASTSESSION_REDIS_CACHE, FASTSESSION_REDIS_CLUSTER) ------------------


def ttl_of(storage, key):
    from fastsession.redis import data_key

    return storage.client.pttl(data_key(storage.prefix, key))


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_on_redis_each_save_sets_the_ttl_to_the_expiry_age_and_clearsessions_has_nothing_to_do(storage):
    ages = {}
    for name, expiry in {"default": None, "browser close": 0, "300 s": 300, "past": -10}.items():
        store = SessionStore()
        store["a"] = 1
        store.set_expiry(expiry)
        store.save()
        ages[name] = store.session_key
    cookie_age = settings.SESSION_COOKIE_AGE * 1000
    assert cookie_age - 5000 < ttl_of(storage, ages["default"]) <= cookie_age
    assert cookie_age - 5000 < ttl_of(storage, ages["browser close"]) <= cookie_age
    assert 295_000 < ttl_of(storage, ages["300 s"]) <= 300_000
    time.sleep(0.01)
    assert SessionStore(ages["past"]).load() == {}  # an expiry already past: stored for 1 ms, gone
    management.call_command("clearsessions")
    assert [SessionStore(ages[name]).get("a") for name in ("default", "browser close", "300 s")] == [1, 1, 1]


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_on_redis_through_a_django_cache_alias_client(storage, redis_url):
    from fastsession.redis import data_key

    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    with override_settings(CACHES=caches, FASTSESSION_REDIS_URL=None, FASTSESSION_REDIS_CACHE="sessions"):
        client = Client()
        assert [client.get("/count").content for _ in range(3)] == [b"1", b"2", b"3"]
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert storage.client.get(data_key(storage.prefix, key)) == b'{"n":3}'
    with override_settings(CACHES=caches, FASTSESSION_REDIS_URL=None, FASTSESSION_REDIS_CACHE="default"):
        with pytest.raises(ValueError, match="not a django.core.cache.backends.redis.RedisCache"):
            SessionStore()


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_fastsession_backend_names_the_backend_whatever_other_settings_say(storage, tmp_path):
    from fastsession.contrib.django import backend
    from fastsession.files import FileBackend
    from fastsession.redis import RedisBackend

    # A Redis URL is set too (the fixture's): files all the same.
    with override_settings(FASTSESSION_BACKEND="files", SESSION_FILE_PATH=str(tmp_path)):
        assert type(backend()) is FileBackend
        client = Client()
        assert [client.get("/count").content for _ in range(2)] == [b"1", b"2"]
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert storage.client.keys("*" + stored_name(key) + "*") == []  # nothing of it in Redis
    with override_settings(FASTSESSION_BACKEND="redis"):
        assert isinstance(backend(), RedisBackend)
    with override_settings(FASTSESSION_BACKEND="redis", FASTSESSION_REDIS_URL=None):
        with pytest.raises(ValueError, match="FASTSESSION_BACKEND = 'redis' needs the server"):
            SessionStore()


def test_a_request_reads_no_setting_through_django_again_until_one_changes(session_path, monkeypatch):
    """Django raises an AttributeError inside for each read of a setting that is not set, and a request read a
    dozen: the engine keeps what it read until Django says a setting changed (override_settings)."""
    from fastsession.contrib.django import locking

    client = Client()
    assert client.get("/count").content == b"1"
    lazy = type(settings)
    through_django = []
    original = lazy.__getattr__

    def counted(self, name):
        through_django.append(name)
        return original(self, name)

    monkeypatch.setattr(lazy, "__getattr__", counted)
    assert [client.get("/count").content for _ in range(2)] == [b"2", b"3"]
    assert [name for name in through_django if name.startswith("FASTSESSION_")] == []
    # A change is seen at once, and its end too.
    with override_settings(FASTSESSION_LOCKING="commit"):
        assert locking() == "commit"
        assert client.get("/count").content == b"4"
    assert locking() == "request"
    with override_settings(FASTSESSION_LOCKING="neither"):
        with pytest.raises(ValueError, match="FASTSESSION_LOCKING must be one of"):
            locking()


def test_on_a_redis_cluster(redis_cluster):
    import uuid

    from fastsession.redis import data_key

    prefix = f"django-{uuid.uuid4().hex[:8]}:"
    with override_settings(
        FASTSESSION_REDIS_URL=f"redis://127.0.0.1:{redis_cluster.port}",
        FASTSESSION_REDIS_CLUSTER=True,
        FASTSESSION_REDIS_PREFIX=prefix,
    ):
        cookie, count = count_in_four_processes(25)
        assert count == 101
        cluster = redis_cluster.client()
        assert cluster.get(data_key(prefix, cookie)) == b'{"n":101}'
        assert cluster.keys(prefix + "*:lock") == []


# -- switching from another engine (FASTSESSION_MIGRATE_FROM; the deploy-day tests are in test_migrate.py) ----


def test_a_migrated_key_that_may_not_be_a_path_gets_a_new_key_and_the_old_record_goes_once_saved(session_path):
    from django.contrib.sessions.backends.cache import SessionStore as CacheStore

    old = CacheStore()
    old._session_key = "weird.key/../x"  # Django takes any key of 8+ characters
    old._session_cache = {"user": "ann"}
    old.save(must_create=True)
    with override_settings(FASTSESSION_MIGRATE_FROM="django.contrib.sessions.backends.cache"):
        moved = SessionStore("weird.key/../x")
        assert moved["user"] == "ann"
        assert CacheStore().exists("weird.key/../x")  # kept until stored here
        moved.save()
        assert moved.session_key != "weird.key/../x" and path_safe(moved.session_key)
        assert not CacheStore().exists("weird.key/../x")
        assert SessionStore(moved.session_key)["user"] == "ann"
        assert not [p for p in session_files(session_path) if "weird" in p]


class PickleSerializer:
    """A stand-in for a project's own pickle serializer (Django 5 ships none): only its name is read."""


def test_migration_through_a_pickle_serializer_is_refused(session_path):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(
        FASTSESSION_MIGRATE_FROM="django.contrib.sessions.backends.cache",
        SESSION_SERIALIZER=f"{__name__}.PickleSerializer",
    ):
        with pytest.raises(ImproperlyConfigured, match="it unpickles.*could run code. Migrate with a JSON serializer$"):
            SessionStore("a" * 32).load()


# -- FASTSESSION_MAX_SIZE ---------------------------------------------------------------------------


def grow(request):
    request.session["blob"] = "x" * 5000
    return HttpResponse("ok")


urlpatterns.append(path("grow", grow))


def test_max_size_refuses_a_save_keeps_the_stored_session_and_leaves_no_lock(storage):
    from fastsession import SessionTooLarge

    client = Client(raise_request_exception=False)
    client.get("/count")
    with override_settings(FASTSESSION_MAX_SIZE=1000):
        assert client.get("/grow").status_code == 500  # SessionTooLarge from the middleware's save
        assert client.get("/peek").content == b"1"
        store = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
        store["blob"] = "x" * 5000
        with pytest.raises(SessionTooLarge, match="'blob'"):
            store.save()
    assert locks(storage) == []
    assert client.get("/count").content == b"2"


# -- FASTSESSION_MAX_LIFETIME ---------------------------------------------------------------------


def login(request):
    request.session.cycle_key()  # what django.contrib.auth.login does
    request.session["user"] = "ann"
    return HttpResponse("ok")


urlpatterns.append(path("login", login))


def test_max_lifetime_ends_a_session_in_use_and_counts_across_cycle_key(storage):
    with override_settings(FASTSESSION_MAX_LIFETIME=0.8):
        client = Client()
        client.get("/count")
        first = client.cookies[settings.SESSION_COOKIE_NAME].value
        time.sleep(0.4)
        client.get("/login")  # a new key, the same creation time
        second = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert second != first and client.get("/count").content == b"2"
        time.sleep(0.5)  # 0.9 s since creation, 0.5 s since the login
        assert client.get("/count").content == b"1"  # a new session: the old one ended at its lifetime
        assert not SessionStore().exists(second)
        assert list(SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value).keys()) == ["n"]  # no META
    assert locks(storage) == []


# -- the per-user index: bound on login (user_logged_in), "log out my other devices" ---------------------


class FakeUser:
    """What django.contrib.auth's signals pass that the receivers read: a pk."""

    def __init__(self, pk):
        self.pk = pk


def signin(request):
    from django.contrib.auth.signals import user_logged_in

    request.session.cycle_key()  # as django.contrib.auth.login does, then it sends the signal
    request.session["user"] = "7"
    user_logged_in.send(sender=FakeUser, request=request, user=FakeUser(7))
    return HttpResponse("in")


def others_out(request):
    return HttpResponse(str(request.session.revoke_all("7", keep=request.session.session_key)))


def signout(request):
    from django.contrib.auth.signals import user_logged_out

    user_logged_out.send(sender=FakeUser, request=request, user=FakeUser(7))
    request.session.flush()  # as django.contrib.auth.logout does
    return HttpResponse("out")


urlpatterns += [path("signin", signin), path("others-out", others_out), path("signout", signout)]


def test_login_binds_the_session_and_revoke_all_logs_out_the_other_devices(storage):
    devices = [Client(HTTP_USER_AGENT=f"device {i}") for i in range(3)]
    for device in devices:
        device.get("/count")
        assert device.get("/signin").content == b"in"
    keys = [d.cookies[settings.SESSION_COOKIE_NAME].value for d in devices]
    found = SessionStore().sessions_of("7")
    assert sorted(e.session for e in found) == sorted(stored_name(k) for k in keys)
    assert sorted(e.metadata["user_agent"] for e in found) == ["device 0", "device 1", "device 2"]
    assert devices[0].get("/others-out").content == b"2"  # this device stays
    assert [SessionStore().exists(k) for k in keys] == [True, False, False]
    assert devices[1].get("/peek").content == b"None"  # logged out: a fresh, empty session
    assert [e.session for e in SessionStore().sessions_of("7")] == [stored_name(keys[0])]
    devices[0].get("/signout")
    assert SessionStore().sessions_of("7") == []
    assert locks(storage) == []


def signin_or_refused(request):
    from fastsession import TooManySessions

    try:
        return signin(request)
    except TooManySessions as exc:  # login() raised it: the view shows it, the request is not logged in
        return HttpResponse(f"refused: {exc.max_sessions}")


urlpatterns.append(path("signin-or-refused", signin_or_refused))


def test_fastsession_max_sessions_evicts_the_least_recently_used_device(storage):
    with override_settings(FASTSESSION_MAX_SESSIONS=2):
        devices = [Client() for _ in range(3)]
        for device in devices[:2]:
            device.get("/signin")
            time.sleep(0.02)
        devices[0].get("/count")  # used since: the second device is now the least recently used
        time.sleep(0.02)
        devices[2].get("/signin")
    assert [d.get("/peek").content for d in devices] == [b"1", b"None", b"None"]
    assert [d.get("/whose").content for d in devices] == [b"7", b"None", b"7"]
    assert len(SessionStore().sessions_of("7")) == 2
    assert locks(storage) == []


def whose(request):
    return HttpResponse(str(request.session.get("user")))


urlpatterns.append(path("whose", whose))


def test_fastsession_when_full_refuse_undoes_the_login_and_login_raises_too_many_sessions(storage):
    with override_settings(FASTSESSION_MAX_SESSIONS=1, FASTSESSION_WHEN_FULL="refuse"):
        first, second = Client(), Client()
        assert first.get("/signin").content == b"in"
        second.get("/count")
        assert second.get("/signin-or-refused").content == b"refused: 1"
        assert second.get("/whose").content == b"None"  # logged out again by the refusal: not signed in
        assert first.get("/whose").content == b"7"
    key = first.cookies[settings.SESSION_COOKIE_NAME].value
    assert [e.session for e in SessionStore().sessions_of("7")] == [stored_name(key)]
    assert locks(storage) == []


@pytest.mark.parametrize(
    ("setting", "error"),
    [({"FASTSESSION_MAX_SESSIONS": 0}, ValueError), ({"FASTSESSION_WHEN_FULL": "drop"}, ValueError)],
)
def test_cap_settings_are_checked_when_the_middleware_is_made(session_path, setting, error):
    from fastsession.contrib.django import LockingSessionMiddleware

    with override_settings(**setting), pytest.raises(error):
        LockingSessionMiddleware(lambda request: HttpResponse())


def test_lifecycle_events_reach_the_session_event_signal_and_its_last_receiver_gone_nothing_is_built(storage):
    from fastsession import events
    from fastsession.contrib.django import session_event

    seen = []

    def receiver(sender, event, **extra):
        seen.append((event.kind, event.session, event.previous, event.reason))

    session_event.connect(receiver)
    try:
        client = Client()
        client.get("/count")
        first = client.cookies[settings.SESSION_COOKIE_NAME].value
        client.get("/login")  # cycle_key: one "regenerated", not a "created" and a "deleted"
        second = client.cookies[settings.SESSION_COOKIE_NAME].value
        client.get("/signout")  # flush(): deleted
    finally:
        session_event.disconnect(receiver)
    assert seen == [
        ("created", stored_name(first), None, None),
        ("regenerated", stored_name(second), stored_name(first), None),
        ("deleted", stored_name(second), None, "logout"),
    ]
    assert events.handlers == []  # no receiver left: the stores build no event
    assert locks(storage) == []


def test_fastsession_id_header_carries_the_id_both_ways_with_no_cookie(storage):
    with override_settings(FASTSESSION_ID_HEADER="X-Session-Id"):
        api = Client()
        response = api.get("/count", headers={"X-Session-Id": ""})  # a new API client asks for its id this way
        sid = response["X-Session-Id"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sid) and response.content == b"1"
        assert not response.cookies and "X-Session-Id" in response["Vary"]
        again = api.get("/count", headers={"X-Session-Id": sid})
        assert again.content == b"2" and not again.has_header("X-Session-Id")
        login = api.get("/login", headers={"X-Session-Id": sid})  # cycle_key: the new key goes back
        new = login["X-Session-Id"]
        assert new != sid and api.get("/count", headers={"X-Session-Id": new}).content == b"3"
        out = api.get("/signout", headers={"X-Session-Id": new})
        assert out["X-Session-Id"] == "" and not out.cookies
        assert api.get("/count", headers={"X-Session-Id": new}).content == b"1"  # logged out: a new session
        browser = Client()
        assert browser.get("/count").content == b"1" and settings.SESSION_COOKIE_NAME in browser.cookies
    assert locks(storage) == []


def test_fastsession_id_cookie_false_without_a_header_is_refused_when_the_middleware_is_made(session_path):
    from fastsession.contrib.django import LockingSessionMiddleware

    with override_settings(FASTSESSION_ID_COOKIE=False), pytest.raises(ValueError):
        LockingSessionMiddleware(lambda request: HttpResponse())
    with override_settings(FASTSESSION_ID_HEADER="X-Session-Id", FASTSESSION_ID_COOKIE=False):
        response = Client().get("/count")
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", response["X-Session-Id"]) and not response.cookies


# -- FASTSESSION_ENCRYPT -----------------------------------------------------------------------------


def remember(request):
    request.session["email"] = "ann@example.com"
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


urlpatterns.append(path("remember", remember))


def stored_values(storage):
    """Every byte storage holds for the engine: files' contents, or Redis values under the prefix."""
    if storage.client is None:
        found = b""
        for name in session_files(storage.path):
            with open(os.path.join(storage.path, name), "rb") as f:
                found += f.read()
        return found
    return b"".join(
        storage.client.get(k) or b""
        for k in storage.client.scan_iter(match=storage.prefix + "*")
        if storage.client.type(k) == b"string"
    )


def test_encrypt_keeps_no_value_at_rest_and_survives_login_and_merges(storage):
    with override_settings(FASTSESSION_ENCRYPT=True):
        client = Client()
        assert [client.get("/remember").content for _ in range(2)] == [b"1", b"2"]
        assert b"ann@example.com" not in stored_values(storage) and stored_values(storage)
        client.get("/login")  # cycle_key: sealed again under the new key
        assert client.get("/remember").content == b"3"
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        with override_settings(FASTSESSION_LOCKING="commit"):
            other = SessionStore(key)
            other["elsewhere"] = True  # loaded now, saved after the next request saved
            assert client.get("/remember").content == b"4"
            other.save()
        assert SessionStore(key)["elsewhere"] is True and SessionStore(key)["n"] == 4
        assert b"ann@example.com" not in stored_values(storage)
    assert locks(storage) == []


def everyone_out(request):
    return HttpResponse(str(request.session.revoke_all("7")))


urlpatterns.append(path("everyone-out", everyone_out))


def signed_in_devices(count):
    """``count`` browsers, each with a session and signed in as user 7; (their clients, their keys)."""
    devices = [Client() for _ in range(count)]
    for device in devices:
        device.get("/count")
        assert device.get("/signin").content == b"in"
    return devices, [d.cookies[settings.SESSION_COOKIE_NAME].value for d in devices]


def test_revoke_all_without_keep_logs_out_this_device_too(storage):
    devices, keys = signed_in_devices(2)
    assert devices[0].get("/everyone-out").content == b"2"
    assert [SessionStore().exists(k) for k in keys] == [False, False]
    assert SessionStore().sessions_of("7") == []
    assert locks(storage) == []


def unbind(request):
    request.session.bind_user(None)  # unbound without a flush (a "switch account" view, say)
    request.session["after"] = True
    return HttpResponse("unbound")


urlpatterns.append(path("unbind", unbind))


@pytest.mark.parametrize("lifetime", [None, 3600])
def test_encrypt_with_a_bound_user_and_max_lifetime_loads_and_lists(storage, lifetime):
    """The sealed record carries its metadata inside the seal: it loads, lists, revokes like a plain one."""
    with override_settings(FASTSESSION_ENCRYPT=True, FASTSESSION_MAX_LIFETIME=lifetime):
        client = Client()
        client.get("/count")
        assert client.get("/signin").content == b"in"
        assert client.get("/count").content == b"2"  # loaded: the sealed META opened with it
        assert len(SessionStore().sessions_of("7")) == 1
        assert client.get("/unbind").content == b"unbound"  # saved after unbinding, no flush: no error
        assert client.get("/peek").content == b"2"
        assert SessionStore().sessions_of("7") == []
    assert locks(storage) == []


def test_a_plain_record_is_refused_by_an_encrypting_engine(storage):
    client = Client()
    client.get("/signin")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(FASTSESSION_ENCRYPT=True):
        assert SessionStore(key).load() == {}  # stored before encryption, or planted: absent
        from fastsession.record import AcceptPlainUntil

        with override_settings(FASTSESSION_ENCRYPT=AcceptPlainUntil(time.time() + 60)):
            assert SessionStore(key).load()["user"] == "7"  # the migration window opens it


def release_then_change(request):
    request.session["a"] = 1
    request.session.release()  # saved now, the lock let go
    other = SessionStore(request.session.session_key)  # another request of the user, meanwhile
    other["b"] = 2
    other.save()
    request.session["c"] = 3  # a later change: saved with the response
    return HttpResponse("ok")


urlpatterns.append(path("release-then-change", release_then_change))


def test_a_change_after_release_is_merged_and_never_overwrites_another_requests(storage):
    client = Client()
    client.get("/count")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get("/release-then-change").content == b"ok"
    assert SessionStore(key).load() == {"n": 1, "a": 1, "b": 2, "c": 3}
    assert locks(storage) == []


def test_the_engine_waits_ten_seconds_for_a_lock_by_default_and_as_set(session_path):
    from fastsession.busy import ADAPTER_TIMEOUT

    assert ADAPTER_TIMEOUT == 10.0
    assert SessionStore()._backend.timeout == 10.0
    with override_settings(FASTSESSION_LOCK_TIMEOUT=0.25):
        assert SessionStore()._backend.timeout == 0.25


@pytest.mark.parametrize("policy, n", [("ours", 10), ("theirs", 3)])
def test_fastsession_on_conflict_resolves_a_clash_as_set(storage, policy, n):
    client = Client()
    client.get("/count")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(FASTSESSION_LOCKING="commit", FASTSESSION_ON_CONFLICT=policy):
        clash = SessionStore(key)
        clash["n"] = 10
        client.get("/count")
        client.get("/count")
        clash.save()  # no SessionConflict: resolved by the setting
        assert SessionStore(key).load()["n"] == n


def test_expiry_dates_work_with_use_tz_false(session_path):
    import datetime

    with override_settings(USE_TZ=False):
        store = SessionStore()
        store["n"] = 1
        store.set_expiry(datetime.datetime.now() + datetime.timedelta(hours=1))  # a naive datetime
        store.save()
        again = SessionStore(store.session_key)
        assert again["n"] == 1
        assert again.get_expiry_date().tzinfo is None
        assert 3500 < again.get_expiry_age() <= 3600
        SessionStore.clear_expired()  # compares naive times: no TypeError, and keeps it
        assert SessionStore(store.session_key).load() == {"n": 1, "_session_expiry": again["_session_expiry"]}


# -- issue 25: the lock is taken when the request first reads its session -------------------------


def test_a_request_that_never_reads_its_session_takes_no_lock(storage, caplog):
    client, holder = client_and_holder()
    try:
        with override_settings(FASTSESSION_LOCK_TIMEOUT=0.05), caplog.at_level(logging.WARNING, "fastsession"):
            untouched = client.get("/nothing")
            assert not caplog.records  # it never waited for the lock (a wait out of time is logged)
            touched = client.get("/peek")
    finally:
        holder.unlock()
    assert untouched.status_code == 200 and untouched.content == b"ok"
    assert touched.status_code == 503 and touched["Retry-After"] == "1"
    assert storage.locks() == []
    assert client.get("/count").content == b"2"


def test_a_first_read_by_other_middleware_that_waits_out_its_time_is_a_503(storage):
    client, holder = client_and_holder()
    try:
        with override_settings(
            FASTSESSION_LOCK_TIMEOUT=0.05,
            MIDDLEWARE=["fastsession.contrib.django.LockingSessionMiddleware", "test_django.ReadsTheSessionLast"],
        ):
            reading = Client(raise_request_exception=False)  # made now: it loads the middleware above
            reading.cookies = client.cookies
            busy = reading.get("/nothing")
    finally:
        holder.unlock()
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert storage.locks() == []
    assert client.get("/count").content == b"2"


def test_django_csrf_kept_in_the_session(storage):
    with override_settings(
        CSRF_USE_SESSIONS=True,
        MIDDLEWARE=[
            "fastsession.contrib.django.LockingSessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
    ):
        browser = Client(enforce_csrf_checks=True)
        token = browser.get("/csrf-form").content.decode()
        assert "csrftoken" not in browser.cookies  # the token lives in the session, not in a cookie
        assert browser.post("/csrf-submit", {"csrfmiddlewaretoken": token}).content == b"accepted"
        assert browser.post("/csrf-submit", {"csrfmiddlewaretoken": "x" * 64}).status_code == 403
        stranger = Client(enforce_csrf_checks=True)
        assert stranger.post("/csrf-submit", {"csrfmiddlewaretoken": token}).status_code == 403
    assert storage.locks() == []


@pytest.mark.parametrize(
    "setting, value, error",
    [
        ("FASTSESSION_MAX_LIFETIME", -1, ValueError),
        ("FASTSESSION_LOCKING", "sometimes", ValueError),
        ("FASTSESSION_MAX_SIZE", 0, ValueError),
        ("FASTSESSION_ON_CONFLICT", "mine", ValueError),
        ("FASTSESSION_READ_ONLY", "/static", TypeError),
        ("FASTSESSION_LOCK_TIMEOUT", float("nan"), ValueError),
    ],
)
def test_the_locking_middleware_checks_every_setting_when_it_is_made(session_path, setting, value, error):
    from fastsession.contrib.django import LockingSessionMiddleware

    with override_settings(**{setting: value}), pytest.raises(error):
        LockingSessionMiddleware(lambda request: HttpResponse("never"))


# -- under ASGI, an async view's request takes the lock on its first read, if any -----------------------------


async def anothing(request):
    return HttpResponse("ok")


async def acount_plain(request):
    """An async view that reads the session with plain calls (no await): the first read waits on the loop."""
    import asyncio

    await asyncio.sleep(0)
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


async def acount(request):
    await request.session.aset("n", await request.session.aget("n", 0) + 1)
    return HttpResponse(str(await request.session.aget("n")))


urlpatterns += [path("anothing", anothing), path("acount-plain", acount_plain), path("acount", acount)]


def test_under_asgi_an_async_view_that_never_reads_the_session_takes_no_lock(storage, caplog):
    import asyncio

    from django.test import AsyncClient

    async def go():
        client = AsyncClient()
        await client.get("/acount")
        holder = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
        holder.lock()  # another request of this user, in the middle of its work
        try:
            with override_settings(FASTSESSION_LOCK_TIMEOUT=0.05), caplog.at_level(logging.WARNING, "fastsession"):
                untouched = await asyncio.gather(*(client.get("/anothing") for _ in range(3)))
                waited = caplog.records[:]
                plain, awaited = await client.get("/acount-plain"), await client.get("/acount")
        finally:
            holder.unlock()
        return untouched, waited, plain, awaited, (await client.get("/acount")).content

    untouched, waited, plain, awaited, after = asyncio.run(go())
    assert [r.status_code for r in untouched] == [200, 200, 200] and not waited  # none waited for the lock
    for busy in (plain, awaited):  # a read does wait for it: out of time here, a 503 that stores nothing
        assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert after == b"2"
    assert locks(storage) == []


@pytest.mark.parametrize("view", ["/acount-plain", "/acount"])
def test_under_asgi_an_async_views_first_read_waits_on_the_loop_while_other_requests_run(storage, view):
    import asyncio
    import threading

    from django.test import AsyncClient

    async def go():
        client = AsyncClient()
        await client.get(view)
        holder = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
        holder.lock()
        waiting = asyncio.ensure_future(client.get(view))
        for _ in range(30):  # in, and waiting
            await asyncio.sleep(0.01)
        assert not waiting.done()
        other = await client.get("/anothing")  # ran while the first read still waited
        assert not waiting.done()
        holder["n"] = 10  # the holder's change, saved before it lets go
        holder.save()
        holder.unlock()
        return other, await asyncio.wait_for(waiting, 10), threading.active_count()

    other, waited, _ = asyncio.run(go())
    assert other.status_code == 200
    assert waited.status_code == 200 and waited.content == b"11"
    assert locks(storage) == []


def test_under_asgi_overlapping_async_requests_that_write_lose_no_update(storage):
    import asyncio

    from django.test import AsyncClient

    async def go():
        client = AsyncClient()
        await client.get("/acount-plain")
        await asyncio.gather(*(client.get(p) for p in ["/acount-plain", "/acount", "/anothing"] * 6))
        return (await client.get("/acount")).content

    assert asyncio.run(go()) == b"14"
    assert locks(storage) == []


# -- behaviours mutation found untested in the engine (tools/mutation.sh) -------------------------


def test_migrate_from_naming_this_engine_is_refused(session_path):
    with override_settings(FASTSESSION_MIGRATE_FROM="fastsession.contrib.django"):
        with pytest.raises(
            ValueError, match="^FASTSESSION_MIGRATE_FROM names the engine being replaced, not this one$"
        ):
            SessionStore("a" * 32).load()


def test_a_session_of_the_engine_replaced_moves_here_under_its_key_and_the_old_record_goes(storage):
    from django.contrib.sessions.backends.cache import SessionStore as CacheStore

    old = CacheStore()
    old["user"] = "ann"
    old.save()
    key = old.session_key
    with override_settings(FASTSESSION_MIGRATE_FROM="django.contrib.sessions.backends.cache"):
        assert SessionStore(key).load() == {"user": "ann"}
        assert not CacheStore().exists(key)  # moved: stored here, then the old record deleted
        assert SessionStore("b" * 32).load() == {}  # nothing in the old store: nothing migrated
    assert SessionStore(key).load() == {"user": "ann"}  # read from here now, the switch over
    assert SessionStore().exists(key) and not SessionStore().exists("b" * 32)
    assert locks(storage) == []


def test_clearsessions_tells_an_expired_sessions_end_to_event_handlers(session_path):
    from fastsession import events

    key = expired_session(session_path)
    seen = []
    events.subscribe(seen.append)
    try:
        management.call_command("clearsessions")
    finally:
        events.unsubscribe(seen.append)
    assert [(e.kind, e.session, e.user, e.reason) for e in seen] == [("expired", stored_name(key), None, "idle")]


def test_a_key_that_may_not_be_a_path_is_never_saved_or_deleted_by_name(session_path):
    store = SessionStore("weird.key/../x")
    store["a"] = 1
    store.save()  # a new session: under a new key
    assert path_safe(store.session_key) and SessionStore(store.session_key).load() == {"a": 1}
    SessionStore().delete("weird.key/../x")  # nothing to do, and no error
    assert not [p for p in session_files(session_path) if "weird" in p]


def test_a_change_saved_after_a_revoke_all_during_the_request_is_refused(storage):
    from django.contrib.sessions.backends.base import UpdateError

    login = SessionStore()
    login["n"] = 1
    login.bind_user("7")
    login.save()
    holder = SessionStore(login.session_key)
    holder.lock()
    holder["n"] = 2
    assert SessionStore().revoke_all("7") == 1  # "log out everywhere" while the request runs
    with pytest.raises(UpdateError):
        holder.save()
    holder.unlock()
    assert not SessionStore().exists(login.session_key) and locks(storage) == []


def test_binding_a_new_session_under_a_cap_gives_it_a_key_to_count(storage):
    store = SessionStore()
    store["a"] = 1
    with override_settings(FASTSESSION_MAX_SESSIONS=2):
        store.bind_user("7")
    assert store.session_key is not None
    store.save()
    assert [e.session for e in SessionStore().sessions_of("7")] == [stored_name(store.session_key)]


def test_revoking_this_requests_own_session_flushes_it_and_another_deletes_that_one(storage):
    other = SessionStore()
    other["a"] = 0
    other.bind_user("7")
    other.save()
    store = SessionStore()
    store["a"] = 1
    store.bind_user("7")
    store.save()
    key = store.session_key
    mine, theirs = sorted(store.sessions_of("7"), key=lambda e: e.session != stored_name(key))
    assert store.revoke(theirs) is True and store.session_key == key  # another device's: this one stays
    assert store.revoke(mine) is True
    assert store.session_key is None and dict(store.items()) == {}
    assert not SessionStore().exists(key) and not SessionStore().exists(other.session_key)
    assert SessionStore().sessions_of("7") == []


def test_a_change_after_release_to_a_session_deleted_meanwhile_is_refused_not_resurrected(storage):
    from django.contrib.sessions.backends.base import UpdateError

    first = SessionStore()
    first["n"] = 1
    first.save()
    store = SessionStore(first.session_key)
    store.lock()
    store["n"] = 2
    store.release()  # the lock goes before the response
    SessionStore(first.session_key).delete()  # a logout elsewhere, meanwhile
    store["n"] = 3
    with pytest.raises(UpdateError):
        store.save()
    assert not SessionStore().exists(first.session_key) and locks(storage) == []


def test_under_asgi_a_sync_views_lock_not_had_in_time_is_a_503_and_a_read_only_request_takes_none(storage):
    import asyncio

    from django.test import AsyncClient

    async def go():
        client = AsyncClient()
        await client.get("/count")
        holder = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
        holder.lock()
        try:
            with override_settings(FASTSESSION_LOCK_TIMEOUT=0.05):
                busy = await client.get("/count")
                with override_settings(FASTSESSION_READ_ONLY=lambda request: True):
                    read = await client.get("/peek")  # takes no lock: served beside the holder
        finally:
            holder.unlock()
        return busy, read, (await client.get("/count")).content

    busy, read, after = asyncio.run(go())
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert read.status_code == 200 and read.content == b"1"
    assert after == b"2" and locks(storage) == []


def old_cache_session(data, expiry=None):
    """A session stored by Django's cache engine (the engine being replaced); its key."""
    from django.contrib.sessions.backends.cache import SessionStore as CacheStore

    old = CacheStore()
    old.update(data)
    if expiry is not None:
        old.set_expiry(expiry)
    old.save()
    return old.session_key


MIGRATING = {"FASTSESSION_MIGRATE_FROM": "django.contrib.sessions.backends.cache"}


def test_a_migrated_session_read_by_a_request_that_changes_nothing_is_stored_under_a_new_key(session_path):
    from django.contrib.sessions.backends.cache import SessionStore as CacheStore

    old = CacheStore()
    old._session_key = "weird.key/../x"
    old._session_cache = {"n": 4}
    old.save(must_create=True)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = "weird.key/../x"
    with override_settings(**MIGRATING):
        assert client.get("/peek").content == b"4"  # only read: still saved, under a key that may be a path
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert path_safe(key) and SessionStore(key).load() == {"n": 4}


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_a_session_migrated_into_redis_gets_the_ttl_of_its_expiry(storage):
    from fastsession.redis import data_key

    plain, short = old_cache_session({"a": 1}), old_cache_session({"a": 2}, expiry=600)
    with override_settings(**MIGRATING):
        assert SessionStore(plain).load() == {"a": 1} and SessionStore(short).load()["a"] == 2
    assert 0.99 * settings.SESSION_COOKIE_AGE * 1000 < storage.client.pttl(data_key(storage.prefix, plain))
    assert 590_000 < storage.client.pttl(data_key(storage.prefix, short)) <= 600_000


LOCKS_SEEN = []


def count_and_look(request):
    request.session["n"] = request.session["n"] + 1  # migrated here, under the request's lock
    LOCKS_SEEN.append(LOOKING_AT[0].locks())
    return HttpResponse(str(request.session["n"]))


LOOKING_AT = []
urlpatterns.append(path("count-and-look", count_and_look))


def test_a_migration_under_the_requests_lock_keeps_it_to_the_end_of_the_request(storage):
    key = old_cache_session({"n": 41})
    LOCKS_SEEN.clear()
    LOOKING_AT[:] = [storage]
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    with override_settings(**MIGRATING):
        assert client.get("/count-and-look").content == b"42"
    assert len(LOCKS_SEEN[0]) == 1 and locks(storage) == []  # held while the view ran, released at its end
    assert SessionStore(key).load() == {"n": 42}


def test_a_migration_that_meets_one_done_meanwhile_keeps_what_is_stored(storage, monkeypatch):
    from django.contrib.sessions.backends.cache import SessionStore as CacheStore

    key = old_cache_session({"n": 1})
    real_load = CacheStore.load

    def another_request_migrates_first(self):
        data = real_load(self)
        monkeypatch.setattr(CacheStore, "load", real_load)
        other = SessionStore(key)  # (migrates through the real load)
        other["n"] = 5
        other.save()
        return data

    monkeypatch.setattr(CacheStore, "load", another_request_migrates_first)
    with override_settings(**MIGRATING):
        assert SessionStore(key).load() == {"n": 5}
    assert SessionStore(key).load() == {"n": 5} and locks(storage) == []


def test_in_commit_mode_a_key_deleted_by_the_request_that_migrated_its_session_stays_deleted(storage):
    key = old_cache_session({"a": 1, "b": 2})
    with override_settings(FASTSESSION_LOCKING="commit", **MIGRATING):
        store = SessionStore(key)
        del store["b"]
        store.save()
    assert SessionStore(key).load() == {"a": 1}


def test_expiry_events_name_the_session_its_user_and_whether_idle_or_past_its_lifetime(session_path, monkeypatch):
    from fastsession import events
    from fastsession.users import user_hash

    idle = expired_session(session_path)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 7200)  # made two hours ago
    old = SessionStore()
    old["a"] = 1
    old.bind_user("7")
    old.save()
    monkeypatch.undo()
    seen = []
    events.subscribe(seen.append)
    try:
        with override_settings(FASTSESSION_MAX_LIFETIME=3600):
            assert SessionStore(idle).load() == {}  # read after its expiry: ended by that read
            management.call_command("clearsessions")
    finally:
        events.unsubscribe(seen.append)
    assert sorted((e.kind, e.session, e.user, e.reason) for e in seen) == sorted(
        [
            ("expired", stored_name(idle), None, "idle"),
            ("expired", stored_name(old.session_key), user_hash("7"), "lifetime"),
        ]
    )


def test_the_id_header_answers_a_logout_a_failed_request_and_a_session_deleted_meanwhile(storage, caplog):
    with override_settings(FASTSESSION_ID_HEADER="X-Session-Id"):
        api = Client(raise_request_exception=False)
        sid = api.get("/count", headers={"X-Session-Id": ""})["X-Session-Id"]
        out = api.get("/signout", headers={"X-Session-Id": sid})
        assert out["X-Session-Id"] == "" and "X-Session-Id" in out["Vary"]  # logged out: the client forgets it
        sid = api.get("/count", headers={"X-Session-Id": ""})["X-Session-Id"]
        failed = api.get("/boom", headers={"X-Session-Id": sid})
        assert failed.status_code == 500 and not failed.has_header("X-Session-Id")
        assert SessionStore(sid).load() == {"n": 1}  # the failed request's change is not saved
        fresh = api.get("/nothing")  # no header, no cookie: nothing said about the header
        assert not fresh.has_header("X-Session-Id") and "X-Session-Id" not in fresh.get("Vary", "")
        holder = SessionStore(sid)
        holder.lock()
        holder.delete()  # a logout elsewhere, just before this request's save
        holder.unlock()

    with override_settings(FASTSESSION_ID_HEADER="X-Session-Id", FASTSESSION_LOCKING="commit"):
        sid = api.get("/count", headers={"X-Session-Id": ""})["X-Session-Id"]
        caplog.clear()
        with caplog.at_level(logging.WARNING):  # (Django logs the 400 with the exception's message)
            gone = api.get("/count-after-logout", headers={"X-Session-Id": sid})
    assert gone.status_code == 400  # SessionInterrupted, Django's answer to a session deleted meanwhile
    assert not SessionStore().exists(sid)  # and the request's change did not bring it back
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "The request's session was deleted before the request completed. The user may have logged "
        "out in a concurrent request, for example.: /count-after-logout"
    ]


def count_after_a_logout_elsewhere(request):
    request.session["n"] = 9
    SessionStore().delete(request.session.session_key)
    return HttpResponse("late")


urlpatterns.append(path("count-after-logout", count_after_a_logout_elsewhere))


def test_a_revoke_all_that_takes_this_device_too_deletes_its_cookie(storage):
    client = Client()
    client.get("/count")
    client.get("/signin")
    response = client.get("/everyone-out")
    assert response.content == b"1" and response.cookies[settings.SESSION_COOKIE_NAME].value == ""


def test_revoke_all_keeps_the_session_a_user_session_names(storage):
    _, keys = signed_in_devices(2)
    kept = next(e for e in SessionStore().sessions_of("7") if e.session == stored_name(keys[1]))
    assert SessionStore().revoke_all("7", keep=kept) == 1
    assert [SessionStore().exists(k) for k in keys] == [False, True]


def test_a_login_binds_the_user_agent_cut_to_200_characters_and_none_is_an_empty_one(storage):
    Client(HTTP_USER_AGENT="x" * 300).get("/signin")
    Client().get("/signin")
    assert sorted(e.metadata["user_agent"] for e in SessionStore().sessions_of("7")) == ["", "x" * 200]


def test_the_auth_signals_pass_over_a_request_without_a_session():
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    class Bare:
        def __init__(self):
            self.META = {}

    user_logged_in.send(sender=FakeUser, request=Bare(), user=FakeUser(7))
    user_logged_out.send(sender=FakeUser, request=Bare(), user=FakeUser(7))
    user_logged_in.send(sender=FakeUser, request=None, user=FakeUser(7))


def test_a_logout_signal_without_a_flush_unbinds_the_session(storage):
    from django.contrib.auth.signals import user_logged_out

    def logout_signal_only(request):
        user_logged_out.send(sender=FakeUser, request=request, user=FakeUser(7))
        request.session["still"] = True
        return HttpResponse("unbound")

    urlpatterns.append(path("logout-signal-only", logout_signal_only))
    client = Client()
    client.get("/signin")
    client.get("/logout-signal-only")
    assert SessionStore().sessions_of("7") == []
    assert SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value).load()["still"] is True


def test_listing_and_revoking_follow_the_engines_lifetime_and_encryption(storage, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 7200)
    old = SessionStore()
    old["a"] = 1
    old.bind_user("7")
    old.save()
    monkeypatch.undo()
    new = SessionStore()
    new["a"] = 2
    new.bind_user("7")
    new.save()
    with override_settings(FASTSESSION_MAX_LIFETIME=3600):
        assert [e.session for e in SessionStore().sessions_of("7")] == [stored_name(new.session_key)]
    with override_settings(FASTSESSION_ENCRYPT=True):
        sealed = SessionStore()
        sealed["a"] = 3
        sealed.bind_user("8")
        sealed.save()
        assert SessionStore().revoke_all("8") == 1  # the binding read through the seal
    assert not SessionStore().exists(sealed.session_key)


def test_binding_keeps_the_sessions_creation_time(session_path, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 7200)
    with override_settings(FASTSESSION_MAX_LIFETIME=86400):  # a creation time is kept from the first save
        store = SessionStore()
        store["a"] = 1
        store.save()
        monkeypatch.undo()
        store = SessionStore(store.session_key)
        store.bind_user("7")
        store.save()
    (entry,) = SessionStore().sessions_of("7")
    assert entry.created < real_time() - 7000  # created two hours ago, bound now


@pytest.mark.parametrize("lifetime", [None, 86400])  # with a lifetime the session has its META before the login
def test_a_commit_mode_merge_keeps_a_concurrent_logins_binding(storage, lifetime):
    with override_settings(FASTSESSION_LOCKING="commit", FASTSESSION_MAX_LIFETIME=lifetime):
        first = SessionStore()
        first["n"] = 1
        first.save()
        reader = SessionStore(first.session_key)
        reader["seen"] = True  # a request that read before the login below, and saves after it
        login = SessionStore(first.session_key)
        login["user"] = "7"
        login.bind_user("7")
        login.save()
        reader.save()
        assert SessionStore(first.session_key).load() == {"n": 1, "seen": True, "user": "7"}
        assert [e.session for e in SessionStore().sessions_of("7")] == [stored_name(first.session_key)]
        assert SessionStore().revoke_all("7") == 1  # still bound: "log out everywhere" finds it
    assert not SessionStore().exists(first.session_key)


def test_a_plain_record_planted_before_an_encrypted_commit_mode_save_is_never_merged_or_sealed(storage):
    from django.contrib.sessions.backends.base import UpdateError

    from fastsession.redis import data_key

    with override_settings(FASTSESSION_LOCKING="commit", FASTSESSION_ENCRYPT=True):
        first = SessionStore()
        first["n"] = 1
        first.save()
        reader = SessionStore(first.session_key)
        reader["seen"] = True
        planted = b'{"_auth_user_id": "1"}'
        if storage.client is None:
            with open(file_of(storage.path, first.session_key), "wb") as f:
                f.write(planted)
        else:
            storage.client.set(data_key(storage.prefix, first.session_key), planted)
        with pytest.raises(UpdateError):  # what is stored now does not open: never overwritten unread
            reader.save()
        assert SessionStore(first.session_key).load() == {}  # the planted record opens nothing either


def test_session_event_receivers_connect_as_django_signals_do(storage):
    from fastsession.contrib.django import session_event

    seen = []
    session_event.connect(
        lambda sender, event, **extra: seen.append(("weak=False", event.kind)), weak=False, dispatch_uid="a"
    )
    session_event.connect(
        lambda sender, event, **extra: seen.append(("twice", event.kind)), weak=False, dispatch_uid="b"
    )
    session_event.connect(
        lambda sender, event, **extra: seen.append(("twice", event.kind)), weak=False, dispatch_uid="b"
    )
    session_event.connect(
        lambda sender, event, **extra: seen.append(("from SessionStore", event.kind)),
        sender=SessionStore,
        weak=False,
        dispatch_uid="c",
    )
    try:
        Client().get("/count")
    finally:
        for uid in "abc":
            assert session_event.disconnect(dispatch_uid=uid, sender=SessionStore if uid == "c" else None)
    assert sorted(seen) == [("from SessionStore", "created"), ("twice", "created"), ("weak=False", "created")]
    assert not session_event.has_listeners()


def test_migration_through_a_serializer_that_unpickles_under_another_name_is_refused(session_path):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(SESSION_SERIALIZER=f"{__name__}.QuietSerializer", **MIGRATING):
        with pytest.raises(ImproperlyConfigured, match="QuietSerializer rebuilds arbitrary objects"):
            SessionStore("a" * 32).load()


class QuietSerializer:
    """A SESSION_SERIALIZER with an innocent name that unpickles all the same."""

    def dumps(self, obj):
        import pickle

        return pickle.dumps(obj)

    def loads(self, data):
        import pickle

        return pickle.loads(data)


def test_with_ids_only_in_the_header_a_request_without_it_gets_no_header_back(storage):
    with override_settings(FASTSESSION_ID_HEADER="X-Session-Id", FASTSESSION_ID_COOKIE=False):
        response = Client().get("/nothing")
    assert not response.has_header("X-Session-Id") and "X-Session-Id" not in response.get("Vary", "")


@pytest.mark.parametrize("storage", ["redis"], indirect=True)
def test_a_session_migrated_under_the_requests_lock_by_a_read_gets_its_ttl(storage):
    from fastsession.redis import data_key

    key = old_cache_session({"n": 3})
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    with override_settings(**MIGRATING):
        assert client.get("/peek").content == b"3"  # read only: written once, under the request's lock
    assert 0.99 * settings.SESSION_COOKIE_AGE * 1000 < storage.client.pttl(data_key(storage.prefix, key))


def test_reading_an_expired_session_another_request_holds_gives_up_after_the_lock_timeout(session_path):
    key = expired_session(session_path)
    holder = SessionStore(key)
    holder.lock()
    try:
        with override_settings(FASTSESSION_LOCK_TIMEOUT=0.05):
            assert SessionStore(key).load() == {}  # expired: a new session, the old one left for later
    finally:
        holder.unlock()
    assert os.path.exists(file_of(session_path, key))  # not deleted under another's lock
