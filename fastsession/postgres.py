"""PostgreSQL: the same facade for apps whose sessions live in their database
(``pip install "fastsession-store[postgres]"``, psycopg 3 and its pool).

``PostgresSessionStore(trans, pool, ...)`` is SessionStore with a PostgreSQL
backend. One row per session in ``<table>`` (``fastsession_session`` by default):
its stored name (a hash of the id, fastsession.names), its orjson body, when it
expires (``max_age``), and its lease: who holds it (``holder``, a token and a
holder line, fastsession.leases) and until when (``lease_until``). The user
index is ``<table>_user``. ``fastsession postgres init DSN`` creates both
(fastsession.postgres_admin), as does the Django app's migration.

The lock is a lease, never a transaction: every call is one statement in
autocommit, on a connection borrowed from the pool for that statement only.
Taking the lease reads the session in the same statement (an upsert that
takes the row only while nobody holds it, or its lease is over); the commit
writes and ends the lease in one statement, and only while the token still
holds it, so a holder whose lease ran out and was taken never overwrites the
new holder's data: SessionError. No connection stays in a transaction
while the app works, so a request's view never pins one, and vacuum is
never held back.

Waiting: a request that finds the lease held marks the row (``waiting_until``)
and waits for a ``NOTIFY`` on the table's channel, which every statement that
ends a marked lease sends with the stored name; polls (every ``delay`` at
most, 50 ms at most while no listener is connected) are the fallback. One
listening connection per process, pool and table, opened at the first wait.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, NoReturn

import orjson

from . import _kernels
from ._holder import summary
from ._lock_py import CHECK_HOLDER_AFTER, CHECK_HOLDER_EVERY
from .checks import check_seconds
from .errors import LockTimeout, SessionError, SessionRevoked
from .factory import PLAIN_CONSTRUCTORS
from .leases import LeaseCore, decoded, describe_lock, holder_is_gone, holder_token
from .merge import Resolver
from .names import stored_name
from .record import bound_to
from .routines import SyncCalls
from .store import BaseStore, StoreCore, shared_backend

__all__ = [
    "OnPostgres",
    "PostgresBackend",
    "PostgresCore",
    "PostgresHandle",
    "PostgresSessionStore",
    "check_table",
    "close_pools",
    "pool_for",
    "quoted",
    "statements",
]

logger = logging.getLogger(__name__)

FIRST_PAUSE = 0.0005
MAX_PAUSE = 0.05  # between polls while no listener is connected
MAX_PAUSE_LISTENING = 0.25  # while one is: a NOTIFY wakes the waiter, a poll only mends a lost one
WAITING_MS = 1000  # how long a waiter's mark lasts; it marks again at each poll
TABLE = "fastsession_session"
POOL_WAIT = 10.0  # seconds a statement waits for a connection of a pool made from a DSN (then SessionError)

# A routine below is a generator, driven like the store's core (store.run, aio.arun): it yields
# (SQL, statement, params) and is sent the rows, or has the error thrown in; (WAIT, stored name,
# since, seconds): until a NOTIFY for that session received after ``since`` (time.monotonic), or the
# seconds are over; (SLEEP, seconds).
SQL, WAIT, SLEEP = "sql", "wait", "sleep"

# Milliseconds left until a timestamp, -1 for none (Redis's PTTL, which the core's rules read).
_MS_LEFT = "coalesce((extract(epoch FROM {0} - clock_timestamp()) * 1000)::bigint, -1)"
_LIVE = "{0}body IS NOT NULL AND ({0}expires_at IS NULL OR {0}expires_at > clock_timestamp())"
_AFTER_TTL = "clock_timestamp() + %(ttl)s::bigint * interval '1 millisecond'"  # ``ttl`` ms from now
_EXPIRY = f"CASE WHEN %(ttl)s::bigint > 0 THEN {_AFTER_TTL} END"
# A statement that ends or uses a lease matches its row by ``holder IN (token, 'R ' || token)``, which
# stays true when a revocation marks the lease meanwhile: PostgreSQL re-checks a row changed by a
# concurrent statement on its newest version, and a condition that held only on the older one (the
# body read, say) would match nothing. What to do with each case is decided in SET, on the newest
# version. It answers (rows touched, whether the row still holds a session, NOTIFYs sent): a waiter
# marked on the row (waiting_until) is woken. A commit's body is never NULL: one that comes back NULL
# was revoked.
_MINE = "holder IN (%(v)s, 'R ' || %(v)s)"
_OWN = "holder = %(v)s"


def _ending(statement: str, channel: str, kept: str = "body IS NOT NULL") -> str:
    return (
        f"WITH done AS ({statement} RETURNING {kept} AS kept, waiting_until),"
        f" woke AS (SELECT pg_notify('{channel}', %(n)s) FROM done WHERE waiting_until > clock_timestamp())"
        " SELECT (SELECT count(*) FROM done), (SELECT bool_and(kept) FROM done), (SELECT count(*) FROM woke)"
    )


def statements(table: str) -> dict[str, str]:
    """The SQL of every call the backend makes, on ``table`` (and ``<table>_user``)."""
    users, channel, table = quoted(table + "_user"), table, quoted(table)
    left = _MS_LEFT.format("expires_at")
    live = _LIVE.format("")
    return {
        # Take the lease when free (or over, or already ours: a retried statement), reading the session in
        # the same statement; else mark the row so that its holder's release sends a NOTIFY.
        "acquire": f"""
WITH took AS (
  INSERT INTO {table} AS s (name, holder, lease_until)
  VALUES (%(n)s, %(v)s, clock_timestamp() + %(lease)s::bigint * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until,
    body = CASE WHEN s.expires_at <= clock_timestamp() THEN NULL ELSE s.body END,
    expires_at = CASE WHEN s.expires_at <= clock_timestamp() THEN NULL ELSE s.expires_at END
  WHERE s.holder IS NULL OR s.lease_until <= clock_timestamp() OR s.holder = excluded.holder
  RETURNING s.body, s.expires_at
), marked AS (
  UPDATE {table} SET waiting_until = clock_timestamp() + interval '{WAITING_MS} milliseconds'
  WHERE name = %(n)s AND NOT EXISTS (SELECT FROM took)
)
SELECT body, {left} FROM took""",
        # Write and end the lease; a revoked lease ends and writes nothing (its row emptied: "vacate").
        "commit": _ending(
            f"UPDATE {table} SET body = CASE WHEN {_OWN} THEN %(b)s END,"
            f" expires_at = CASE WHEN {_OWN} THEN {_EXPIRY} END, holder = NULL, lease_until = NULL"
            f" WHERE name = %(n)s AND {_MINE}",
            channel,
        ),
        # Write and keep the lease.
        "put": _ending(
            f"UPDATE {table} SET body = CASE WHEN {_OWN} THEN %(b)s END,"
            f" expires_at = CASE WHEN {_OWN} THEN {_EXPIRY} END,"
            f" holder = CASE WHEN {_OWN} THEN holder END, lease_until = CASE WHEN {_OWN} THEN lease_until END"
            f" WHERE name = %(n)s AND {_MINE}",
            channel,
        ),
        # End the lease without writing. ``ttl``: refresh the expiry ("0": leave it). A row left holding no
        # session is then vacated.
        "release": _ending(
            f"UPDATE {table} SET holder = NULL, lease_until = NULL,"
            f" expires_at = CASE WHEN {_OWN} AND %(ttl)s::bigint > 0 THEN {_AFTER_TTL} ELSE expires_at END"
            f" WHERE name = %(n)s AND {_MINE}",
            channel,
        ),
        "delete": _ending(f"DELETE FROM {table} WHERE name = %(n)s AND {_MINE}", channel, "true"),
        # A row that holds neither a session nor a lease (a released lease on a name with no session, a
        # revoked one) goes; one taken again meanwhile stays.
        "vacate": f"DELETE FROM {table} WHERE name = %(n)s AND body IS NULL AND holder IS NULL",
        # A waiter's verdict on a lease whose holder is gone: over now, if it is still the one judged.
        "break": _ending(
            f"UPDATE {table} SET lease_until = '-infinity' WHERE name = %(n)s AND holder = %(v)s", channel, "true"
        ),
        "lease": f"""SELECT holder, {_MS_LEFT.format("lease_until")} FROM {table}
WHERE name = %(n)s AND holder IS NOT NULL AND lease_until > clock_timestamp()""",
        # Without a lease (concurrent=0, locking="commit"'s read, the index).
        "read": f"SELECT body, {left} FROM {table} WHERE name = %(n)s AND {live}",
        "write": f"""INSERT INTO {table} AS s (name, body, expires_at) VALUES (%(n)s, %(b)s, {_EXPIRY})
ON CONFLICT (name) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at""",
        "touch": f"UPDATE {table} SET expires_at = {_AFTER_TTL} WHERE name = %(n)s AND body IS NOT NULL",
        "drop": f"DELETE FROM {table} WHERE name = %(n)s",
        # Revoke a session whose lease another holds, if it is still what was read (whose binding the
        # caller checked): the data goes, and the lease is marked so that its holder's commit writes
        # nothing. ``absent``: a commit about to land (nothing may be stored yet).
        "revoke_held": f"""
WITH hit AS (
  UPDATE {table} SET body = NULL, expires_at = NULL,
    holder = CASE WHEN holder IS NOT NULL AND holder NOT LIKE 'R %%' AND lease_until > clock_timestamp()
                  THEN 'R ' || holder ELSE holder END
  WHERE name = %(n)s AND CASE WHEN %(absent)s THEN NOT ({live}) ELSE {live} AND body = %(b)s END
  RETURNING 1
)
SELECT (SELECT count(*) FROM hit) > 0
  OR (%(absent)s AND NOT EXISTS (SELECT FROM {table} WHERE name = %(n)s AND {live}))""",
        "index_add": f"""INSERT INTO {users} (user_hash, name, info) VALUES (%(u)s, %(n)s, %(i)s)
ON CONFLICT (user_hash, name) DO UPDATE SET info = excluded.info""",
        "index_remove": f"DELETE FROM {users} WHERE user_hash = %(u)s AND name = %(n)s",
        "index_read": f"""SELECT u.name, u.info, s.name IS NOT NULL, {_MS_LEFT.format("s.expires_at")}
FROM {users} u LEFT JOIN {table} s ON s.name = u.name AND {_LIVE.format("s.")}
WHERE u.user_hash = %(u)s ORDER BY u.name""",
    }


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,49}")


def check_table(table: str) -> None:
    """A table name goes into SQL as it is: a plain lower-case identifier only (schema-qualified allowed)."""
    parts = table.split(".") if isinstance(table, str) else [None]
    if len(parts) > 2 or not all(isinstance(p, str) and _IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(f"table must be a lower-case SQL identifier (optionally schema.table), not {table!r}")


def quoted(table: str) -> str:
    """``table`` as SQL names it, checked (check_table) and quoted: ``full`` or ``user`` is a table too."""
    check_table(table)
    return ".".join(f'"{part}"' for part in table.split("."))


class PostgresHandle:
    """One opened session: its stored name, the lease's value (None when not locking), what was read."""

    __slots__ = ("key", "name", "read", "token")

    def __init__(self, key: str | None, name: str, token: str | None, read: Any) -> None:
        self.key, self.name, self.token, self.read = key, name, token, read


PgSteps = Generator[Any, Any, Any]


class PostgresCore(LeaseCore):
    """What the PostgreSQL backend sends and what the rows mean, free of I/O (shared by sync and async)."""

    kernels = _kernels.ACTIVE
    listening = False  # a listener is connected: NOTIFYs arrive, polls may be rarer (the backends say)
    max_record = 256 << 20  # bytes a bytea value takes without strain (its hard limit is 1 GB)

    def __init__(
        self,
        concurrent: Any = True,
        delay: float = 1.0,
        timeout: float | None = None,
        lock_ttl: float = 30.0,
        max_age: float | None = None,
        table: str = TABLE,
    ) -> None:
        check_seconds("delay", delay)
        check_seconds("timeout", timeout, optional=True, zero=True, forever=True)
        check_seconds("lock_ttl", lock_ttl)
        check_seconds("max_age", max_age, optional=True)
        self.sql_text = statements(table)
        self.table = table
        self.concurrent = bool(concurrent)
        self.delay = float(delay)
        self.timeout = timeout
        self.lock_ttl = float(lock_ttl)
        self.lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self.max_age = max_age
        self.ttl_ms = max(1, int(max_age * 1000)) if max_age is not None else 0
        self.check_key = self.kernels.is_valid_id  # (the Django engine also accepts Django's keys)

    def _name(self, key: str) -> str:
        if not self.check_key(key):
            raise ValueError("invalid session id")
        return stored_name(key)

    def _stored(self, name: str) -> str:
        """``name`` itself, once it is seen to be a stored name (what the user index lists), never anything else."""
        if not self.kernels.is_valid_id(name):
            raise ValueError("invalid stored name")
        return name

    def _run_sql(self, statement: str, params: dict[str, Any], name: str, token: str | None = None) -> PgSteps:
        """One statement; a database error becomes SessionError naming the statement and the stored name
        (nothing an id could be made from), and a lease held with ``token`` is let go."""
        from psycopg import Error

        try:
            return (yield SQL, statement, params)
        except GeneratorExit:
            raise
        except BaseException as exc:  # (cancelled or interrupted mid-call too: the statement may yet run)
            if token is not None:
                try:  # end the lease, if it holds; else it ends at its expiry
                    yield from self._end_lease(name, token)
                except (SessionError, OSError) as failed:
                    logger.warning("could not end the lease on %s (it ends within lock_ttl): %s", name, failed)
            if isinstance(exc, Error):
                raise SessionError(f"PostgreSQL could not run its {statement!r} statement on {name!r}: {exc}") from exc
            raise

    def _end_lease(self, name: str, token: str, touch: int = 0) -> PgSteps:
        """End the lease ``token`` holds on ``name`` without writing (``touch``: ms of expiry to give the
        session, 0: as it was); a row left holding no session goes."""
        params = {"n": name, "v": token, "ttl": touch}
        touched, kept, _ = (yield from self._run_sql("release", params, name))[0]
        if touched and not kept:
            yield from self._vacate(name)

    def _open(self, key: str, timeout: Any = ..., stored: bool = False) -> PgSteps:
        """Take the lease of the session of ``key`` (when concurrent), waiting while another holds it.

        ``timeout``: seconds to wait (None: forever); by default the backend's.
        ``stored``: ``key`` is a stored name, not an id.
        """
        timeout = self.timeout if timeout is ... else timeout
        name = self._stored(key) if stored else self._name(key)
        if not self.concurrent:
            return PostgresHandle(key, name, None, None)
        token = holder_token(self.kernels)
        params = {"n": name, "v": token, "lease": self.lock_ttl_ms}
        start = time.monotonic()
        pause = FIRST_PAUSE
        check_at = CHECK_HOLDER_AFTER
        while True:
            tried = time.monotonic()
            rows = yield from self._run_sql("acquire", params, name, token)
            if rows:
                return PostgresHandle(key, name, token, rows[0])
            waited = time.monotonic() - start
            if waited >= check_at or (timeout is not None and waited >= timeout):
                check_at = waited + CHECK_HOLDER_EVERY
                if (yield from self._judge(name)):
                    continue  # a gone holder's lease, broken: try again at once
            if timeout is not None and waited >= timeout:
                lease = yield from self._run_sql("lease", {"n": name}, name)
                holder = describe_lock(lease[0][0], lease[0][1], self.lock_ttl) if lease else None
                raise LockTimeout(
                    f"session lease {name!r} still held after {timeout} s"
                    + (f" ({summary(holder)})" if holder else ""),
                    holder,
                )
            max_pause = min(self.delay, MAX_PAUSE_LISTENING if self.listening else MAX_PAUSE)
            pause = min(pause, max_pause)
            if timeout is not None:
                pause = min(pause, max(timeout - waited, 0.0))
            yield WAIT, name, tried, pause
            pause = min(pause * 2, max_pause)

    def _judge(self, name: str) -> PgSteps:
        """Whether the lease another holds was broken: its holder, on this host, is gone (leases.holder_is_gone)."""
        lease = yield from self._run_sql("lease", {"n": name}, name)
        if not lease or not holder_is_gone(lease[0][0], self.lock_ttl):
            return False
        rows = yield from self._run_sql("break", {"n": name, "v": lease[0][0]}, name)
        return bool(rows[0][0])

    def _peek(self, key: str) -> PgSteps:
        """Read without a lease: (a handle holding nothing, what _load gives)."""
        handle = PostgresHandle(key, self._name(key), None, None)
        return handle, (yield from self._load(handle))

    def _load(self, handle: PostgresHandle, want_mtime: bool = False) -> PgSteps:
        """(data, stored bytes, ms until it expires or -1) of the session; None when absent or corrupt."""
        if handle.read is not None:
            body, left = handle.read
        else:
            rows = yield from self._run_sql("read", {"n": handle.name}, handle.name)
            body, left = rows[0] if rows else (None, -2)
        if body is None:
            return None
        body = bytes(body)
        data = decoded(body, handle.name, logger)
        return None if data is None else (data, body, float(left))

    def _save(self, handle: PostgresHandle, body: bytes, ttl_ms: int | None = None, keep_lock: bool = False) -> PgSteps:
        """Write ``body`` and end the lease (unless ``keep_lock``); SessionError if the lease was lost meanwhile.

        ``ttl_ms``: milliseconds until the data expires (0: never), by default max_age's.
        """
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        params = {"n": handle.name, "b": body, "ttl": ttl}
        if handle.token is None:
            yield from self._run_sql("write", params, handle.name)
            return
        params["v"] = handle.token
        touched, kept, _ = (
            yield from self._run_sql("put" if keep_lock else "commit", params, handle.name, handle.token)
        )[0]
        if touched and not kept:
            yield from self._vacate(handle.name)
            raise SessionRevoked(f"session {handle.name!r} was revoked while this request held it: not written")
        if not touched:
            raise SessionError(
                f"session lease {handle.name!r} ran out and was taken by another holder: "
                "this change was not written (raise lock_ttl above your slowest request)"
            )

    def _release(self, handle: PostgresHandle, stamp: float = 0.0) -> PgSteps:
        """End the lease without writing; refresh the expiry when a quarter of max_age has passed."""
        touch = self.ttl_ms if self._touch_due(stamp) else 0
        if handle.token is None:
            if touch:
                yield from self._run_sql("touch", {"n": handle.name, "ttl": touch}, handle.name)
            return
        yield from self._end_lease(handle.name, handle.token, touch)

    def _vacate(self, name: str) -> PgSteps:
        """Delete the row of ``name`` if it holds neither a session nor a lease (a lease on a name that has no
        session, ended; a revoked session's)."""
        yield from self._run_sql("vacate", {"n": name}, name)

    def _delete(self, handle: PostgresHandle) -> PgSteps:
        """Remove the session and end the lease; SessionError if the lease was lost meanwhile."""
        if handle.token is None:
            yield from self._run_sql("drop", {"n": handle.name}, handle.name)
            return
        rows = yield from self._run_sql("delete", {"n": handle.name, "v": handle.token}, handle.name)
        if not rows[0][0]:
            raise SessionError(f"session lease {handle.name!r} ran out and was taken by another holder")

    def _exists(self, handle: PostgresHandle) -> PgSteps:
        """Whether the session of ``handle`` is stored now (read again: not what the lease's read gave)."""
        rows = yield from self._run_sql("read", {"n": handle.name}, handle.name)
        return bool(rows)

    def _revoke_held(self, name: str, user: str, pending: bool = False) -> PgSteps:
        """Revoke the session of stored ``name``, whose lease another holds, if bound to ``user``: its data goes
        now, and its holder's commit writes nothing. False when it is not bound to ``user`` (or gone, unless
        ``pending``: the user's index lists a commit about to land)."""
        self._stored(name)
        for _ in range(8):  # the holder may commit between the read and the statement: judge again
            rows = yield from self._run_sql("read", {"n": name}, name)
            body = bytes(rows[0][0]) if rows else None
            if body is None and not pending:
                return False
            if body is not None:
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:
                    data = None
                if type(data) is not dict or bound_to(data) != user:
                    return False
            params = {"n": name, "b": body, "absent": body is None}
            if (yield from self._run_sql("revoke_held", params, name))[0][0]:
                return True
        raise SessionError(f"could not revoke {name!r}: it kept changing")

    # -- the per-user index -------------------------------------------------------------------

    def _user(self, user: str) -> str:
        if not self.kernels.is_valid_id(user):
            raise ValueError("invalid user hash")
        return user

    def _index_add(self, user: str, name: str, info: bytes) -> PgSteps:
        yield from self._run_sql("index_add", {"u": self._user(user), "n": name, "i": info}, name)

    def _index_remove(self, user: str, name: str) -> PgSteps:
        yield from self._run_sql("index_remove", {"u": self._user(user), "n": name}, name)

    def _index_list(self, user: str) -> PgSteps:
        """files.FileBackend.index_list on PostgreSQL: last seen from the expiry when max_age is set, else None."""
        from .users import GRACE

        rows = yield from self._run_sql("index_read", {"u": self._user(user)}, user)
        found = []
        now = time.time()
        for name, info, present, left in rows:
            try:
                entry = orjson.loads(bytes(info))
            except orjson.JSONDecodeError:
                entry = None
            if not self.kernels.is_valid_id(name) or type(entry) is not dict:  # not written by fastsession
                logger.warning("skipping a malformed entry in the user index of %s", user)
                continue
            if not present:
                if now - entry.get("added", 0) > GRACE:
                    yield from self._index_remove(user, name)
                else:
                    found.append((name, entry, None, False))
                continue
            span = self.full_ttl()
            last_seen = now - (span - left / 1000.0) if span is not None and left > 0 else None
            found.append((name, entry, last_seen, True))
        return found

    def full_ttl(self) -> float | None:
        """The lifetime, in seconds, a write gives a session (what its last use is judged from), None if none."""
        return self.max_age


# -- the sync backend ------------------------------------------------------------------------------

_pools: dict[tuple[str, int], Any] = {}
_pools_guard = threading.Lock()


def pool_for(dsn: str, max_size: int = 10) -> Any:
    """A psycopg ConnectionPool of autocommit connections to ``dsn``, made once per process (and again in a
    forked child: a parent's connections are never shared)."""
    from psycopg_pool import ConnectionPool

    key = (dsn, os.getpid())
    with _pools_guard:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                dsn,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": True},
                name="fastsession",
                timeout=POOL_WAIT,
                open=True,
            )
            _pools[key] = pool
    return pool


def close_pools() -> None:
    """Close the pools pool_for made in this process (the next pool_for makes new ones)."""
    with _pools_guard:
        made = list(_pools.values())
        _pools.clear()
    for pool in made:
        pool.close()


def conninfo_of(pool: Any) -> tuple[str, dict[str, Any]]:
    """What a pool connects with: (conninfo, connection keywords)."""
    return pool.conninfo, {k: v for k, v in (pool.kwargs or {}).items() if k != "autocommit"}


# A listener whose process has had no waiter for this long closes its connection (the next wait opens it
# again): a store made per table, or a burst long past, holds no connection of the server's for good.
LISTEN_IDLE = 10.0


# A pooled connection the server ended while it sat idle (pg_terminate_backend, a restart, a failover,
# idle_session_timeout) has its goodbye, or end of file, waiting to be read: it is discarded before
# use, and another one taken, so that a statement is never sent to a dead connection (where whether it
# ran could not be known). At most this many in a row (a pool emptied by a restart).
MAX_DROPPED = 64


def dropped(conn: Any) -> bool:
    """Whether the idle connection ``conn`` was ended by the server (one system call: a poll of its socket)."""
    if conn.closed:
        return True
    poller = select.poll()  # (not select(): a descriptor past 1023 is refused there)
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))  # an idle connection is sent nothing else


def raise_dropped() -> NoReturn:
    from psycopg import OperationalError

    raise OperationalError(f"every connection the pool gave ({MAX_DROPPED}) had been ended by the server")


class Listener:
    """The process's ears on one table's channel: a thread with one connection that LISTENs, and notes when
    a NOTIFY named each session (waiters compare that with when they last tried). One per pool and table
    (listener_for), whatever the stores' other options."""

    def __init__(self, table: str, pool: Any) -> None:
        self.table, self.pool = table, pool
        self.listening = False
        self.heard: dict[str, float] = {}
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.last_wait = 0.0

    def _listen(self) -> None:
        import psycopg

        conninfo, kwargs = conninfo_of(self.pool)
        while time.monotonic() - self.last_wait < LISTEN_IDLE:
            try:
                with psycopg.connect(conninfo, autocommit=True, **kwargs) as conn:
                    conn.execute(f'LISTEN "{self.table}"')
                    self.listening = True
                    with self.changed:
                        self.heard.clear()  # (what was missed while deaf: the waiters' polls mend it)
                    while time.monotonic() - self.last_wait < LISTEN_IDLE:  # (a waiter: just now)
                        for note in conn.notifies(timeout=1.0):
                            with self.changed:
                                if len(self.heard) > 10_000:
                                    self.heard.clear()
                                self.heard[note.payload] = time.monotonic()
                                self.changed.notify_all()
                    self.listening = False
            except Exception as exc:  # the server went away: deaf until it is back; polls go on meanwhile
                self.listening = False
                logger.info("fastsession's PostgreSQL listener lost its connection (%s); reconnecting", exc)
                time.sleep(1.0)

    def wait(self, name: str, since: float, seconds: float) -> None:
        self.last_wait = time.monotonic()
        with self.changed:  # (a listener closing for idleness now is started again)
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._listen, name="fastsession-pg-listener", daemon=True)
                self.thread.start()
        deadline = time.monotonic() + seconds
        with self.changed:
            while self.heard.get(name, 0.0) < since:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(left)


_listeners: dict[tuple[int, str], tuple[Any, Any]] = {}


def listener_for(pool: Any, table: str, make: Callable[[], Any]) -> Any:
    """The listener of ``pool`` and ``table`` in this process, made by ``make`` the first time."""
    key = (id(pool), table)
    with _pools_guard:
        found = _listeners.get(key)
        if found is None or found[0] is not pool:  # (an id reused by a later pool: a new listener)
            found = _listeners[key] = (pool, make())
    return found[1]


class PostgresBackend(SyncCalls, PostgresCore):
    """Sessions as rows, locked by leases (a psycopg ConnectionPool, each statement on a borrowed connection)."""

    def __init__(self, pool: Any, *options: Any) -> None:
        PostgresCore.__init__(self, *options)
        self.pool = pool
        self.listener: Listener = listener_for(pool, self.table, lambda: Listener(self.table, pool))

    @property
    def listening(self) -> bool:  # type: ignore[override]
        return self.listener.listening

    def _run(self, steps: PgSteps) -> Any:
        return self.kernels.run(self, steps)

    def sql(self, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        for _ in range(MAX_DROPPED):
            with self.pool.connection() as conn:
                if dropped(conn):
                    conn.close()  # (the pool discards it)
                    continue
                cursor = conn.execute(self.sql_text[statement], params)
                rows: list[tuple[Any, ...]] = cursor.fetchall() if cursor.description else []
                if not conn.autocommit:  # (a pool the app made without autocommit): never left in a transaction
                    conn.commit()
            return rows
        raise_dropped()

    sleep = staticmethod(time.sleep)

    def wait(self, name: str, since: float, seconds: float) -> None:
        self.listener.wait(name, since, seconds)


class OnPostgres(StoreCore):
    """The constructor of a store on PostgreSQL, for both faces (PostgresSessionStore, AsyncPostgresSessionStore)."""

    __slots__ = ("concurrent", "delay", "pool")
    backend_class: type = PostgresBackend

    def __init__(
        self,
        trans: Any,
        pool: Any,
        session_cookie_name: str = "SID",
        concurrent: Any = 1,
        delay: float = 1,
        *,
        timeout: float | None = None,
        lock_ttl: float = 30.0,
        max_age: float | None = None,
        table: str = TABLE,
        locking: str = "request",
        on_conflict: Resolver = "raise",
        max_size: int | None = None,
        max_lifetime: float | None = None,
        encrypt: bool = False,
        max_sessions: int | None = None,
        when_full: str = "evict",
    ) -> None:
        if isinstance(pool, str):
            pool = self.pool_for(pool)
        backend = shared_backend(self.backend_class, pool, concurrent, delay, timeout, lock_ttl, max_age, table)
        StoreCore.__init__(
            self,
            trans,
            backend,
            session_cookie_name,
            locking,
            on_conflict,
            max_size,
            max_lifetime,
            encrypt,
            max_sessions,
            when_full,
        )
        self.pool = pool
        self.concurrent = concurrent
        self.delay = delay

    pool_for = staticmethod(pool_for)


PLAIN_CONSTRUCTORS.add(OnPostgres.__init__)  # (sets slots only: a StoreFactory may copy its stores)


class PostgresSessionStore(BaseStore, OnPostgres):
    """SessionStore's facade on PostgreSQL: same methods, same Session, same errors.

    ``pool``: a psycopg_pool.ConnectionPool (autocommit connections preferred), or a DSN, for which one pool
    is made per process (``pool_for``).
    """

    __slots__ = ()


def __getattr__(name: str) -> Any:
    if name == "AsyncPostgresSessionStore":  # (its module imports this one)
        from .aio_postgres import AsyncPostgresSessionStore

        return AsyncPostgresSessionStore
    raise AttributeError(name)
