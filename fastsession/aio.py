"""The async face: the same stores for asyncio apps (ASGI, Starlette, FastAPI, Django's async path).

``AsyncSessionStore`` and ``AsyncRedisSessionStore`` drive the very core the
sync stores drive (``store.StoreCore``): the same decisions, the same
sessions on disk and in Redis, so a sync and an async process share a
directory and exclude each other. Only the I/O differs:

- Files: a system call on a local disk costs microseconds and a hop to a
  thread tens of them, so calls run inline on the event loop. When
  ``SLOW_STREAK`` calls in a row block the loop longer than ``SLOW_CALL``
  (a slow or network disk), this backend's calls go to a worker thread for
  the next ``OFFLOAD_FOR`` seconds. A taken lock is never waited for in a
  thread: the waiter tries again between pauses on the loop (woken at once
  when the lock is released, by this process or another: fastsession._wake),
  so the holder and every other request on the loop run meanwhile.
- Redis: ``redis.asyncio``, with the sync backend's scripts and logic
  (``redis.RedisCore``).

Cancellation (a client that disconnects, ``asyncio.wait_for``) is safe at
every await: a lock taken meanwhile is released, and ``close()`` and
``rollback()`` run to their end even when cancelled, twice or more, before
re-raising the cancellation.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
import time
from collections.abc import Awaitable, Coroutine
from types import CoroutineType
from typing import Any, Callable, Literal, TypeVar, overload

from . import _wake
from .files import FileBackend
from .session import Session
from .store import (
    DELETE,
    OPEN,
    OPEN_LOAD,
    OPEN_STORED,
    RELEASE,
    SAVE,
    OnFiles,
    Steps,
    StoreCore,
    T,
    _dropped_unclosed,
    _holds_locks,
    run,
)
from .users import UserSession, chosen_cap

__all__ = [
    "AsyncBaseStore",
    "AsyncSessionStore",
    "arun",
    "to_completion",
]  # (and AsyncRedisSessionStore, with redis-py)

logger = logging.getLogger(__name__)
A = TypeVar("A", bound="AsyncBaseStore")  # a store's own class, kept by ``async with``

# Measured on tmpfs and on this project's ext4 (README, "Async"): a lock, a
# read or a commit takes 5-400 µs inline; a thread hop adds 30-80 µs. One
# slow call is a hiccup (the process was preempted); SLOW_STREAK in a row is
# a slow disk.
SLOW_CALL = 0.001
SLOW_STREAK = 3
OFFLOAD_FOR = 10.0


def _thread_switches() -> int:
    """The voluntary context switches of this thread so far (it blocked: on I/O, a lock, a sleep)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


# Where the kernel counts them per thread (Linux); elsewhere a slow call is judged by time alone.
voluntary_switches: Callable[[], int] | None = _thread_switches if hasattr(resource, "RUSAGE_THREAD") else None


# What a backend's ``now`` answers for a call it cannot make at once: the
# driver then awaits ``backend.call`` (a taken lock, a thread, a Redis reply).
PENDING: Any = object()

# The calls that end a lock (their first argument is its handle): they wake this process's next waiter.
UNLOCKING = (SAVE, RELEASE, DELETE)


async def arun(
    backend: Any, steps: Steps[T], now: Callable[[tuple[Any, ...]], Any] | None = None, first: Any = None
) -> T:
    """``store.run`` for the async face: each call made at once when the backend can, else awaited.

    ``first``: the first call, when the caller already took it from ``steps``.
    """
    now = now or backend.now
    call = first
    try:
        if call is None:
            call = next(steps)
        while True:
            try:
                result = now(call)
                if result is PENDING:  # a wait, a thread, a round trip
                    result = await backend.call(call)
            except BaseException as exc:  # the routine's to handle: release, re-raise
                call = steps.throw(exc)
                continue
            call = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # what the routine returned: its T


async def to_completion(work: Awaitable[Any]) -> Any:
    """Await ``work`` to its end even when the caller is cancelled meanwhile, then re-raise that."""
    future = asyncio.ensure_future(work)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = cancelled or not future.done()
    if cancelled:
        future.add_done_callback(_log_unseen)
        raise asyncio.CancelledError
    return future.result()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _log_unseen(future: asyncio.Future[Any]) -> None:
    """The error of cleanup whose caller was cancelled: nobody else will see it."""
    if not future.cancelled() and future.exception() is not None:
        logger.error("cleanup after a cancelled request failed", exc_info=future.exception())


class AsyncFiles:
    """A FileBackend driven from an event loop: inline while it is fast, in a thread when it is not."""

    def __init__(self, files: FileBackend) -> None:
        self.files = files
        self.kernels = files.kernels
        self.max_record = files.max_record
        self.offloaded_until = 0.0  # monotonic time until which calls go to a thread
        self.slow_calls = 0  # slow inline calls in a row
        # Waiters of this process for a lockfile, first come first woken: a
        # release made here wakes the next at once instead of at its next poll.
        self.waiters: dict[bytes, collections.deque[asyncio.Future[None]]] = {}

    def offloaded(self) -> bool:
        return self.offloaded_until > 0.0 and time.monotonic() < self.offloaded_until

    def now(self, step: tuple[Any, ...]) -> Any:
        """The call made at once, on the loop (PENDING while offloaded, or for a lock someone holds)."""
        if self.offloaded_until and self.offloaded():
            return PENDING
        return self.now_inline(step)

    def now_inline(self, step: tuple[Any, ...]) -> Any:
        """``now``, offloaded or not (cleanup begun inline stays inline: nothing can cancel it midway)."""
        name = step[0]
        if name == OPEN_STORED:
            return PENDING  # a revocation may wait for a request's lock: in a thread (see call)
        try:
            if name == OPEN or name == OPEN_LOAD:
                opened = (
                    self.inline(self.files.try_open, step[1])
                    if name == OPEN
                    else self.inline(self.files.open_load, step[1], False)  # (wait=False)
                )
                return PENDING if opened is None else opened
            return self.inline(getattr(self.files, name), *step[1:])
        finally:
            if self.waiters and name in UNLOCKING:
                self._wake(step[1][1])

    async def call(self, step: tuple[Any, ...]) -> Any:
        """A call ``now`` could not make: a lock to wait for, or a call for a worker thread."""
        name = step[0]
        if name == OPEN_STORED:  # rare (revoke): waits in a thread; cancelled, the lock it gets is let go
            return await self._in_thread(self.files.open_stored, *step[1:], undo=self.files.release)
        if name == OPEN or name == OPEN_LOAD:
            handle = await self.open(step[1], tried=not self.offloaded())
            if name == OPEN:
                return handle
            if not self.offloaded():
                return handle, self.inline(self.files.load_or_release, handle)
            return handle, await self._in_thread(
                self.files.load_or_release, handle, undo=lambda _: self.files.release(handle)
            )
        try:
            return await self.blocking(getattr(self.files, name), *step[1:])
        finally:
            if self.waiters and name in UNLOCKING:
                self._wake(step[1][1])

    async def blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``: inline, or in a worker thread while this backend is offloaded."""
        if not self.offloaded():
            return self.inline(function, *args)
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def inline(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the event loop, timed: a slow one offloads the calls after it.

        After a slow call, the next ones also count the thread's voluntary context switches: a call
        slow without one never waited for the disk (the process was preempted, on a busy CPU).
        """
        count = voluntary_switches if self.slow_calls > 0 else None
        switches = count() if count is not None else 0
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            took = time.perf_counter() - started
            self._note(took, count() - switches if count is not None else None)

    def _note(self, took: float, waited: int | None = None) -> None:
        """Count a slow inline call; SLOW_STREAK of them in a row send calls to a thread for a while.

        ``waited``: the voluntary context switches during the call, when counted (0: only preempted).
        """
        if took <= SLOW_CALL or waited == 0:
            self.slow_calls = 0
            return
        self.slow_calls += 1
        if self.slow_calls >= SLOW_STREAK:
            self.slow_calls = 0
            logger.info(
                "session file calls blocked the event loop %d times in a row (the last "
                "%.1f ms); they go to a thread for %.0f s",
                SLOW_STREAK,
                took * 1000,
                OFFLOAD_FOR,
            )
            self.offloaded_until = time.monotonic() + OFFLOAD_FOR

    async def open(self, key: str, tried: bool = False) -> Any:
        """Lock the session of ``key``, waiting on the event loop (never in a thread) while another holds it.

        ``tried``: a first try just found it taken.
        """
        if not tried:
            handle = await self._try_open(key)
            if handle is not None:
                return handle
        waits = self.files.waits(key)
        lock_path = self.files.path(key) + b".lock"
        loop = asyncio.get_running_loop()
        # A release by another process wakes this waiter too (its thread calls back into the loop).
        subscription = _wake.subscribe(lock_path, lambda: loop.call_soon_threadsafe(self._wake, lock_path))
        try:
            while True:
                pause = await self.blocking(next, waits)  # breaks a stale lock, raises LockTimeout
                if pause:
                    await self._pause(lock_path, pause)
                handle = await self._try_open(key)
                if handle is not None:
                    return handle
        finally:
            if subscription is not None:
                subscription.close()

    async def _pause(self, lock_path: bytes, seconds: float) -> None:
        """Sleep ``seconds``, or less if a holder in this process releases ``lock_path`` meanwhile."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()
        timer = loop.call_later(seconds, _set_done, woken)
        queue = self.waiters.setdefault(lock_path, collections.deque())
        queue.append(woken)
        try:
            await woken
        finally:
            timer.cancel()
            try:
                queue.remove(woken)
            except ValueError:  # woken: _wake took it off
                pass
            if not queue and self.waiters.get(lock_path) is queue:
                del self.waiters[lock_path]

    def _wake(self, lock_path: bytes) -> None:
        queue = self.waiters.get(lock_path)
        while queue:
            woken = queue.popleft()
            if not woken.done():
                woken.set_result(None)
                return

    async def _try_open(self, key: str) -> Any:
        if not self.offloaded():
            return self.inline(self.files.try_open, key)
        return await self._in_thread(
            self.files.try_open,
            key,
            undo=lambda handle: handle is not None and self.files.release(handle),  # type: ignore[func-returns-value]
        )

    @staticmethod
    async def _in_thread(function: Callable[..., Any], *args: Any, undo: Callable[[Any], Any]) -> Any:
        """``function(*args)`` in a worker thread; cancelled meanwhile, ``undo(its result)`` once it is done.

        (A lock the thread takes or holds after the cancellation must not outlive it.)
        """
        future = asyncio.get_running_loop().run_in_executor(None, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(
                lambda done: done.cancelled() or done.exception() is not None or undo(done.result())
            )
            raise

    async def finish(self, steps: Steps[Any]) -> Any:
        """Drive cleanup (close, rollback) to its end whatever cancellation the caller meets."""
        if not self.offloaded():
            # Inline calls never yield to the loop, so nothing can cancel them
            # midway; only a wait for another holder's lock (expiring a session
            # not opened) can be cancelled, and it holds nothing then.
            return await arun(self, steps, self.now_inline)
        return await to_completion(asyncio.get_running_loop().run_in_executor(None, run, self.files, steps))


class AsyncBaseStore(StoreCore):
    """The async face of the facade: every method that may touch storage is awaited."""

    __slots__ = ()

    @overload
    async def get_session(self, create: Literal[True, 1]) -> Session: ...
    @overload
    async def get_session(self, create: Any) -> Session | None: ...

    async def get_session(self, create: Any) -> Session | None:
        """The session of this transaction; a new one with a fresh id when ``create``, else None."""
        session = self._session
        if session is not None:
            return session
        backend = self.backend
        files = self._inline_files()
        if files is not None:
            # The common request's own path, inline and timed like any inline call; a lock someone holds is
            # left to the core, which waits on the loop.
            found: Any = backend.inline(files.kernels.open_request, self, create, files)
            if found is not NotImplemented:
                opened: Session | None = await found if type(found) is CoroutineType else found  # (_held_open's)
                return opened
        return await arun(backend, self._do_get_session(create))

    def _inline_files(self) -> FileBackend | None:
        """The FileBackend whose calls run inline on the loop now (the request path's), or None: not on files, or
        calls go to a thread."""
        backend = self.backend
        files: FileBackend | None = getattr(backend, "files", None)
        return None if files is None or (backend.offloaded_until and backend.offloaded()) else files

    def _held_open(
        self, session_id: str, create: Any, handle: Any, loaded: tuple[dict[str, Any], bytes, float]
    ) -> Coroutine[Any, Any, Session | None]:
        """The request path's hand-over (see BaseStore._held_open), to be awaited: the core's rest on the loop."""
        return arun(self.backend, self._do_opened(session_id, create, True, handle, loaded))

    async def expire_session(self) -> None:  # type: ignore[override]  # the async face awaits it
        """Mark the session named by the cookie (and the one in hand) for removal at close()."""
        StoreCore.expire_session(self)

    async def close(self) -> None:
        """Commit: write back if changed, release the lock, carry out a pending expiry."""
        if self._closed:
            return
        backend = self.backend
        files = self._inline_files()
        if files is not None:
            handle = self._handle
            try:
                if backend.inline(files.kernels.close_request, self, files) is not NotImplemented:
                    return
            finally:
                if backend.waiters and handle is not None and self._handle is None:  # the lock went: next waiter
                    backend._wake(handle[1])
        await backend.finish(self._do_close())

    async def rollback(self) -> None:
        """Release every lock and write nothing."""
        if not self._closed:
            await self.backend.finish(self._do_rollback())

    async def regenerate_id(self) -> str:
        """Move the session's data to a fresh id (after login); the old id is deleted at close()."""
        return await arun(self.backend, self._do_regenerate_id())

    async def bind_user(
        self, user_id: str | None, *, max_sessions: Any = ..., when_full: Any = ..., **metadata: Any
    ) -> None:
        cap = chosen_cap(self.cap, max_sessions, when_full)
        await arun(self.backend, self._do_bind_user(user_id, metadata, cap))

    async def sessions_of(self, user_id: str) -> list[UserSession]:
        return await arun(self.backend, self._do_sessions_of(user_id))

    async def revoke(self, entry: UserSession) -> bool:
        return await arun(self.backend, self._do_revoke(entry))

    async def revoke_all(self, user_id: str, keep: Any = None) -> int:
        return await arun(self.backend, self._do_revoke_all(user_id, keep))

    async def response_cookie(self) -> str | None:
        """What the session cookie must become as response headers go out (see BaseStore.response_cookie)."""
        cookie = self._settled_cookie()  # (most adapters ask after close(), or hold a stored session: nothing to run)
        if cookie is False:
            settled: str | None = await self.backend.finish(self._do_response_cookie())
            return settled
        return cookie

    async def _expire_session(self, session_id: str) -> None:
        """Delete that session now, waiting (when concurrent) for whoever is editing it."""
        await arun(self.backend, self._do_expire(session_id))

    async def _get_session(self, session_id: str, create: Any) -> Session | None:
        """Lock (when concurrent) and load that session; None if absent and not ``create``."""
        return await arun(self.backend, self._do_load(session_id, create))

    def __del__(self) -> None:
        # Dropped unclosed: on files the lock goes now (the file calls need no event loop); on Redis the
        # lock's TTL ends it.
        if _holds_locks(self):
            files = getattr(self.backend, "files", None)
            if files is not None:
                _dropped_unclosed(self, lambda steps: files.kernels.run(files, steps))

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.rollback()


def async_files(files: FileBackend) -> AsyncFiles:
    """The AsyncFiles of a FileBackend, one per backend (its offload state is the backend's)."""
    backend: AsyncFiles | None = files.async_face
    if backend is None:
        backend = files.async_face = AsyncFiles(files)
    return backend


class AsyncSessionStore(AsyncBaseStore, OnFiles):
    """SessionStore for asyncio: the same sessions on disk, awaited (the same constructor)."""

    __slots__ = ()
    face_backend = staticmethod(async_files)


def __getattr__(name: str) -> Any:
    # The Redis store needs redis-py; importing this module must not.
    if name in ("AsyncRedisSessionStore", "AsyncRedisBackend"):
        from . import aio_redis

        return getattr(aio_redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
