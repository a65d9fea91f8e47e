"""Redis: the same facade for apps on many hosts (``pip install fastsession[redis]``).

``RedisSessionStore(trans, client, ...)`` is SessionStore with a Redis
backend: one orjson value per session (``<prefix><id>``, with a TTL of
``max_age`` when set), and a lock ``<prefix><id>:lock`` taken with
``SET NX PX lock_ttl`` and a random token. Commit, release and delete are
Lua scripts that act only while that token still holds the lock, so a holder
whose lock expired and was taken by another never overwrites the new
holder's data: it gets SessionError. (The scripts touch both keys, so Redis
Cluster, which would put them in different slots, is not supported.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import orjson
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from . import _kernels
from .errors import LockTimeout, SessionError
from .store import BaseStore, shared_backend

logger = logging.getLogger("fastsession")

FIRST_PAUSE = 0.0005  # one Redis round trip is ~50 µs on loopback
MAX_PAUSE = 0.05

# Lock, and in the same round trip read the data and its remaining TTL. A
# value of another type at the session's key fails the GET: the lock taken
# a moment before goes too (a script is not rolled back by an error).
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local body = redis.pcall('GET', KEYS[2])
  if type(body) == 'table' and body.err then
    redis.call('DEL', KEYS[1])
    return body
  end
  return {1, body, redis.call('PTTL', KEYS[2])}
end
return {0}
"""
# Write and unlock, only while the token still holds the lock.
COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
return 1
"""
# Unlock without writing; refresh the data's TTL when asked.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
return 1
"""
DELETE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[1])
return 1
"""
# Unlock only (what a request whose outcome is unknown leaves to the unlocker).
UNLOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
# After Redis answers again, how long a token may still show up: a command sent
# before a pause (a SET NX queued in the socket) runs as soon as Redis resumes.
LATE_ARRIVAL = 1.0
RETRY_EVERY = 0.1


class Unlocker:
    """Releases locks whose fate is unknown, in a background thread, as soon as Redis answers.

    A request that timed out on a paused or unreachable Redis cannot know
    whether its SET NX (or its commit) ran: the command may sit in the socket
    and run when Redis resumes, leaving a lock that nobody would release for
    ``lock_ttl``. The unlocker retries "delete the lock if it holds our
    token" until that succeeds, or until Redis has answered for LATE_ARRIVAL
    seconds without the token showing up, or until the lock expired anyway.
    """

    def __init__(self, client: Any, lock_ttl: float) -> None:
        self.unlock = client.register_script(UNLOCK)
        self.lock_ttl = lock_ttl
        self.pending: Dict[Tuple[str, str], List[float]] = {}  # (lock key, token) -> [given, answered]
        self.guard = threading.Lock()
        self.thread: Optional[threading.Thread] = None

    def add(self, lock_key: str, token: str) -> None:
        with self.guard:
            self.pending[(lock_key, token)] = [time.monotonic(), 0.0]
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="fastsession-redis-unlocker", daemon=True)
                self.thread.start()

    def run(self) -> None:
        while True:
            with self.guard:
                if not self.pending:
                    self.thread = None
                    return
                work = list(self.pending.items())
            for (lock_key, token), (given, answered) in work:
                if self.settled(lock_key, token, given, answered):
                    with self.guard:
                        self.pending.pop((lock_key, token), None)
            time.sleep(RETRY_EVERY)

    def settled(self, lock_key: str, token: str, given: float, answered: float) -> bool:
        now = time.monotonic()
        if now - given > self.lock_ttl:
            return True  # expired by itself
        try:
            if self.unlock(keys=[lock_key], args=[token]):
                return True
        except RedisError:
            return False  # still unreachable: try again
        if not answered:
            self.pending[(lock_key, token)][1] = answered = now
        return now - answered > LATE_ARRIVAL


class RedisHandle:
    """One opened session: its keys, the lock's token (None when not locking), what was read."""

    __slots__ = ("key", "data_key", "lock_key", "token", "read")

    def __init__(self, key: str, data_key: str, lock_key: str, token: Optional[str], read: Any) -> None:
        self.key, self.data_key, self.lock_key, self.token, self.read = key, data_key, lock_key, token, read


class RedisBackend:
    """Sessions as Redis strings, locked with SET NX PX and a token."""

    kernels = _kernels.ACTIVE

    def __init__(self, client: Any, concurrent: Any = True, delay: float = 1.0, timeout: Optional[float] = None,
                 lock_ttl: float = 30.0, max_age: Optional[float] = None, prefix: str = "fastsession:") -> None:
        if delay <= 0 or lock_ttl <= 0:
            raise ValueError("delay and lock_ttl must be positive")
        self.client = client
        self.concurrent = bool(concurrent)
        self.delay = float(delay)
        self.timeout = timeout
        self.lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self.max_age = max_age
        self.ttl_ms = str(max(1, int(max_age * 1000))) if max_age is not None else "0"
        self.prefix = prefix
        self._acquire = client.register_script(ACQUIRE)
        self._commit = client.register_script(COMMIT)
        self._release = client.register_script(RELEASE)
        self._delete = client.register_script(DELETE)
        self.unlocker = Unlocker(client, lock_ttl)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RedisError as exc:
            raise SessionError(f"Redis could not {what}: {exc}") from exc

    def _keys(self, key: str) -> Tuple[str, str]:
        if not self.kernels.is_valid_id(key):
            raise ValueError(f"invalid session id {key!r}")
        data_key = self.prefix + key
        return data_key, data_key + ":lock"

    def open(self, key: str) -> RedisHandle:
        """Lock the session of ``key`` (when concurrent), polling while another holds it."""
        data_key, lock_key = self._keys(key)
        if not self.concurrent:
            return RedisHandle(key, data_key, lock_key, None, None)
        token = self.kernels.new_session_id()
        keys, args = [lock_key, data_key], [token, self.lock_ttl_ms]
        start = time.monotonic()
        max_pause = min(self.delay, MAX_PAUSE)
        pause = min(FIRST_PAUSE, max_pause)
        while True:
            # On failure the SET NX may yet run (a paused Redis): undone then.
            reply = self._call_holding("lock the session", self._acquire, lock_key, token, keys=keys, args=args)
            if reply[0] == 1:
                return RedisHandle(key, data_key, lock_key, token, (reply[1], reply[2]))
            waited = time.monotonic() - start
            if self.timeout is not None and waited >= self.timeout:
                raise LockTimeout(f"session lock {lock_key!r} still held after {self.timeout} s")
            if self.timeout is not None:
                pause = min(pause, max(self.timeout - waited, 0.0))
            time.sleep(pause)
            pause = min(pause * 2, max_pause)

    def load(self, handle: RedisHandle, want_mtime: bool = False) -> Optional[Tuple[dict, bytes, float]]:
        """(data, stored bytes, remaining TTL in ms) of the session; None when absent or corrupt."""
        if handle.read is not None:
            body, pttl = handle.read
        else:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(handle.data_key).pttl(handle.data_key)
            body, pttl = self._call("read the session", pipe.execute)
        if body is None:
            return None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            data = exc
        if type(data) is not dict:
            logger.warning("fastsession: ignoring corrupt session %s: %s", handle.data_key, data)
            return None
        return data, body, float(pttl)

    def save(self, handle: RedisHandle, body: bytes) -> None:
        """Write ``body`` and release the lock; SessionError if the lock was lost meanwhile."""
        if handle.token is None:
            px = {"px": int(self.ttl_ms)} if self.ttl_ms != "0" else {}
            self._call("write the session", self.client.set, handle.data_key, body, **px)
            return
        written = self._call_holding("write the session", self._commit, handle.lock_key, handle.token,
                                     keys=[handle.lock_key, handle.data_key], args=[handle.token, body, self.ttl_ms])
        if not written:
            raise SessionError(
                f"session lock {handle.lock_key!r} expired and was taken by another holder: "
                "this change was not written (raise lock_ttl above your slowest request)"
            )

    def release(self, handle: RedisHandle, stamp: float = 0.0) -> None:
        """Release without writing; refresh the TTL when a quarter of max_age has passed."""
        touch = "0"
        if self.max_age is not None and stamp > 0 and int(self.ttl_ms) - stamp > int(self.ttl_ms) / 4:
            touch = self.ttl_ms
        if handle.token is None:
            if touch != "0":
                self._call("refresh the session", self.client.pexpire, handle.data_key, int(touch))
            return
        self._call_holding("unlock the session", self._release, handle.lock_key, handle.token,
                           keys=[handle.lock_key, handle.data_key], args=[handle.token, touch])

    def delete(self, handle: RedisHandle) -> None:
        """Remove the session and release the lock; SessionError if the lock was lost meanwhile."""
        if handle.token is None:
            self._call("delete the session", self.client.delete, handle.data_key)
            return
        deleted = self._call_holding("delete the session", self._delete, handle.lock_key, handle.token,
                                     keys=[handle.lock_key, handle.data_key], args=[handle.token])
        if not deleted:
            raise SessionError(f"session lock {handle.lock_key!r} expired and was taken by another holder")

    def _call_holding(self, what: str, function: Any, lock_key: str, token: str, **kwargs: Any) -> Any:
        """_call for a script run under our token: if it fails, the lock does not outlive us."""
        try:
            return self._call(what, function, **kwargs)
        except SessionError as exc:
            self._let_go(exc, lock_key, token)
            raise

    def _let_go(self, error: SessionError, lock_key: str, token: str) -> None:
        """After a failed call: make sure our lock, if it exists or will, does not outlive us."""
        if isinstance(error.__cause__, (ConnectionError, TimeoutError)):
            self.unlocker.add(lock_key, token)  # unreachable or paused: as soon as it answers
            return
        try:  # Redis answered with an error (out of memory, ...): release now
            self.unlocker.unlock(keys=[lock_key], args=[token])
        except RedisError:
            self.unlocker.add(lock_key, token)


class RedisSessionStore(BaseStore):
    """SessionStore's facade on Redis: same methods, same Session, same errors."""

    __slots__ = ("client", "concurrent", "delay")
    backend_class = RedisBackend

    def __init__(
        self,
        trans: Any,
        client: Any,
        session_cookie_name: str = "SID",
        concurrent: Any = 1,
        delay: float = 1,
        *,
        timeout: Optional[float] = None,
        lock_ttl: float = 30.0,
        max_age: Optional[float] = None,
        prefix: str = "fastsession:",
    ) -> None:
        backend = shared_backend(self.backend_class, client, concurrent, delay, timeout, lock_ttl, max_age, prefix)
        BaseStore.__init__(self, trans, backend, session_cookie_name)
        self.client = client
        self.concurrent = concurrent
        self.delay = delay
