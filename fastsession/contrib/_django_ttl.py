"""The Django engine's calls on a server backend whose sessions expire by themselves (Redis, PostgreSQL).

The engine (fastsession.contrib.django) makes a few calls of the files
backend that a server backend does not have (``unlocked``, ``write``,
``remove``) and others with a TTL (``save``). This mixin gives them to
DjangoRedis and DjangoPostgres, which say how a handle without a lock is
made (``unlocked``) and how a TTL is passed (``ttl_arg``). Expiry is the
server's: every save sets the data's TTL to the session's expiry age, as
Django's cache backend does, so a session that is still there has not
expired (its "modified" time reads as now).
"""

from __future__ import annotations

import time
from typing import Any


class ExpiresByTTL:
    """Mixed in before a RedisBackend or PostgresBackend (whose routines it drives)."""

    _run: Any
    _open: Any
    _load: Any
    _save: Any
    delete: Any

    def full_ttl(self) -> float | None:
        """SESSION_COOKIE_AGE: each save's TTL is the session's expiry age, and that is it unless set_expiry
        gave the session another (then its last use is judged as if it had this one)."""
        from django.conf import settings

        return float(settings.SESSION_COOKIE_AGE)

    @staticmethod
    def ttl_arg(seconds: float | None) -> Any:  # pragma: no cover (each backend says)
        raise NotImplementedError

    def open(self, key: str, timeout: Any = ...) -> Any:
        return self._run(self._open(key, timeout))

    def load(self, handle: Any, want_mtime: bool = False) -> tuple[dict[str, Any], bytes, float] | None:
        loaded = self._run(self._load(handle))
        handle.read = None  # what the lock read is fresh once: read again next time
        return None if loaded is None else (loaded[0], loaded[1], time.time())

    def save(self, handle: Any, body: bytes, ttl: float | None = None) -> None:
        self._run(self._save(handle, body, self.ttl_arg(ttl)))

    def write(self, handle: Any, body: bytes, ttl: float | None = None) -> None:
        """Write and keep the lock (the middleware holds it until the request ends)."""
        self._run(self._save(handle, body, self.ttl_arg(ttl), keep_lock=handle.token is not None))

    def remove(self, handle: Any) -> None:
        self.delete(handle)  # data and lock: the request does not write this key again (Django cycles it)

    def clear_expired(self) -> None:
        """What ``clearsessions`` asks of the server: nothing, unless it keeps expired sessions until a gc."""
