"""Leases: locks that a server keeps (Redis, PostgreSQL) as a value naming a token and its holder.

A lease's value is ``<token> <holder line>``: the token, unique to one
acquisition, is what its holder's release and commit must present; the holder
line (fastsession._holder's, without its magic) says who holds it, for errors,
``fastsession locks``, and a waiter on the holder's host, which may break the
lease of a holder that is gone. A lease revoked while held reads
``R <value>``: its holder's next call ends it and writes nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Generator
from typing import Any

import orjson

from . import _holder, _kernels
from ._holder import MAGIC, describe, holder_record, is_stale

__all__ = ["LeaseCore", "describe_lock", "holder_is_gone", "holder_token", "lock_holder"]

# This process's lock tokens: a random prefix, drawn once per process (again in a forked child), and a count.
# A token only has to differ from every other holder's (whoever can read it can write to the server anyway), so a
# lock costs no random draw, which is a system call (getrandom).
_tokens: list[Any] = []


def _forget_tokens_in_child() -> None:
    _tokens.clear()  # a child counting on from the parent's prefix would hold the parent's tokens


os.register_at_fork(after_in_child=_forget_tokens_in_child)


def holder_token(kernels: _kernels.KernelSet) -> str:
    """A lock's value: a token unique to this lock, then who holds it (the lockfiles' holder line, for logs
    and errors)."""
    if not _tokens:
        holder = holder_record()[len(MAGIC) : -1].decode("ascii", "replace")
        _tokens[:] = [kernels.new_session_id() + ".", itertools.count(1), " " + holder]
    prefix, count, holder = _tokens
    return f"{prefix}{next(count):x}{holder}"


def lock_holder(value: Any) -> bytes:
    """The holder line (without its magic) a lock's value carries after its token, for _holder's judges."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = text[2:] if text.startswith("R ") else text  # revoked while held: judged by the same holder
    return text.partition(" ")[2].encode("ascii", "replace")


def describe_lock(value: Any, pttl: int, lock_ttl: float) -> dict[str, Any] | None:
    """_holder.describe of a lock's value and remaining TTL; None when there is no lock."""
    if value is None:
        return None
    identity = lock_holder(value)
    age = max(lock_ttl - max(pttl, 0) / 1000.0, 0.0)
    return describe(MAGIC + identity + b"\n", age)


def holder_is_gone(value: Any, lock_ttl: float) -> bool:
    """Whether the lease ``value`` is held by a process of this host (and PID namespace) that is gone
    (SIGKILLed, OOM-killed): its lease may be broken at once. A holder elsewhere keeps it until it expires."""
    identity = lock_holder(value)
    return identity.split(b" ")[0] == _holder.HOST and is_stale(MAGIC + identity + b"\n", 0.0, lock_ttl)


class LeaseCore:
    """The rules the server backends' cores (redis.RedisCore, postgres.PostgresCore) share, free of I/O.

    A subclass gives ``_open`` (by id, or ``stored=True`` by stored name), ``_load`` and ``_release`` as
    routines, and ``max_age`` and ``ttl_ms``.
    """

    max_age: float | None
    ttl_ms: Any  # milliseconds a stored session lives (Redis: the text of its TTL)

    def _open(self, key: str, timeout: Any = ..., stored: bool = False) -> Generator[Any, Any, Any]:
        raise NotImplementedError

    def _load(self, handle: Any, want_mtime: bool = False) -> Generator[Any, Any, Any]:
        raise NotImplementedError

    def _release(self, handle: Any, stamp: float = 0.0) -> Generator[Any, Any, Any]:
        raise NotImplementedError

    def _open_load(self, key: str) -> Generator[Any, Any, Any]:
        """_open then _load; the lease is let go if the read fails."""
        handle = yield from self._open(key)
        try:
            return handle, (yield from self._load(handle))
        except BaseException:
            yield from self._release(handle)
            raise

    def _open_stored(self, name: str, timeout: Any = ...) -> Generator[Any, Any, Any]:
        """``_open`` by stored name; its handle names no id (key None)."""
        handle = yield from self._open(name, timeout, stored=True)
        handle.key = None
        return handle

    def _touch_due(self, stamp: float) -> bool:
        """Whether a session read with ``stamp`` ms left to live is due for a new expiry at its release: a
        quarter of max_age has passed since it was written (so sliding expiry costs no write per request)."""
        ttl = int(self.ttl_ms)
        return self.max_age is not None and stamp > 0 and ttl - stamp > ttl / 4


def decoded(body: bytes, name: str, log: logging.Logger) -> dict[str, Any] | None:
    """The session a server stored as ``body``; None, logged (to the backend's own ``log``) with its ``name``,
    when it is not a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        data = exc
    if type(data) is not dict:
        log.warning("ignoring corrupt session %s: %s", name, data)
        return None
    return data
