"""Redis: the same facade for apps on many hosts (``pip install "fastsession-store[redis]"``).

``RedisSessionStore(trans, client, ...)`` is SessionStore with a Redis
backend: one orjson value per session (``<prefix>{<name>}``, ``<name>``
the id's stored name, a hash of it: fastsession.names; with a TTL of
``max_age`` when set), and a lock ``<prefix>{<name>}:lock`` taken with
``SET NX PX lock_ttl`` and a random token. Commit, release and delete are
Lua scripts that act only while that token still holds the lock, so a holder
whose lock expired and was taken by another never overwrites the new
holder's data: it gets SessionError.

The braces are a Redis Cluster hash tag: every key of one session (data,
lock, and the wake-up marks ``:waiting`` and ``:wake``) hashes to the same
slot, so each script, which declares every key it touches, runs on one
node. ``client`` may be a ``redis.cluster.RedisCluster``. On a plain Redis,
a session stored by 0.1 under ``<prefix><id>`` is still read, and moved to
its new key by the first request that locks it (legacy keys).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

import orjson
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
)

from . import _kernels, resp
from ._holder import summary
from ._lock_py import CHECK_HOLDER_AFTER, CHECK_HOLDER_EVERY
from .checks import check_seconds
from .errors import LockTimeout, SessionError, SessionRevoked
from .factory import PLAIN_CONSTRUCTORS
from .leases import LeaseCore, decoded, describe_lock, holder_is_gone, holder_token
from .leases import lock_holder as lock_holder  # (re-exported: where tests and 0.2 code found it)
from .merge import Resolver
from .names import stored_name
from .record import bound_to
from .routines import SyncCalls
from .store import BaseStore, StoreCore, shared_backend

__all__ = [
    "OnRedis",
    "RedisBackend",
    "RedisCore",
    "RedisHandle",
    "RedisSessionStore",
    "data_key",
    "describe_lock",
    "lock_keys",
]

logger = logging.getLogger(__name__)

# What a failed call can raise: redis-py's errors, and the cluster client's
# own (a slot no node serves is not a RedisError). UNREACHABLE: no answer,
# so whether the command ran is unknown.
REDIS_ERRORS = (RedisError, RedisClusterException)
UNREACHABLE = (ConnectionError, TimeoutError, ClusterDownError, RedisClusterException)

FIRST_PAUSE = 0.0005  # one Redis round trip is ~50 µs on loopback
MAX_PAUSE = 0.05

# Wake-ups: a waiter whose SET NX failed marks the session ``:waiting`` (for
# WAITING_MS) and blocks on ``:wake`` (BLPOP) for its pause; every script that
# ends a lock pushes one token there while someone waits, so one waiter wakes
# at once instead of at its next poll. The list holds at most one token.
WAITING_MS = 1000
WAKE = f"""
if redis.call('EXISTS', KEYS[3]) == 1 then
  local kind = redis.call('TYPE', KEYS[4]).ok
  if kind ~= 'list' and kind ~= 'none' then redis.call('DEL', KEYS[4]) end
  redis.call('RPUSH', KEYS[4], 1)
  redis.call('LTRIM', KEYS[4], 0, 0)
  redis.call('PEXPIRE', KEYS[4], {WAITING_MS})
end
"""
# Lock, and in the same round trip read the data and its remaining TTL. A
# value of another type at the session's key fails the GET: the lock taken
# a moment before goes too (a script is not rolled back by an error).
# KEYS: lock, data, waiting[, legacy data]: a session 0.1 stored is moved
# (with its TTL; ARGV[3], max_age's, when it had none) to its new key under
# the lock just taken, looked for only when the new key holds nothing (a
# stored session costs the server no lookup of it). ARGV: token, lock TTL, data TTL ("0": none). A lock
# that already holds the token is this very call's, run before: sent again
# (ScriptCaller.SENT_UNCHECKED), it answers as the first run did.
ACQUIRE = f"""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[1]) == ARGV[1] then
  local body = redis.pcall('GET', KEYS[2])
  if not body and KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[4], KEYS[2])
    if ARGV[3] ~= '0' and redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
    body = redis.pcall('GET', KEYS[2])
  end
  if type(body) == 'table' and body.err then
    redis.call('DEL', KEYS[1])
    return body
  end
  return {{1, body, redis.call('PTTL', KEYS[2])}}
end
redis.call('SET', KEYS[3], 1, 'PX', {WAITING_MS})
return {{0}}
"""
# The scripts that end a lock act only while the token still holds it.
# KEYS: lock, data, waiting, wake. A lock revoked while held (REVOKE_HELD
# made it "R <token>") is ended by its holder's next script, which writes
# nothing and answers -1.
HELD = (
    """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  if held == 'R ' .. ARGV[1] then
    redis.call('DEL', KEYS[1], KEYS[2])
"""
    + WAKE
    + """
    return -1
  end
  return 0
end
"""
)
# Write and unlock.
COMMIT = (
    HELD
    + """
if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
"""
    + WAKE
    + """
return 1
"""
)
# Write and keep the lock (a holder that writes before its request ends).
PUT = (
    HELD
    + """
if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""
)
# Unlock without writing; refresh the data's TTL when asked.
RELEASE = (
    HELD
    + """
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
"""
    + WAKE
    + """
return 1
"""
)
DELETE = (
    HELD
    + """
redis.call('DEL', KEYS[2], KEYS[1])
"""
    + WAKE
    + """
return 1
"""
)
# Unlock only (what a request whose outcome is unknown leaves to the unlocker).
UNLOCK = (
    HELD
    + """
redis.call('DEL', KEYS[1])
"""
    + WAKE
    + """
return 1
"""
)
# A waiter's verdict on a lock (see _judge), applied only while the lock
# holds the value judged. KEYS: lock, data, waiting, wake; ARGV: the value,
# and "break" (its holder is dead) or a TTL in ms (it has none: a key that
# something other than fastsession wrote would otherwise block for good).
JUDGE = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= 'break' then
  if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return 1
end
redis.call('DEL', KEYS[1])
"""
    + WAKE
    + """
return 1
"""
)
# Revoke a session whose lock another holds, if it is still what was read
# (whose binding the caller checked): the data goes, and the lock is marked
# so that its holder's commit writes nothing. KEYS: lock, data; ARGV: body,
# and "absent" for a commit about to land (nothing must be stored yet).
REVOKE_HELD = """
local body = redis.call('GET', KEYS[2])
if ARGV[2] == 'absent' then
  if body then return 0 end
elseif body ~= ARGV[1] then return 0 end
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, 2) ~= 'R ' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('SET', KEYS[1], 'R ' .. held, 'PX', ttl)
  else redis.call('SET', KEYS[1], 'R ' .. held) end
end
redis.call('DEL', KEYS[2])
return 1
"""
# Reads and writes without a lock (concurrent=0), as scripts too: every call
# the backend makes is one named script, so the sync and async drivers are
# one line each. KEYS: data[, legacy data] (read where the session is; a
# write or drop leaves nothing at the legacy key).
READ = """
local body = redis.call('GET', KEYS[1])
if not body and KEYS[2] then return {redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])} end
return {body, redis.call('PTTL', KEYS[1])}
"""
WRITE = """
if ARGV[2] ~= '0' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 1
"""
TOUCH = """
local done = redis.call('PEXPIRE', KEYS[1], ARGV[1])
if KEYS[2] then done = done + redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return done
"""
DROP = """
return redis.call('DEL', unpack(KEYS))
"""
# The per-user index (fastsession.users): one hash per user, stored name -> entry.
INDEX_ADD = """
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"""
INDEX_REMOVE = """
return redis.call('HDEL', KEYS[1], ARGV[1])
"""
INDEX_READ = """
return redis.call('HGETALL', KEYS[1])
"""
PTTL = """
return redis.call('PTTL', KEYS[1])
"""
SCRIPTS = {
    "acquire": ACQUIRE,
    "commit": COMMIT,
    "put": PUT,
    "release": RELEASE,
    "delete": DELETE,
    "unlock": UNLOCK,
    "revoke_held": REVOKE_HELD,
    "judge": JUDGE,
    "read": READ,
    "write": WRITE,
    "touch": TOUCH,
    "drop": DROP,
    "index_add": INDEX_ADD,
    "index_remove": INDEX_REMOVE,
    "index_read": INDEX_READ,
    "pttl": PTTL,
}

# After Redis answers again, how long a token may still show up: a command sent
# before a pause (a SET NX queued in the socket) runs as soon as Redis resumes.
LATE_ARRIVAL = 1.0
RETRY_EVERY = 0.1


class RedisHandle:
    """One opened session: its keys, the lock's token (None when not locking), what was read."""

    __slots__ = ("data_key", "key", "lock_key", "read", "token")

    def __init__(self, key: str | None, data_key: str, lock_key: str, token: str | None, read: Any) -> None:
        self.key, self.data_key, self.lock_key, self.token, self.read = key, data_key, lock_key, token, read


# A Redis routine below is a generator, driven like the store's core
# (store.run, aio.arun): it yields (SCRIPT, name, keys, args) and is sent the
# reply or has the error thrown in, or yields (SLEEP, seconds), or (WAIT, key,
# seconds): BLPOP. RedisBackend makes those calls with redis-py's sync
# client; aio_redis's AsyncScripts with redis.asyncio.
SCRIPT, SLEEP, WAIT = "script", "sleep", "wait"
MIN_WAIT = 0.001  # BLPOP's timeout counts in ms; 0 would mean "forever"


def data_key(prefix: str, session_id: str) -> str:
    """The key of a session's data: its stored name (a hash of the id) in braces, a Cluster hash tag shared
    by all the session's keys."""
    return prefix + "{" + stored_name(session_id) + "}"


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's Redis Cluster client (sync or asyncio)."""
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.cluster import RedisCluster

    return isinstance(client, (RedisCluster, AsyncRedisCluster))


def lock_keys(lock_key: str) -> list[str]:
    """The keys a script that ends a lock touches, from the lock's key: lock, data, waiting, wake."""
    data_key = lock_key[: -len(":lock")]
    return [lock_key, data_key, data_key + ":waiting", data_key + ":wake"]


RedisSteps = Generator[Any, Any, Any]


class RedisCore(LeaseCore):
    """What the Redis backend sends and what the replies mean, free of I/O (shared by sync and async)."""

    kernels = _kernels.ACTIVE
    legacy = True  # also read 0.1's keys (a plain Redis; on Cluster they would be in other slots)
    max_record = 512 << 20  # Redis's largest string (proto-max-bulk-len's default)

    def __init__(
        self,
        concurrent: Any = True,
        delay: float = 1.0,
        timeout: float | None = None,
        lock_ttl: float = 30.0,
        max_age: float | None = None,
        prefix: str = "fastsession:",
    ) -> None:
        check_seconds("delay", delay)
        check_seconds("timeout", timeout, optional=True, zero=True, forever=True)
        check_seconds("lock_ttl", lock_ttl)
        check_seconds("max_age", max_age, optional=True)
        self.concurrent = bool(concurrent)
        self.delay = float(delay)
        self.timeout = timeout
        self.lock_ttl = float(lock_ttl)
        self.lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self.max_age = max_age
        self.ttl_ms = str(max(1, int(max_age * 1000))) if max_age is not None else "0"
        self.prefix = prefix
        # What may be a session id: fastsession's ids (the Django engine also accepts Django's keys).
        # Never a brace: the id is the key's hash tag.
        self.check_key = self.kernels.is_valid_id
        # Tokens whose fate is unknown (see _sweep): (lock key, token) -> [given, first answered]
        self.pending: dict[tuple[str, str], list[float]] = {}

    def _keys(self, key: str) -> tuple[str, str]:
        if not self.check_key(key):
            raise ValueError("invalid session id")
        data = data_key(self.prefix, key)
        return data, data + ":lock"

    def _stored_keys(self, name: str) -> tuple[str, str]:
        """``_keys`` from a stored name (what the user index lists) instead of an id."""
        if not self.kernels.is_valid_id(name):
            raise ValueError("invalid stored name")
        data = self.prefix + "{" + name + "}"
        return data, data + ":lock"

    def _legacy(self, key: str | None) -> list[str]:
        """0.1's key of the session, to pass after the others to a script; none on Cluster (or without an id)."""
        return [self.prefix + key] if self.legacy and key is not None else []

    def _script(self, name: str, keys: list[str], args: list[Any], token: str | None = None) -> RedisSteps:
        """One script call; a RedisError becomes SessionError (naming the script and its first key, a stored
        name: nothing an id could be made from), and a lock held with ``token`` is let go."""
        try:
            return (yield SCRIPT, name, keys, args)
        except REDIS_ERRORS as exc:
            if token is not None:
                yield from self._let_go(exc, keys[0], token)
            raise SessionError(f"Redis could not run its {name!r} script on {keys[0]!r}: {exc}") from exc
        except BaseException:  # cancelled or interrupted mid-call: the script may yet run
            if token is not None:
                self.hand_over(keys[0], token)
            raise

    def _open(self, key: str, timeout: Any = ..., stored: bool = False) -> RedisSteps:
        """Lock the session of ``key`` (when concurrent), polling while another holds it.

        ``timeout``: seconds to wait (None: forever); by default the backend's.
        ``stored``: ``key`` is a stored name, not an id.
        """
        timeout = self.timeout if timeout is ... else timeout
        data_key, lock_key = self._stored_keys(key) if stored else self._keys(key)
        if not self.concurrent:
            return RedisHandle(key, data_key, lock_key, None, None)
        token = holder_token(self.kernels)
        keys = [lock_key, data_key, data_key + ":waiting"]
        if not stored:
            keys += self._legacy(key)
        args = [token, self.lock_ttl_ms, self.ttl_ms]
        start = time.monotonic()
        max_pause = min(self.delay, MAX_PAUSE)
        pause = min(FIRST_PAUSE, max_pause)
        check_at = CHECK_HOLDER_AFTER
        while True:
            # On failure the SET NX may yet run (a paused Redis): undone then.
            reply = yield from self._script("acquire", keys, args, token)
            if reply[0] == 1:
                return RedisHandle(key, data_key, lock_key, token, (reply[1], reply[2]))
            waited = time.monotonic() - start
            if waited >= check_at or (timeout is not None and waited >= timeout):
                check_at = waited + CHECK_HOLDER_EVERY
                if (yield from self._judge(lock_key)):
                    continue  # a dead holder's lock, broken: try again at once
            if timeout is not None and waited >= timeout:
                value, pttl = yield from self._script("read", [lock_key], [])
                holder = describe_lock(value, pttl, self.lock_ttl)
                raise LockTimeout(
                    f"session lock {lock_key!r} still held after {timeout} s"
                    + (f" ({summary(holder)})" if holder else ""),
                    holder,
                )
            if timeout is not None:
                pause = min(pause, max(timeout - waited, 0.0))
            try:  # until the holder's release pushes a wake-up, or the pause is over
                yield WAIT, data_key + ":wake", max(pause, MIN_WAIT)
            except ResponseError as exc:  # (something else wrote the wake-up key: the next release mends it)
                if "WRONGTYPE" not in str(exc):
                    raise SessionError(f"Redis could not wait for the session's lock: {exc}") from exc
                yield SLEEP, pause
            except REDIS_ERRORS as exc:
                raise SessionError(f"Redis could not wait for the session's lock: {exc}") from exc
            pause = min(pause * 2, max_pause)

    def _judge(self, lock_key: str) -> RedisSteps:
        """Judge the lock another holds as the files backend judges a lockfile (_holder.is_stale); whether it
        was broken. A holder on this host, in this PID namespace, that is gone (SIGKILLed, OOM-killed) is
        broken at once; a lock without a TTL gets ``lock_ttl``."""
        value, pttl = yield from self._script("read", [lock_key], [])
        if value is None:
            return False
        verdict: Any = None
        if pttl == -1:
            verdict = self.lock_ttl_ms
        else:
            # Only a holder of this host may be judged dead: others keep their lock until its TTL.
            if holder_is_gone(value, self.lock_ttl):
                verdict = "break"
        if verdict is None:
            return False
        judged = yield from self._script("judge", lock_keys(lock_key), [value, verdict])
        return bool(judged) and verdict == "break"

    def _peek(self, key: str) -> RedisSteps:
        """Read without a lock: (a handle holding nothing, what _load gives)."""
        data_key, lock_key = self._keys(key)
        handle = RedisHandle(key, data_key, lock_key, None, None)
        return handle, (yield from self._load(handle))

    def _load(self, handle: RedisHandle, want_mtime: bool = False) -> RedisSteps:
        """(data, stored bytes, remaining TTL in ms) of the session; None when absent or corrupt."""
        if handle.read is not None:
            body, pttl = handle.read
        else:
            body, pttl = yield from self._script("read", [handle.data_key, *self._legacy(handle.key)], [])
        if body is None:
            return None
        data = decoded(body, handle.data_key, logger)
        return None if data is None else (data, body, float(pttl))

    def _save(self, handle: RedisHandle, body: bytes, ttl_ms: str | None = None, keep_lock: bool = False) -> RedisSteps:
        """Write ``body`` and release the lock (unless ``keep_lock``); SessionError if the lock was lost meanwhile.

        ``ttl_ms``: the data's TTL for this write ("0": none), by default max_age's.
        """
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        if handle.token is None:
            yield from self._script("write", [handle.data_key, *self._legacy(handle.key)], [body, ttl])
            return
        written = yield from self._script(
            "put" if keep_lock else "commit",
            lock_keys(handle.lock_key),
            [handle.token, body, ttl],
            handle.token,
        )
        if written == -1:
            raise SessionRevoked(f"session {handle.data_key!r} was revoked while this request held it: not written")
        if not written:
            raise SessionError(
                f"session lock {handle.lock_key!r} expired and was taken by another holder: "
                "this change was not written (raise lock_ttl above your slowest request)"
            )

    def _release(self, handle: RedisHandle, stamp: float = 0.0) -> RedisSteps:
        """Release without writing; refresh the TTL when a quarter of max_age has passed."""
        touch = self.ttl_ms if self._touch_due(stamp) else "0"
        if handle.token is None:
            if touch != "0":
                yield from self._script("touch", [handle.data_key, *self._legacy(handle.key)], [touch])
            return
        yield from self._script("release", lock_keys(handle.lock_key), [handle.token, touch], handle.token)

    def _delete(self, handle: RedisHandle) -> RedisSteps:
        """Remove the session and release the lock; SessionError if the lock was lost meanwhile."""
        if handle.token is None:
            yield from self._script("drop", [handle.data_key, *self._legacy(handle.key)], [])
            return
        deleted = yield from self._script("delete", lock_keys(handle.lock_key), [handle.token], handle.token)
        if not deleted:
            raise SessionError(f"session lock {handle.lock_key!r} expired and was taken by another holder")

    def _exists(self, handle: RedisHandle) -> RedisSteps:
        """Whether the session of ``handle`` is stored now (read again: not what the lock's read gave)."""
        body, _ = yield from self._script("read", [handle.data_key, *self._legacy(handle.key)], [])
        return body is not None

    def _revoke_held(self, name: str, user: str, pending: bool = False) -> RedisSteps:
        """Revoke the session of stored ``name``, whose lock another holds, if bound to ``user``: its data goes
        now, and its holder's commit writes nothing (HELD). False when it is not bound to ``user`` (or gone,
        unless ``pending``: the user's index lists a commit about to land)."""
        data_key, lock_key = self._stored_keys(name)
        for _ in range(8):  # the holder may commit between the read and the script: judge again
            body, _ = yield from self._script("read", [data_key], [])
            if body is None and not pending:
                return False
            if body is not None:
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:
                    data = None
                if type(data) is not dict or bound_to(data) != user:
                    return False
            args = [body, "present"] if body is not None else ["", "absent"]
            if (yield from self._script("revoke_held", [lock_key, data_key], args)):
                return True
        raise SessionError(f"could not revoke {data_key!r}: it kept changing")

    # -- the per-user index -------------------------------------------------------------------

    def _index_key(self, user: str) -> str:
        if not self.kernels.is_valid_id(user):
            raise ValueError("invalid user hash")
        return self.prefix + "user:{" + user + "}"

    def _index_add(self, user: str, name: str, info: bytes) -> RedisSteps:
        yield from self._script("index_add", [self._index_key(user)], [name, info])

    def _index_remove(self, user: str, name: str) -> RedisSteps:
        yield from self._script("index_remove", [self._index_key(user)], [name])

    def _index_list(self, user: str) -> RedisSteps:
        """files.FileBackend.index_list on Redis: last seen from the TTL when max_age is set, else None."""
        from .users import GRACE

        flat = yield from self._script("index_read", [self._index_key(user)], [])
        found = []
        for name_bytes, info in zip(flat[::2], flat[1::2]):
            name = name_bytes.decode("ascii", "replace")
            try:
                entry = orjson.loads(info)
            except orjson.JSONDecodeError:
                entry = None
            if not self.kernels.is_valid_id(name) or type(entry) is not dict:  # not written by fastsession
                logger.warning("skipping a malformed entry in the user index %s", self._index_key(user))
                continue
            pttl = yield from self._script("pttl", [self._stored_keys(name)[0]], [])
            now = time.time()
            if pttl == -2:  # no such key
                if now - entry.get("added", 0) > GRACE:
                    yield from self._index_remove(user, name)
                else:
                    found.append((name, entry, None, False))
                continue
            span = self.full_ttl()
            last_seen = now - (span - pttl / 1000.0) if span is not None and pttl > 0 else None
            found.append((name, entry, last_seen, True))
        return found

    def full_ttl(self) -> float | None:
        """The TTL, in seconds, a write gives a session (what its last use is judged from), None if none."""
        return self.max_age

    def _let_go(self, error: Exception, lock_key: str, token: str) -> RedisSteps:
        """After a failed call: make sure our lock, if it exists or will, does not outlive us."""
        if not isinstance(error, UNREACHABLE):
            try:  # Redis answered with an error (out of memory, ...): release now
                yield SCRIPT, "unlock", lock_keys(lock_key), [token]
                return
            except REDIS_ERRORS:
                pass
        self.hand_over(lock_key, token)  # unreachable or paused: as soon as it answers

    def hand_over(self, lock_key: str, token: str) -> None:
        """Leave a token whose fate is unknown to the sweeper, which releases it once Redis answers."""
        self.pending[(lock_key, token)] = [time.monotonic(), 0.0]
        self._start_sweeper()

    def _start_sweeper(self) -> None:  # the driver's: a thread, or a task on the event loop
        raise NotImplementedError

    def _sweep(self) -> RedisSteps:
        """Release locks whose fate is unknown, as soon as Redis answers.

        A request that timed out on a paused or unreachable Redis cannot know
        whether its SET NX (or its commit) ran: the command may sit in the socket
        and run when Redis resumes, leaving a lock that nobody would release for
        ``lock_ttl``. The sweep retries "delete the lock if it holds our token"
        until that succeeds, or until Redis has answered for LATE_ARRIVAL seconds
        without the token showing up, or until the lock expired anyway.
        """
        while self.pending:
            for (lock_key, token), times in list(self.pending.items()):
                try:
                    settled = (yield SCRIPT, "unlock", lock_keys(lock_key), [token]) != 0
                except REDIS_ERRORS:
                    settled = False  # still unreachable: try again
                else:
                    times[1] = times[1] or time.monotonic()
                now = time.monotonic()
                settled = settled or now - times[0] > self.lock_ttl  # expired by itself
                if settled or (times[1] and now - times[1] > LATE_ARRIVAL):
                    self.pending.pop((lock_key, token), None)
            yield SLEEP, RETRY_EVERY


def warn_if_evicting(memory_info: Any) -> None:
    """Warn when the server's maxmemory-policy may evict keys without a TTL (an ``allkeys-*`` policy).

    Under memory pressure such a server evicts a held lock (two requests
    then hold it: a lost update) or a session (a logout). ``noeviction``
    or a ``volatile-*`` policy never evicts what fastsession keeps without
    a TTL. ``memory_info``: what INFO memory answered (redis-py's dict, or
    the raw text).
    """
    if isinstance(memory_info, dict):
        policy = memory_info.get("maxmemory_policy")
    else:
        text = memory_info.decode("ascii", "replace") if isinstance(memory_info, bytes) else str(memory_info)
        found = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("maxmemory_policy:")]
        policy = found[0] if found else None
    if isinstance(policy, str) and policy.startswith("allkeys-"):
        logger.warning(
            "this Redis evicts any key under memory pressure (maxmemory-policy %s): session "
            "locks and sessions may vanish (a lost update, a logout); set maxmemory-policy noeviction or "
            "a volatile-* policy",
            policy,
        )


# A command as RESP, the array of bulk strings redis-py's packer makes of it (str as UTF-8, numbers as text), by
# the kernels (_resp_c; pure twin _resp_py): redis-py's packer runs its encoder per argument, a third of a call's cost.
packed: Callable[..., bytes] = _kernels.ACTIVE.packed


# Connections kept checked out between calls, at most: a burst's extras go back to the pool, so that
# the app's own commands on the same client are never refused for fastsession's parked connections.
IDLE_KEEP = 8


# The connections the script callers of one pool hold between calls: checked out of the pool (so
# counted against its max_connections, and closed by its disconnect(): client.close(), aclose()),
# at most IDLE_KEEP of them. One list per pool, shared by every backend of its client, so a backend
# made again (store.shared_backend drops a few) finds them.
_idle_lists: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def idle_list(pool: Any) -> list[Any]:
    """The idle connections of ``pool``'s script callers (made empty when first asked for)."""
    idle = _idle_lists.get(pool)
    if idle is None:
        idle = _idle_lists[pool] = []
    return idle


def checkout_args(pool: Any) -> tuple[str, ...]:
    """What ``pool.get_connection`` needs: redis-py before 5.3 requires a command name, later ones warn at one."""
    import inspect

    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    return ("EVALSHA",) if parameter is not None and parameter.default is inspect.Parameter.empty else ()


def _forget_connections_in_child() -> None:
    for idle in _idle_lists.values():
        idle.clear()  # the parent's: dropped, not closed (redis-py shuts a socket down only in its own process)


os.register_at_fork(after_in_child=_forget_connections_in_child)


def readable(sock: Any) -> bool:
    """Whether anything waits to be read on ``sock`` (at once: no waiting)."""
    try:
        return bool(select.select((sock,), (), (), 0)[0])
    except ValueError:  # a descriptor past select's FD_SETSIZE (1024): poll it
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))


class ScriptCaller:
    """The backend's scripts as EVALSHA on a connection of the client's, without redis-py's per-command
    client layer (its command dispatch, callbacks and observability hooks, most of a call's cost).

    Kept from redis-py: its connections (checked out of the client's pool, so AUTH, TLS, db, RESP
    version and timeouts are the client's), each connection's own retry policy (a connection or timeout
    error disconnects and retries, as ``execute_command`` does), its reply parser and errors. With
    redis-py's default ConnectionPool, a connection stays checked out between calls, on the pool's
    ``idle_list`` (a pop and an append: the pool's checkout, with its lock, its health probe and its
    metrics, cost as much as the rest of a call, and is paid once per connection); a waiter's BLPOP
    takes one of those too; a connection whose call failed in any way but an error reply is closed,
    never reused half-read. Other pools (blocking, Sentinel, a client cache) are used as they are,
    through get_connection and release. A script the server does not know (after a restart or SCRIPT
    FLUSH) is loaded and called again. Clients this cannot drive so (Cluster, a single-connection
    client, anything not a plain ``redis.Redis``) get redis-py's own
    ``register_script`` objects.
    """

    def __init__(self, client: Any) -> None:
        from redis import ConnectionPool, Redis

        self.client = client
        self.shas = self.digests()
        plain = type(client) is Redis and getattr(client, "connection", None) is None
        self.pool = client.connection_pool if plain else None
        self.scripts = None if plain else {name: client.register_script(source) for name, source in SCRIPTS.items()}
        own = plain and type(self.pool) is ConnectionPool and getattr(self.pool, "cache", None) is None
        self.idle = idle_list(self.pool) if own else None
        self.checkout = checkout_args(self.pool) if plain else ()

    @staticmethod
    def digests() -> dict[str, str]:
        """Each script's SHA1, the name EVALSHA calls it by."""
        import hashlib

        return {name: hashlib.sha1(source.encode("utf-8")).hexdigest() for name, source in SCRIPTS.items()}

    # Scripts sent on an idle connection without asking first whether the server closed it (a system call
    # a request): safe to send twice, so a connection found closed by the call itself is connected afresh
    # and the call made again, as the check would have had it. The acquire is each request's first call.
    SENT_UNCHECKED = frozenset({"acquire"})

    def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.pool is None:
            return self.scripts[name](keys=keys, args=args)  # type: ignore[index]
        return self._on_connection(self._evalsha, name, keys, args, unchecked=name in self.SENT_UNCHECKED)

    def blpop(self, key: str, seconds: float) -> Any:
        """A waiter's pause (BLPOP) on the scripts' connections: waiting takes no connection more from the pool."""
        if self.pool is None:
            return self.client.blpop([key], timeout=seconds)
        return self._on_connection(self._command, "BLPOP", key, seconds)

    def memory_info(self) -> Any:
        """INFO memory, on the scripts' connections (no connection more from the pool)."""
        if self.pool is None:
            return self.client.info("memory")
        return self._on_connection(self._command, "INFO", "memory")

    def _on_connection(self, send: Callable[..., Any], *args: Any, unchecked: bool = False) -> Any:
        """``send(connection, *args)`` on a connection of the pool, under the connection's retry policy.

        ``unchecked``: the call may be made twice (SENT_UNCHECKED); an idle connection is not checked first.
        """
        idle = self.idle
        if idle is None:
            pool: Any = self.pool
            connection = pool.get_connection(*self.checkout)
            try:
                return self._retried(connection, send, args)
            finally:
                pool.release(connection)
        try:
            connection = idle.pop()
        except IndexError:  # none idle: this many calls at once for the first time
            connection = self.pool.get_connection(*self.checkout)  # type: ignore[union-attr]  # connected, checked; past max_connections: refused
        else:
            # What the pool checks of a connection it hands out: anything to read on an idle one means the
            # server closed it meanwhile (or a notice came): connected afresh by the call. A call leaves
            # nothing in redis-py's own buffer (one that fails is closed), so the socket alone tells.
            sock = connection._sock
            if sock is not None:
                if sock.gettimeout():
                    resp.timed_by_the_kernel(sock)
                if not unchecked and readable(sock):
                    connection.disconnect()
        try:
            try:
                result = send(connection, *args)
            except Exception as error:  # the policy judges it (it re-raises what it does not retry)
                if unchecked and isinstance(error, ConnectionError):
                    # Perhaps closed by the server while idle, which the check would have found: connected
                    # afresh, and the call made again under the policy, as after the check.
                    connection.disconnect()
                    result = self._retried(connection, send, args)
                else:
                    result = self._retried(connection, send, args, error)
        except ResponseError:  # an error reply, read whole: the connection is as good as before
            self._put_back(idle, connection)
            raise
        except BaseException:  # anything else may leave a reply half read
            connection.disconnect()
            self._put_back(idle, connection)  # closed: connected afresh by its next call
            raise
        if getattr(connection, "should_reconnect", bool)():  # the server said it moves (redis-py 6.4's notices)
            connection.disconnect()
        if len(idle) < IDLE_KEEP:  # (_put_back's common case, without its frame)
            idle.append(connection)
        else:
            self._put_back(idle, connection)
        return result

    def _put_back(self, idle: list[Any], connection: Any) -> None:
        if len(idle) < IDLE_KEEP:
            idle.append(connection)
        else:  # a burst's extra: back to the pool, for the app's own commands (timed by Python again)
            if connection._sock is not None and connection._sock.gettimeout() is None:
                connection._sock.settimeout(connection.socket_timeout)
            self.pool.release(connection)  # type: ignore[union-attr]

    @staticmethod
    def _retried(
        connection: Any, send: Callable[..., Any], args: tuple[Any, ...], error: BaseException | None = None
    ) -> Any:
        """``send(connection, *args)`` under the connection's retry policy: a connection or timeout error disconnects and retries.

        ``error``: what a first try, made without the policy (it costs a call a few frames), raised; the
        policy is handed it as its own first try's, and judges it as it would have.
        """
        first = [error] if error is not None else []

        def attempt() -> Any:
            if first:
                raise first.pop()
            return send(connection, *args)

        return connection.retry.call_with_retry(attempt, lambda error: connection.disconnect())

    @staticmethod
    def _command(connection: Any, *command: Any) -> Any:
        return resp.through_redis_py(connection, packed(*command))

    def _evalsha(self, connection: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        command = packed("EVALSHA", self.shas[name], len(keys), *keys, *args)
        try:
            return resp.call(connection, command)
        except NoScriptError:  # not loaded on this server (yet, or any more)
            resp.call(connection, packed("SCRIPT", "LOAD", SCRIPTS[name]))
            return resp.call(connection, command)


class RedisBackend(SyncCalls, RedisCore):
    """Sessions as Redis strings, locked with SET NX PX and a token (redis-py's sync client)."""

    def __init__(self, client: Any, *options: Any) -> None:
        RedisCore.__init__(self, *options)
        self.client = client
        self.legacy = not is_cluster(client)
        self.scripts = ScriptCaller(client)
        if type(self).script is RedisBackend.script:  # a frame fewer per call (a subclass's override stays)
            self.script = self.scripts  # type: ignore[method-assign]
        self.guard = threading.Lock()  # one sweeper thread at a time
        try:
            warn_if_evicting(self.scripts.memory_info())  # once: backends are shared (store.shared_backend)
        except REDIS_ERRORS:  # (INFO refused, or no server yet: the first request says so)
            pass
        self.sweeper: threading.Thread | None = None

    def _run(self, steps: RedisSteps) -> Any:
        """Make a routine's calls on the sync client; its result."""
        return self.kernels.run(self, steps)

    def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self.scripts(name, keys, args)

    sleep = staticmethod(time.sleep)

    def wait(self, key: str, seconds: float) -> Any:
        return self.scripts.blpop(key, seconds)

    def _start_sweeper(self) -> None:
        with self.guard:
            if self.sweeper is None or not self.sweeper.is_alive():  # (one that died of an error is replaced)
                self.sweeper = threading.Thread(target=self._run_sweep, name="fastsession-redis-unlocker", daemon=True)
                self.sweeper.start()

    def _run_sweep(self) -> None:
        try:
            while True:
                self._run(self._sweep())
                with self.guard:  # a token handed over meanwhile is swept by this thread
                    if not self.pending:
                        self.sweeper = None
                        return
        except Exception:  # never silently: the next hand-over starts a new sweeper
            logger.exception("the Redis unlocker stopped; the next hand-over starts another")


class OnRedis(StoreCore):
    """The constructor of a store on Redis, for both faces (RedisSessionStore, aio.AsyncRedisSessionStore)."""

    __slots__ = ("client", "concurrent", "delay")
    backend_class: type = RedisBackend

    def __init__(
        self,
        trans: Any,
        client: Any,
        session_cookie_name: str = "SID",
        concurrent: Any = 1,
        delay: float = 1,
        *,
        timeout: float | None = None,
        lock_ttl: float = 30.0,
        max_age: float | None = None,
        prefix: str = "fastsession:",
        locking: str = "request",
        on_conflict: Resolver = "raise",
        max_size: int | None = None,
        max_lifetime: float | None = None,
        encrypt: bool = False,
        max_sessions: int | None = None,
        when_full: str = "evict",
    ) -> None:
        backend = shared_backend(self.backend_class, client, concurrent, delay, timeout, lock_ttl, max_age, prefix)
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
        self.client = client
        self.concurrent = concurrent
        self.delay = delay


PLAIN_CONSTRUCTORS.add(OnRedis.__init__)  # (sets slots only: a StoreFactory may copy its stores)


class RedisSessionStore(BaseStore, OnRedis):
    """SessionStore's facade on Redis: same methods, same Session, same errors."""

    __slots__ = ()
