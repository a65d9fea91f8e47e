"""What the benchmark compares, each as a function of the directory to work in.

A scenario's runner takes a count ``k`` and returns the seconds that ``k``
operations took. Round-trip contenders also give ``increment`` and
``counter`` for the contention run. Peers that are not installed are
reported missing (``pip install "fastsession-store[bench]"``), never faked.
"""

from __future__ import annotations

import atexit
import os
import secrets
import tempfile
import time
from typing import Any, Callable

import orjson

from .. import _kernels, events
from .._holder import holder_record
from ..errors import TooManySessions
from ..files import FileBackend
from ..names import stored_name
from ..store import SessionStore
from .floor import checked, load_floor
from .redis_server import RedisServer
from .webstack2005 import WebStack2005Store

Runner = Callable[[int], float]

# A typical logged-in session: ~250 bytes of JSON.
SESSION = {
    "user_id": 48213,
    "csrf_token": "tq3Jb0s8cX2m1EoVZ3YkQh7sWb9PzR4uLd6NfA0gT5c",
    "cart": [{"sku": "A-1042", "qty": 2, "price": 19.99}, {"sku": "B-7", "qty": 1, "price": 4.5}],
    "flash": [],
    "locale": "en-GB",
    "visits": 0,
}


def repeat(op: Callable[[], object]) -> Runner:
    def run(k: int) -> float:
        start = time.perf_counter()
        for _ in range(k):
            op()
        return time.perf_counter() - start

    return run


class Missing(Exception):
    """A contender that cannot run here (a peer not installed, no C compiler)."""


# -- fastsession --------------------------------------------------------------


class Cookie:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


class CookieJar:
    """A transaction holding one browser's cookies."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def get_cookie(self, name: str) -> Cookie | None:
        value = self.cookies.get(name)
        return None if value is None else Cookie(value)

    def set_cookie_value(self, name: str, value: str) -> None:
        self.cookies[name] = value

    def delete_cookie(self, name: str) -> None:
        self.cookies.pop(name, None)


def twin_kernels(kind: str) -> Any:
    """One twin's kernel set; Missing when the compiled one was not built."""
    try:
        return _kernels.twin(kind)
    except ImportError as exc:
        raise Missing(f"compiled kernels not built ({exc})") from None


def twin_store(kind: str) -> type:
    """SessionStore over one twin's kernels, whichever set the package chose."""
    backend = type(f"FileBackend_{kind}", (FileBackend,), {"kernels": twin_kernels(kind)})
    return type(f"SessionStore_{kind}", (SessionStore,), {"backend_class": backend})


def facade_ops(
    store_class: type, where: Any, setup: Callable[[Any], None] | None = None, **options: Any
) -> dict[str, Callable[..., Any]]:
    """Round trips through the public facade: a store per request, as a web app makes them.

    ``setup(store)`` runs in the request that creates the session (a login's bind_user, say).
    """
    jar = CookieJar()
    with store_class(jar, where, **options) as store:
        store.get_session(True).update(SESSION)
        if setup is not None:
            setup(store)

    def modify() -> None:
        store = store_class(jar, where, **options)
        session = store.get_session(True)
        session["visits"] += 1
        store.close()

    def read() -> None:
        store = store_class(jar, where, **options)
        store.get_session(True)["visits"]
        store.close()

    def counter() -> int:
        with store_class(jar, where, **options) as store:
            return int(store.get_session(False)["visits"])

    return {"modify": repeat(modify), "read": repeat(read), "increment": modify, "counter": counter}


def fastsession_ops(kind: str, directory: str, **options: Any) -> dict[str, Callable[..., Any]]:
    return facade_ops(twin_store(kind), directory, **options)


def bound_ops(directory: str) -> dict[str, Callable[..., Any]]:
    """facade_ops on a session bound to a user (bind_user), as after a login."""
    return facade_ops(twin_store("c"), directory, setup=lambda store: store.bind_user("user-42", user_agent="bench"))


def with_a_handler(run: Runner) -> Runner:
    """``run`` with one no-op lifecycle event handler subscribed while it runs (fastsession.events)."""

    def handler(event: Any) -> None:
        pass

    def measured(k: int) -> float:
        events.subscribe(handler)
        try:
            return run(k)
        finally:
            events.unsubscribe(handler)

    return measured


def login_ops(directory: str, handler: bool = False, **options: Any) -> dict[str, Callable[..., Any]]:
    """A login: a new session, bound to a user (bind_user with ``options``) and stored; and, for the events
    rows, the locked read-modify-write of a stored session. A folder of its own: the rows' users never meet."""
    store_class = twin_store("c")
    directory = tempfile.mkdtemp(dir=directory)

    def login() -> None:
        store = store_class(CookieJar(), directory, **options)
        store.get_session(True).update(SESSION)
        try:
            store.bind_user("user-42", user_agent="bench")
        except BaseException:
            store.rollback()
            raise
        store.close()

    ops = {"login": repeat(login), "modify": facade_ops(store_class, directory)["modify"]}
    return {name: with_a_handler(run) for name, run in ops.items()} if handler else ops


def refused_login_ops(directory: str) -> dict[str, Callable[..., Any]]:
    """A login refused by the cap (when_full="refuse"): the user has max_sessions=3 sessions already."""
    full = login_ops(directory, max_sessions=3, when_full="refuse")
    full["login"](3)

    def login() -> None:
        try:
            full["login"](1)
        except TooManySessions:
            return
        raise AssertionError("the cap let a fourth session in")

    return {"login": repeat(login)}


_redis_url = None
_redis_client = None


def redis_url() -> str:
    """FASTSESSION_REDIS_URL, or the URL of a redis-server started for this run."""
    global _redis_url
    if _redis_url is None:
        url = os.environ.get("FASTSESSION_REDIS_URL")
        if not url:
            try:
                server = RedisServer().start()
            except RuntimeError as exc:
                raise Missing(str(exc)) from None
            atexit.register(server.stop)
            url = server.url
        _redis_url = url
    return _redis_url


def redis_client() -> Any:
    """A client of redis_url()."""
    global _redis_client
    if _redis_client is None:
        try:
            import redis
        except ImportError:
            raise Missing("redis-py is not installed") from None
        _redis_client = redis.Redis.from_url(redis_url())
    return _redis_client


def redis_ops(directory: str) -> dict[str, Callable[..., Any]]:
    from ..redis import RedisSessionStore

    return facade_ops(RedisSessionStore, redis_client(), prefix=f"bench-{secrets.token_hex(4)}:")


def plain_redis_ops(directory: str) -> dict[str, Callable[..., Any]]:
    """The same session with two plain redis-py calls and no lock (GET, then SET with a TTL): the Redis floor."""
    client = redis_client()
    key = f"bench-plain-{secrets.token_hex(4)}"
    client.set(key, orjson.dumps(SESSION), px=3_600_000)

    def modify() -> None:
        data = orjson.loads(client.get(key))
        data["visits"] += 1
        client.set(key, orjson.dumps(data), px=3_600_000)

    def read() -> None:
        orjson.loads(client.get(key))["visits"]

    return {"modify": repeat(modify), "read": repeat(read)}


def fastsession_kernels(kind: str, directory: str) -> dict[str, Runner]:
    k = twin_kernels(kind)
    path = os.fsencode(os.path.join(directory, f"kernel-{kind}"))
    lock = path + b".lock"
    record = holder_record()
    body = orjson.dumps(SESSION)
    k.write_unlocked(path + b".tmp", path, record, body, False)

    def lock_release() -> None:
        k.unlock(k.acquire(lock, record, 1.0, None, 30.0), lock)

    def commit() -> None:
        k.commit_locked(k.acquire(lock, record, 1.0, None, 30.0), lock, path, orjson.dumps(SESSION), False)

    # A read-only request's kernel calls on the real layout: open_session (lock + read + decode), unlock.
    folder = os.fsencode(directory) + b"/"
    session_id = k.new_session_id()
    stored = k.session_path(folder, session_id)
    os.makedirs(os.path.dirname(stored), mode=0o700, exist_ok=True)
    k.write_unlocked(stored + b".tmp", stored, record, body, False)

    def open_release() -> None:
        handle, _ = k.open_session(folder, session_id, record, False)
        k.unlock(handle[2], handle[1])

    return {
        "ids": repeat(k.new_session_id),
        "lock": repeat(lock_release),
        "load": repeat(lambda: k.read_session(path, False)),
        "commit": repeat(commit),
        "open": repeat(open_release),
    }


# -- the lean pure-Python sequence and the C floor ---------------------------------

LEAN_LOCK = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def real_layout(directory: str) -> str:
    """A session file where fastsession would keep one: a shard folder, then a 43-character stored name."""
    name = stored_name(_kernels.ACTIVE.new_session_id())
    os.makedirs(os.path.join(directory, name[:2]), mode=0o700, exist_ok=True)
    return os.path.join(directory, name[:2], name)


def lean_ops(directory: str) -> dict[str, Callable[..., Any]]:
    """The shortest plain-Python locked round trip: os.open/os.read/orjson/os.rename (on the real layout)."""
    path = real_layout(directory)
    lock, temp = path + ".lock", path + ".tmp"
    holder = b"%d\n" % os.getpid()
    with open(path, "wb") as f:
        f.write(orjson.dumps(SESSION))

    def take_lock() -> None:
        fd = os.open(lock, LEAN_LOCK, 0o600)
        os.write(fd, holder)
        os.close(fd)

    def load() -> dict[str, Any]:
        fd = os.open(path, os.O_RDONLY)
        raw = os.read(fd, os.fstat(fd).st_size)
        os.close(fd)
        data: dict[str, Any] = orjson.loads(raw)
        return data

    def commit(data: dict[str, Any]) -> None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, orjson.dumps(data))
        os.close(fd)
        os.rename(temp, path)

    def modify() -> None:
        take_lock()
        data = load()
        data["visits"] += 1
        commit(data)
        os.unlink(lock)

    def read() -> None:
        take_lock()
        load()["visits"]
        os.unlink(lock)

    def lock_release() -> None:
        take_lock()
        os.unlink(lock)

    def lock_commit() -> None:
        take_lock()
        commit(SESSION)
        os.unlink(lock)

    return {
        "modify": repeat(modify),
        "read": repeat(read),
        "open": repeat(read),  # its lock, read and release: what the kernels' row is compared with
        "lock": repeat(lock_release),
        "load": repeat(load),
        "commit": repeat(lock_commit),
    }


_floor: Any = None


def floor_ops(directory: str) -> dict[str, Runner]:
    """The C program making fastsession's system calls and nothing else."""
    global _floor
    if _floor is None:
        _floor = load_floor() or False
    if not _floor:
        raise Missing("no C compiler to build the floor")
    lib = _floor
    path = os.fsencode(real_layout(directory))
    lock = path + b".lock"
    header = holder_record()
    body = orjson.dumps(SESSION)
    with open(path, "wb") as f:
        f.write(header + body)
    h, b = len(header), len(body)
    return {
        "modify": lambda k: checked(lib.floor_modify(path, lock, header, h, body, b, k)) / 1e9,
        "read": lambda k: checked(lib.floor_read(path, lock, header, h, k)) / 1e9,
        "open": lambda k: checked(lib.floor_read(path, lock, header, h, k)) / 1e9,
        "lock": lambda k: checked(lib.floor_lock(lock, header, h, k)) / 1e9,
        "load": lambda k: checked(lib.floor_load(path, k)) / 1e9,
        "commit": lambda k: checked(lib.floor_commit(path, lock, header, h, body, b, k)) / 1e9,
        "ids": lambda k: checked(lib.floor_ids(k)) / 1e9,
    }


# -- the peers ------------------------------------------------------------------------


def django_settings() -> Any:
    """Django's settings, configured once for the bench (its one-view project: fastsession.bench.django_app)."""
    try:
        import django
        from django.conf import settings
    except ImportError:
        raise Missing("Django is not installed") from None
    if not settings.configured:
        settings.configure(
            SECRET_KEY="fastsession-benchmark-" + "k" * 40,
            USE_TZ=True,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF="fastsession.bench.django_app",
            MIDDLEWARE=[],
            INSTALLED_APPS=["django.contrib.sessions"],
        )
        django.setup()
    return settings


def django_ops(directory: str) -> dict[str, Callable[..., Any]]:
    django_settings()
    from django.contrib.sessions.backends.file import SessionStore as DjangoFileStore

    store_class = type("DjangoFileStore", (DjangoFileStore,), {"_storage_path": directory})
    first = store_class()
    first.update(SESSION)
    first.create()
    key = first.session_key

    def modify() -> None:
        session = store_class(key)
        session["visits"] = session["visits"] + 1
        session.save()

    def read() -> None:
        store_class(key)["visits"]

    def counter() -> int:
        return int(store_class(key)["visits"])

    return {"modify": repeat(modify), "read": repeat(read), "increment": modify, "counter": counter}


def beaker_ops(directory: str) -> dict[str, Callable[..., Any]]:
    try:
        from beaker.session import Session as BeakerSession
    except ImportError:
        raise Missing("Beaker is not installed") from None
    options = {"type": "file", "data_dir": os.path.join(directory, "beaker"), "use_cookies": False}
    first = BeakerSession({}, **options)
    first.update(SESSION)
    first.save()
    sid = first.id

    def modify() -> None:
        session = BeakerSession({}, id=sid, **options)
        session["visits"] += 1
        session.save()

    def read() -> None:
        BeakerSession({}, id=sid, **options)["visits"]

    def counter() -> int:
        return int(BeakerSession({}, id=sid, **options)["visits"])

    return {"modify": repeat(modify), "read": repeat(read), "increment": modify, "counter": counter}


def cachelib_ops(directory: str) -> dict[str, Callable[..., Any]]:
    try:
        from cachelib import FileSystemCache
    except ImportError:
        raise Missing("cachelib is not installed") from None
    # As Flask-Session's filesystem backend configures it.
    cache = FileSystemCache(os.path.join(directory, "cachelib"), threshold=500, mode=0o600)
    key = "session:" + secrets.token_urlsafe(32)
    cache.set(key, dict(SESSION), timeout=0)

    def modify() -> None:
        data = cache.get(key)
        data["visits"] += 1
        cache.set(key, data, timeout=0)

    def read() -> None:
        cache.get(key)["visits"]

    def counter() -> int:
        return int(cache.get(key)["visits"])

    return {"modify": repeat(modify), "read": repeat(read), "increment": modify, "counter": counter}


def webstack_ops(directory: str, delay: float = 0.01) -> dict[str, Callable[..., Any]]:
    # delay=0.01 instead of 2005's 1 s, or the contention run would take minutes.
    where = os.path.join(directory, "webstack")
    jar = CookieJar()
    store = WebStack2005Store(jar, where, delay=delay)
    store.get_session(1).update(SESSION)  # type: ignore[union-attr]  # get_session(create) is never None
    store.close()

    def modify() -> None:
        store = WebStack2005Store(jar, where, delay=delay)
        store.get_session(1)["visits"] += 1  # type: ignore[index]  # get_session(create) is never None
        store.close()

    def read() -> None:
        store = WebStack2005Store(jar, where, delay=delay)
        store.get_session(1)["visits"]  # type: ignore[index]  # get_session(create) is never None
        store.close()

    def counter() -> int:
        store = WebStack2005Store(jar, where, delay=delay)
        value = store.get_session(0)["visits"]  # type: ignore[index]  # get_session(create) is never None
        store.close()
        return int(value)

    return {"modify": repeat(modify), "read": repeat(read), "increment": modify, "counter": counter}


def flask_ops(configure: Callable[..., Any], directory: str) -> dict[str, Callable[..., Any]]:
    """One request through Flask's test client to a view that counts visits."""
    try:
        import flask
    except ImportError:
        raise Missing("Flask is not installed") from None
    app = flask.Flask("fastsession-bench")
    app.secret_key = "fastsession-benchmark"
    configure(app, directory)

    @app.route("/")
    def visit() -> str:
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return "ok"

    @app.route("/peek")
    def peek() -> str:
        return str(flask.session.get("visits", 0))

    client = app.test_client()
    client.get("/")
    name = app.config["SESSION_COOKIE_NAME"]
    jar = client.get_cookie(name)
    cookie = jar.value if jar is not None else ""  # no cookie: the "no session" row

    def increment() -> None:
        web = app.test_client()  # a worker process's own client, on the shared session
        web.set_cookie(name, cookie)
        web.get("/")

    def counter() -> int:
        return int(client.get("/peek").data)

    return {
        "modify": repeat(lambda: client.get("/")),
        "read": repeat(lambda: client.get("/peek")),
        "increment": increment,
        "counter": counter,
    }


def with_fastsession_files(app: Any, directory: str) -> None:
    from ..contrib.flask import FastSessionInterface

    app.session_interface = FastSessionInterface(directory)


def with_fastsession_redis(app: Any, directory: str) -> None:
    from ..contrib.flask import FastSessionInterface
    from ..redis import RedisSessionStore

    app.session_interface = FastSessionInterface(
        redis_client(), store_class=RedisSessionStore, prefix=f"bench-{secrets.token_hex(4)}:"
    )


def with_flask_session_redis(app: Any, directory: str) -> None:
    try:
        from flask_session import Session
    except ImportError:
        raise Missing("Flask-Session is not installed") from None
    app.config.update(
        SESSION_TYPE="redis", SESSION_REDIS=redis_client(), SESSION_KEY_PREFIX=f"bench-fs-{secrets.token_hex(4)}:"
    )
    Session(app)


def with_no_session(app: Any, directory: str) -> None:
    """The same Flask request with no session store at all: a dict nobody stores (the request's floor)."""
    from flask.sessions import SessionInterface, SessionMixin

    class Unstored(dict, SessionMixin):  # type: ignore[type-arg]
        pass

    class NoStore(SessionInterface):
        def open_session(self, app: Any, request: Any) -> Unstored:
            return Unstored()

        def save_session(self, app: Any, session: Any, response: Any) -> None:
            pass

    app.session_interface = NoStore()


def with_memory_sessions(app: Any, directory: str) -> None:
    """Flask's session layer over a dict in this process (the floor a store is judged against)."""
    from .memory import flask_interface

    app.session_interface = flask_interface()


def with_plain_redis_sessions(app: Any, directory: str) -> None:
    """Flask's session layer over plain Redis GET and SET, no lock (the Redis floor)."""
    from .memory import PlainRedis, flask_interface

    app.session_interface = flask_interface(PlainRedis(redis_client(), f"bench-floor-{secrets.token_hex(4)}:"))


def django_request_ops(engine: str | None, directory: str) -> dict[str, Callable[..., Any]]:
    """One request through Django's test client to a view that counts visits, with the engine's middleware
    (fastsession's LockingSessionMiddleware for fastsession), or with no session middleware at all."""
    settings = django_settings()
    from django.test import Client
    from django.test.utils import override_settings

    middleware = {
        "fastsession.contrib.django": "fastsession.contrib.django.LockingSessionMiddleware",
        "django.contrib.sessions.backends.file": "django.contrib.sessions.middleware.SessionMiddleware",
        "fastsession.bench.memory": "django.contrib.sessions.middleware.SessionMiddleware",
    }
    settings.SESSION_FILE_PATH = directory  # read per request by both file engines
    with override_settings(
        MIDDLEWARE=[middleware[engine]] if engine else [],
        SESSION_ENGINE=engine or "django.contrib.sessions.backends.db",
    ):
        client = Client()
        client.get("/visit")  # the middleware chain is built now, with these settings
    return {"modify": repeat(lambda: client.get("/visit"))}


def with_signed_cookie(app: Any, directory: str) -> None:
    pass  # Flask's default: the data itself, signed, in the cookie


def filelock_ops(directory: str) -> dict[str, Runner]:
    try:
        from filelock import FileLock
    except ImportError:
        raise Missing("filelock is not installed") from None
    lock = FileLock(os.path.join(directory, "filelock.lock"))

    def lock_release() -> None:
        lock.acquire()
        lock.release()

    return {"lock": repeat(lock_release)}


def id_peers() -> dict[str, Runner]:
    import random
    import sys

    peers = {
        "secrets.token_urlsafe(32)": repeat(lambda: secrets.token_urlsafe(32)),
        "WebStack 2005 (random.randint)": repeat(lambda: str(random.randint(0, sys.maxsize - 1))),
    }
    try:
        from django.utils.crypto import get_random_string

        peers["Django get_random_string(32)"] = repeat(lambda: get_random_string(32))
    except ImportError:
        pass
    return peers


# name -> factory(directory); the first is what every ratio is taken against.
ROUND_TRIP = {
    "fastsession (compiled)": lambda d: fastsession_ops("c", d),
    "fastsession (pure twins)": lambda d: fastsession_ops("py", d),
    'fastsession, locking="commit" (reads take no lock)': lambda d: fastsession_ops("c", d, locking="commit"),
    "C floor (same system calls)": floor_ops,
    "lean pure Python": lean_ops,
    "Django file backend": django_ops,
    "Beaker file sessions": beaker_ops,
    "cachelib FileSystemCache": cachelib_ops,
    "WebStack 2005 design": webstack_ops,
}

# What each store option costs on a locked read-modify-write (the first row is BASELINE).
OPTIONS = {
    "fastsession (compiled)": lambda d: fastsession_ops("c", d),
    "  encrypt=True": lambda d: fastsession_ops("c", d, encrypt=True),
    "  max_lifetime=86400": lambda d: fastsession_ops("c", d, max_lifetime=86400),
    "  max_size=65536": lambda d: fastsession_ops("c", d, max_size=65536),
    "  bound to a user (bind_user)": bound_ops,
    '  locking="commit"': lambda d: fastsession_ops("c", d, locking="commit"),
}

# What a login costs (a new session bound to a user), and the per-user options and event handlers on it.
LOGIN_BASELINE = "login: a new session, bind_user, close"
LOGINS: dict[str, Callable[..., Any]] = {
    LOGIN_BASELINE: login_ops,
    "  max_sessions=3 (at the cap: one evicted per login)": lambda d: login_ops(d, max_sessions=3),
    '  max_sessions=3, when_full="refuse" (refused)': lambda d: refused_login_ops(d),
    "  a lifecycle event handler subscribed": lambda d: login_ops(d, handler=True),
}
# The events hook on the hot path: a locked read-modify-write makes no event, with or without a handler.
EVENTS = {
    "fastsession (compiled)": lambda d: login_ops(d),
    "  a lifecycle event handler subscribed": lambda d: login_ops(d, handler=True),
}

# Redis in a table of its own: the same session through fastsession and through two plain redis-py calls.
REDIS_BASELINE = "plain redis-py, no lock (floor)"
REDIS = {
    "fastsession on Redis": redis_ops,
    REDIS_BASELINE: plain_redis_ops,
}

KERNELS = {
    "fastsession (compiled)": lambda d: fastsession_kernels("c", d),
    "fastsession (pure twins)": lambda d: fastsession_kernels("py", d),
    "C floor (same system calls)": floor_ops,
    "lean pure Python": lean_ops,
    "filelock.FileLock": filelock_ops,
}

FLASK = {
    "fastsession (compiled)": lambda d: flask_ops(with_fastsession_files, d),
    "fastsession on Redis": lambda d: flask_ops(with_fastsession_redis, d),
    "Flask-Session, Redis backend": lambda d: flask_ops(with_flask_session_redis, d),
    "Flask signed cookie (default)": lambda d: flask_ops(with_signed_cookie, d),
}

# A whole request through each framework: with fastsession, against the framework's own session layer over
# an in-memory dict (the baseline: no I/O at all), and with no session at all.
FLASK_REQUEST_BASELINE = "Flask, in-memory sessions (dict SessionInterface)"
FLASK_REDIS_FLOOR = "Flask, the same SessionInterface over plain Redis GET + SET, no lock (Redis floor)"
FLASK_REQUESTS = {
    "Flask + fastsession (files)": lambda d: flask_ops(with_fastsession_files, d),
    FLASK_REQUEST_BASELINE: lambda d: flask_ops(with_memory_sessions, d),
    "Flask + fastsession on Redis": lambda d: flask_ops(with_fastsession_redis, d),
    FLASK_REDIS_FLOOR: lambda d: flask_ops(with_plain_redis_sessions, d),
    "Flask, no session": lambda d: flask_ops(with_no_session, d),
}
DJANGO_REQUEST_BASELINE = "Django SessionMiddleware, in-memory engine (dict SessionBase)"
DJANGO_REQUESTS = {
    "Django + fastsession (files, LockingSessionMiddleware)": lambda d: django_request_ops(
        "fastsession.contrib.django", d
    ),
    "Django + its file backend": lambda d: django_request_ops("django.contrib.sessions.backends.file", d),
    DJANGO_REQUEST_BASELINE: lambda d: django_request_ops("fastsession.bench.memory", d),
    "Django, no session middleware": lambda d: django_request_ops(None, d),
}
