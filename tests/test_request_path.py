"""The common request's own path (the kernels' open_request/close_request) against the general core.

Both twins of the path are driven with the same random request sequences
as stores whose backend never takes it; after every request the answers
(sessions, cookies, errors) and what is stored must be the same. Ids are
random, so they are compared by role: each client's cookie names its own
session on either side.
"""

import asyncio
import gc
import inspect
import os
import random
import re
import sys
import time
import types

import orjson
import pytest
from conftest import TWINS, Transaction, session_files

import fastsession
from fastsession import _kernels, events
from fastsession.aio import AsyncSessionStore
from fastsession.encoding import META
from fastsession.errors import SessionError
from fastsession.files import FileBackend
from fastsession.names import stored_name
from fastsession.session import Session


def counting(kind):
    """Twin ``kind``'s kernel set, counting the requests its own path carried out (``taken``)."""
    base = _kernels.twin(kind)
    kernels = types.SimpleNamespace(**vars(base))
    kernels.taken = {"open": 0, "close": 0}

    def open_request(store, create, files=None):
        found = base.open_request(store, create, files)
        kernels.taken["open"] += found is not NotImplemented
        return found

    def close_request(store, files=None):
        done = base.close_request(store, files)
        kernels.taken["close"] += done is not NotImplemented
        return done

    kernels.open_request, kernels.close_request = open_request, close_request
    return kernels


STORES = {"files": (fastsession.SessionStore, FileBackend), "async files": (AsyncSessionStore, FileBackend)}


def stores(kind, general, backend="files"):
    """A store class on twin ``kind`` and ``backend``; ``general``: its backend never offers the request path."""
    store_base, backend_base = STORES[backend] if backend in STORES else server_stores()[backend]

    class Backend(backend_base):
        kernels = counting(kind)

        def __init__(self, *args, **options):
            super().__init__(*args, **options)
            if general:
                self.request_path = None

    class Store(store_base):
        __slots__ = ()
        backend_class = Backend

    return Store, Backend.kernels


def server_stores():
    from fastsession.postgres import PostgresBackend, PostgresSessionStore
    from fastsession.redis import RedisBackend, RedisSessionStore

    return {"redis": (RedisSessionStore, RedisBackend), "postgres": (PostgresSessionStore, PostgresBackend)}


def masked(text, directory):
    """An error's text with what differs between the two sides (folders, ids, stored names) masked."""
    text = re.sub(re.escape(directory) + r"/[A-Za-z0-9_-]{2}/", "<shard>/", text)
    text = re.sub(r"[A-Za-z0-9_-]{43}", "<id>", text)
    text = re.sub(r"session is \d+ bytes", "session is <n> bytes", text)  # (a binding's times vary in length)
    return re.sub(r"[A-Za-z0-9_-]{8}…", "<name>…", text)


class Side:
    """One side of the comparison: its store class, folder and clients (transactions)."""

    def __init__(self, kind, general, directory, clients, max_age=None, backend="files", where=None, **extra):
        self.store_class, self.kernels = stores(kind, general, backend)
        self.directory = directory  # (files: the folder; else the text errors are masked by)
        self.where = directory if where is None else where  # the folder, a Redis client, a DSN
        self.extra = extra  # a Redis prefix, a PostgreSQL table
        self.on_files, self.on_redis = backend in ("files", "async files"), backend == "redis"
        self.clients = [Transaction() for _ in range(clients)]
        self.max_age = max_age

    def stored(self, trans):
        """What is stored under the client's cookie: (the app's data, whether META names a user), or a marker."""
        value = trans.cookies.get("SID")
        if value is None:
            return "no cookie"
        if not _kernels.ACTIVE.is_valid_id(value):
            return "not an id"
        if not self.on_files:
            store = self.store_class(Transaction(), self.where, **self.extra)
            loaded = store.backend.peek(value)[1]
            if loaded is None:
                return "absent"
            data = dict(loaded[0])
            meta = data.pop(META, None)
            if self.on_redis and self.max_age is not None:  # (kept from idling out: its TTL set just now)
                return data, bool(meta and "u" in meta), self.where.pttl(self.redis_key(value)) > self.max_age * 750
            return data, bool(meta and "u" in meta)
        path = self.path(value)
        try:
            with open(path, "rb") as file:
                raw = file.read()
                age = time.time() - os.fstat(file.fileno()).st_mtime
        except FileNotFoundError:
            return "absent"
        except IsADirectoryError:
            return "revoked"
        body = raw if raw[:1] == b"{" else raw.partition(b"\n")[2]
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "corrupt"
        meta = data.pop(META, None)
        if self.max_age is not None:  # (whether it was kept from idling out: written or touched just now)
            return data, bool(meta and "u" in meta), age < self.max_age / 4
        return data, bool(meta and "u" in meta)

    def redis_key(self, session_id):
        return self.extra["prefix"] + "{" + stored_name(session_id) + "}"

    def path(self, session_id):
        backend = self.store_class(Transaction(), self.directory).backend
        return getattr(backend, "files", backend).path(session_id)  # (an async store's: its FileBackend's)

    def request(self, client, plan, max_size):
        """Run one request of ``plan`` for ``client``; what the app and the client saw."""
        trans = self.clients[client]
        seen = []
        value = trans.cookies.get("SID")
        for step, argument in plan:
            if step != "age" or not value or len(value) != 43:
                continue
            if self.on_files and os.path.isfile(self.path(value)):
                then = time.time() - argument * (self.max_age or 100)  # (without max_age: never idle)
                os.utime(self.path(value), (then, then))
            elif self.on_redis and self.max_age is not None and self.where.exists(self.redis_key(value)):
                if argument >= 1:
                    self.where.delete(self.redis_key(value))  # idle past max_age: Redis let it go
                else:
                    self.where.pexpire(self.redis_key(value), int((1 - argument) * self.max_age * 1000))
        store = self.store_class(
            trans, self.where, max_size=max_size, max_age=self.max_age, timeout=2, **self.extra
        )  # (timeout: a lock left held fails the request that meets it)
        events_before = len(trans.events)
        asyncio.new_event_loop().run_until_complete(self._carried_out(store, trans, plan, seen))
        seen.append(("cookie events", [event[0] for event in trans.events[events_before:]]))
        seen.append(("stored", self.stored(trans)))
        return seen

    async def _carried_out(self, store, trans, plan, seen):
        """``plan``'s steps on ``store``, sync or async (each call awaited when it gives an awaitable)."""

        async def done(result):
            return await result if inspect.isawaitable(result) else result

        try:
            for step, argument in plan:
                if step == "cookie":
                    trans.cookies["SID"] = argument
                elif step == "steal":  # another client's cookie (an id that names someone else's session)
                    value = self.clients[argument].cookies.get("SID")
                    if value is not None:
                        trans.cookies["SID"] = value
                elif step == "age" or (step in ("corrupt", "revoked") and not self.on_files):
                    pass  # (made before the store: above; corrupt and revoked on files only)
                elif step == "corrupt":
                    value = trans.cookies.get("SID")
                    if value and len(value) == 43:
                        path = self.path(value)
                        if os.path.isfile(path):
                            with open(path, "wb") as file:
                                file.write(b"\x00not json")
                elif step == "get":
                    session = await done(store.get_session(argument))
                    seen.append(("get", None if session is None else dict(session)))
                elif step == "set" and store._session is not None:
                    key, value = argument
                    store._session[key] = value
                elif step == "del" and store._session is not None:
                    store._session.pop(argument, None)
                elif step == "clear" and store._session is not None:
                    store._session.clear()
                elif step == "expire":
                    await done(store.expire_session())
                elif step == "regenerate":
                    await done(store.regenerate_id())
                elif step == "bind":
                    await done(store.bind_user(argument))
                elif step == "revoked" and store._session is not None and store._stored is not None:
                    path = self.path(store._session.session_id)
                    os.unlink(path)
                    os.mkdir(path, 0o700)  # what revoke_held leaves: the commit to come must fail
                elif step == "rollback":
                    await done(store.rollback())
            await done(store.close())
            answer = await done(store.response_cookie())
            seen.append(("response cookie", answer if not answer else answer == trans.cookies.get("SID")))
        except Exception as exc:
            seen.append(("error", type(exc).__name__, masked(str(exc), self.directory)))
            await done(store.rollback())


VALUES = [0, 1, "text", [1, 2, 3], {"nested": {"deep": [None, True]}}, "é" * 40]


def random_plan(rng, clients):
    """One request: perhaps a changed cookie, get_session, changes, perhaps an ending that is not close()."""
    plan = []
    roll = rng.random()
    if roll < 0.04:
        plan.append(("cookie", "not-an-id"))
    elif roll < 0.06:
        plan.append(("cookie", "y" * 43))  # an id that names nothing
    elif roll < 0.09:
        plan.append(("steal", rng.randrange(clients)))
    elif roll < 0.12:
        plan.append(("corrupt", None))
    elif roll < 0.20:
        plan.append(("age", rng.choice([0.3, 0.9, 1.5])))  # of max_age: to be touched, still live, idle past it
    if rng.random() < 0.92:
        plan.append(("get", rng.random() < 0.8))
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        roll = rng.random()
        if roll < 0.55:
            plan.append(("set", (rng.choice("abcde"), rng.choice(VALUES))))
        elif roll < 0.70:
            plan.append(("del", rng.choice("abcde")))
        elif roll < 0.74:
            plan.append(("set", ("bad", object())))  # orjson cannot encode it
        elif roll < 0.78:
            plan.append(("set", ("big", "x" * 3000)))  # over max_size
        elif roll < 0.82:
            plan.append(("clear", None))
        elif roll < 0.85:
            plan.append(("expire", None))
        elif roll < 0.88:
            plan.append(("regenerate", None))
        elif roll < 0.92:
            plan.append(("bind", rng.choice(["ann", "bob", None])))
        elif roll < 0.95:
            plan.append(("revoked", None))
        else:
            plan.append(("rollback", None))
    return plan


@pytest.mark.parametrize("kind", TWINS)
@pytest.mark.parametrize("seed, max_age", [(1, None), (2, None), (3, 100), (4, 100)])
def test_random_requests_end_the_same_on_the_request_path_and_the_general_core(tmp_path, kind, seed, max_age):
    rng = random.Random(seed)
    fast = Side(kind, False, str(tmp_path / "fast"), clients=4, max_age=max_age)
    general = Side(kind, True, str(tmp_path / "general"), clients=4, max_age=max_age)
    compare(fast, general, rng, 400)


@pytest.mark.parametrize("kind", TWINS)
@pytest.mark.parametrize("seed, max_age", [(8, None), (9, 100)])
def test_random_requests_end_the_same_on_the_async_face(tmp_path, kind, seed, max_age):
    fast = Side(kind, False, str(tmp_path / "fast"), 4, max_age, backend="async files")
    general = Side(kind, True, str(tmp_path / "general"), 4, max_age, backend="async files")
    compare(fast, general, random.Random(seed), 400)


@pytest.mark.parametrize("kind", TWINS)
@pytest.mark.parametrize("seed, max_age", [(5, None), (6, 100)])
def test_random_requests_end_the_same_on_redis(redis_url, kind, seed, max_age):
    import redis

    client = redis.Redis.from_url(redis_url)
    tag = f"rp-{seed}-{kind}-{os.getpid()}"
    fast = Side(kind, False, tag, 4, max_age, backend="redis", where=client, prefix=f"{tag}-fast:")
    general = Side(kind, True, tag, 4, max_age, backend="redis", where=client, prefix=f"{tag}-general:")
    compare(fast, general, random.Random(seed), 300)


@pytest.mark.parametrize("kind", TWINS)
def test_random_requests_end_the_same_on_postgres(postgres_dsn, kind):
    import uuid

    import psycopg

    from fastsession import postgres_admin

    tables = [f"rp_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for table in tables:
        postgres_admin.init(postgres_dsn, table)
    try:
        fast = Side(kind, False, tables[0], 4, backend="postgres", where=postgres_dsn, table=tables[0])
        general = Side(kind, True, tables[1], 4, backend="postgres", where=postgres_dsn, table=tables[1])
        compare(fast, general, random.Random(7), 200)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for table in tables:
                for statement in postgres_admin.drop_sql(table):
                    conn.execute(statement)


def compare(fast, general, rng, requests):
    """Run the same random requests on both sides; every answer and every stored session the same.

    The comparison is not empty: most requests took the path on one side, none on the other.
    """
    for number in range(requests):
        client, plan = rng.randrange(4), random_plan(rng, 4)
        fast_seen = fast.request(client, plan, 2048)
        assert fast_seen == general.request(client, plan, 2048), f"request {number} of client {client}: {plan}"
    for mine, theirs in zip(fast.clients, general.clients):
        assert fast.stored(mine) == general.stored(theirs)
    assert fast.kernels.taken["open"] > requests / 2 and fast.kernels.taken["close"] > requests / 2
    assert general.kernels.taken == {"open": 0, "close": 0}


@pytest.mark.parametrize("kind", TWINS)
def test_the_request_path_carries_the_common_request_and_leaves_the_rest_to_the_core(tmp_path, kind):
    store_class, kernels = stores(kind, general=False)
    trans = Transaction()
    with store_class(trans, str(tmp_path)) as store:
        store.get_session(True)["n"] = 1
    with store_class(trans, str(tmp_path)) as store:
        store.get_session(True)["n"] += 1
    assert kernels.taken == {"open": 2, "close": 2}
    with store_class(trans, str(tmp_path), locking="commit") as store:  # another locking mode: the core's
        store.get_session(True)["n"] += 1
    with store_class(trans, str(tmp_path), max_lifetime=3600) as store:  # a lifetime to judge: the core's
        store.get_session(True)["n"] += 1
    # The record holds META now (a creation time): the path locks and reads it, the core's rest opens it.
    with store_class(trans, str(tmp_path)) as store:
        store.get_session(True)
        store.bind_user("ann")  # a binding to write at close: the core's
    with store_class(trans, str(tmp_path)) as store:
        assert store.get_session(True)["n"] == 4 and store._meta["u"]
    assert kernels.taken == {"open": 4, "close": 2}
    with store_class(trans, str(tmp_path)) as store:
        assert store.get_session(False) == {"n": 4}


@pytest.mark.parametrize("kind", TWINS)
def test_a_cookie_without_value_is_refused_the_same_way_on_the_request_path(tmp_path, kind):
    class StrCookies(Transaction):
        def get_cookie(self, name):
            return self.cookies.get(name)

    for general in (False, True):
        store_class, _ = stores(kind, general)
        trans = StrCookies({"SID": "x" * 43})
        with pytest.raises(TypeError, match=r"must return None or an object with \.value"):
            store_class(trans, str(tmp_path)).get_session(True)


@pytest.mark.parametrize("kind", TWINS)
def test_the_request_path_tells_event_handlers_of_a_new_session(tmp_path, kind):
    store_class, kernels = stores(kind, general=False)
    told = []
    handler = events.subscribe(told.append)
    try:
        trans = Transaction()
        with store_class(trans, str(tmp_path)) as store:
            store.get_session(True)["a"] = 1
        with store_class(trans, str(tmp_path)) as store:  # stored already: no event
            store.get_session(True)["a"] = 2
    finally:
        events.unsubscribe(handler)
    assert kernels.taken == {"open": 2, "close": 2}
    assert [(event.kind, event.session) for event in told] == [("created", stored_name(trans.cookies["SID"]))]


@pytest.mark.parametrize("kind", TWINS)
def test_a_session_locked_by_another_request_is_waited_for_on_the_request_path(tmp_path, kind):
    store_class, kernels = stores(kind, general=False)
    trans = Transaction()
    with store_class(trans, str(tmp_path)) as store:
        store.get_session(True)["n"] = 1
    holder = store_class(Transaction(trans.cookies), str(tmp_path))
    holder.get_session(True)["n"] = 2
    with pytest.raises(fastsession.LockTimeout):
        store_class(Transaction(trans.cookies), str(tmp_path), timeout=0.05).get_session(True)
    holder.close()
    with store_class(trans, str(tmp_path)) as store:
        assert store.get_session(True) == {"n": 2}  # what the holder committed, read once it let go
    assert kernels.taken == {"open": 3, "close": 3}  # (the request that timed out returned nothing)
    assert not [name for name in session_files(tmp_path) if name.endswith(".lock")]
    with pytest.raises(SessionError, match="closed"):
        store.get_session(True)


@pytest.mark.parametrize("kind", TWINS)
def test_a_backend_subclass_that_overrides_a_call_of_the_path_gets_its_call(tmp_path, kind):
    saved = []

    class Audited(FileBackend):
        kernels = counting(kind)

        def save(self, handle, body):
            saved.append(body)
            super().save(handle, body)

    class Store(fastsession.SessionStore):
        __slots__ = ()
        backend_class = Audited

    with Store(Transaction(), str(tmp_path)) as store:
        store.get_session(True)["a"] = 1
    assert saved == [b'{"a":1}'] and Audited.kernels.taken == {"open": 0, "close": 0}


@pytest.mark.parametrize("kind", TWINS)
def test_the_async_face_leaves_a_held_lock_to_the_core_and_a_release_wakes_the_next_waiter_at_once(tmp_path, kind):
    store_class, kernels = stores(kind, False, "async files")
    trans = Transaction()

    async def go():
        async with store_class(trans, str(tmp_path)) as store:
            (await store.get_session(True))["n"] = 1
        holder = store_class(Transaction(trans.cookies), str(tmp_path))
        (await holder.get_session(True))["n"] = 2
        waiter = store_class(Transaction(trans.cookies), str(tmp_path))
        task = asyncio.ensure_future(waiter.get_session(True))  # the lock is held: the core waits on the loop
        backend = holder.backend
        while not backend.waiters:
            await asyncio.sleep(0)
        queued = [future for queue in backend.waiters.values() for future in queue]
        await holder.close()  # on the request path: the release wakes the waiter before close() returns
        assert queued and all(future.done() for future in queued)
        session = await task
        assert session == {"n": 2}
        await waiter.close()

    asyncio.new_event_loop().run_until_complete(go())
    # The waiter's open went to the core (the path found the lock taken); every close took the path.
    assert kernels.taken == {"open": 2, "close": 3}


@pytest.mark.parametrize("kind", TWINS)
def test_the_async_face_takes_no_request_path_while_its_calls_go_to_a_thread(tmp_path, kind):
    store_class, kernels = stores(kind, False, "async files")
    trans = Transaction()

    async def go():
        backend = store_class(trans, str(tmp_path)).backend  # (one per FileBackend: its offload state is shared)
        backend.offloaded_until = time.monotonic() + 60  # a slow disk was seen: calls go to a thread
        try:
            async with store_class(trans, str(tmp_path)) as store:
                (await store.get_session(True))["n"] = 1
            async with store_class(trans, str(tmp_path)) as store:
                assert await store.get_session(False) == {"n": 1}
        finally:
            backend.offloaded_until = 0.0

    asyncio.new_event_loop().run_until_complete(go())
    assert kernels.taken == {"open": 0, "close": 0}


@pytest.mark.parametrize("kind", TWINS)
def test_a_stores_own_session_class_is_made_as_the_core_makes_it(tmp_path, kind):
    class Noted(Session):  # an app's subclass: made with (id) when new, (id, data) when stored
        __slots__ = ("made_with",)

        def __init__(self, session_id, *data):
            Session.__init__(self, session_id, *data)
            self.made_with = len(data)

    store_class, kernels = stores(kind, general=False)
    store_class.session_class = Noted
    trans = Transaction()
    with store_class(trans, str(tmp_path)) as store:
        session = store.get_session(True)
        session["a"] = 1
    assert isinstance(session, Noted) and session.made_with == 0
    with store_class(trans, str(tmp_path)) as store:
        session = store.get_session(True)
        assert isinstance(session, Noted) and session.made_with == 1 and session == {"a": 1}
    assert kernels.taken == {"open": 2, "close": 2}


@pytest.mark.parametrize("kind", TWINS)
def test_a_store_whose_constructor_never_ran_is_refused_by_the_path(kind):
    """The compiled twin reads the store's slots by their offsets: one never set is the AttributeError the pure
    twin's attribute access raises, not a read of nothing."""
    request = _kernels.twin(kind)
    unmade = fastsession.SessionStore.__new__(fastsession.SessionStore)
    with pytest.raises(AttributeError):
        request.open_request(unmade, True)
    with pytest.raises(AttributeError):
        request.close_request(unmade)


def test_the_compiled_path_refuses_what_is_not_a_store(tmp_path):
    """Its slot offsets are StoreCore's: any other object, even one with the same attributes, is refused before a
    slot is read."""
    from conftest import compiled_twin

    request = compiled_twin("request")

    class LookAlike:
        def __init__(self, store):
            for name in fastsession.store.StoreCore.__slots__:
                setattr(self, name, getattr(store, name))

    look = LookAlike(fastsession.SessionStore(Transaction(), str(tmp_path)))
    with pytest.raises(TypeError, match="StoreCore"):
        request.open_request(look, True)
    with pytest.raises(TypeError, match="StoreCore"):
        request.close_request(look)


@pytest.mark.parametrize("kind", TWINS)
def test_sessions_closed_on_the_path_refuse_changes_and_their_classes_counts_hold(tmp_path, kind):
    """close turns each session into its closed twin; the compiled twin switches a plain Session by its pointer
    after the first, and must move the two classes' reference counts as ``__class__ =`` does."""
    from fastsession.session import CLOSED, ClosedSession

    store_class, kernels = stores(kind, general=False)
    trans = Transaction()
    with store_class(trans, str(tmp_path)) as store:
        store.get_session(True)["n"] = 0
    gc.collect()  # (earlier tests' garbage, collected now, not while the counts are taken)
    gc.disable()
    try:
        closed, plain = CLOSED[Session], sys.getrefcount(Session)
        held, before = [], sys.getrefcount(closed)
        for _ in range(40):
            with store_class(trans, str(tmp_path)) as store:
                session = store.get_session(True)
                session["n"] += 1
            held.append(session)
        assert kernels.taken == {"open": 41, "close": 41}
        assert all(type(each) is closed for each in held) and isinstance(held[0], Session)
        assert sys.getrefcount(closed) == before + 40 and sys.getrefcount(Session) == plain
        with pytest.raises(SessionError, match="closed"):
            held[-1]["n"] = 0
        assert held[-1] == {"n": 40}
        del held[:], session
        assert sys.getrefcount(closed) == before and sys.getrefcount(Session) == plain
    finally:
        gc.enable()

    class Noted(Session):  # an app's own class: switched by __class__ itself, to its own closed twin
        __slots__ = ()

    store_class.session_class = Noted
    with store_class(trans, str(tmp_path)) as store:
        session = store.get_session(True)
    assert type(session) is CLOSED[Noted] and isinstance(session, (Noted, ClosedSession))
