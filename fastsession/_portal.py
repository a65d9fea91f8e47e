"""Sync code waiting on the event loop: a lazy session's first read, made without an ``await``.

``request.session["user"]`` in an async view is a plain call. For the read
to take the session's lock on first use (and never for a request that does
not touch it), that call must wait for the lock without blocking the loop.
``drive(coroutine, loop)`` runs an app's coroutine inside a greenlet of its own;
``wait(loop, make, *args)``, called from sync code anywhere below it, suspends
that greenlet, awaits ``make()`` on the loop (other requests run meanwhile)
and resumes with its result or its exception. From a worker thread (a sync
view run in a thread pool) it hands ``make()`` to the loop and blocks that
thread only. On the loop's thread outside a driven coroutine (a task the
app spawned) nothing can wait: it raises ``SessionError`` saying what to do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Callable

import greenlet

from .errors import SessionError

__all__ = ["drive", "wait"]

_YIELD, _AWAIT, _DONE = range(3)
_IDLE_KEPT = 64  # idle drivers kept per thread (making a greenlet costs ~8 µs; switching to one, ~0.2 µs)


class _Driver(greenlet.greenlet):  # type: ignore[misc]
    """A greenlet that runs coroutines' steps, one coroutine at a time (``wait`` looks for one of these).

    It serves coroutine after coroutine: between two it waits in ``_serve``
    for the next, kept in its thread's idle list.
    """

    loop: asyncio.AbstractEventLoop | None = None
    result: tuple[Any, BaseException | None] = (None, None)

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        while True:
            self.result = self._run(coroutine)
            coroutine = None  # type: ignore[assignment]  # nothing of it is kept while idle
            coroutine = self.parent.switch(_DONE, None)

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> tuple[Any, BaseException | None]:
        """The coroutine's (value, None) or (None, exception), each step run here, each yield passed up."""
        value, error = None, None
        while True:
            try:
                out = coroutine.send(value) if error is None else coroutine.throw(error)
            except StopIteration as stop:
                return stop.value, None
            except BaseException as exc:
                return None, exc
            value, error = self.parent.switch(_YIELD, out)


_idle = threading.local()


class drive:
    """``await drive(coroutine, loop)``: ``coroutine`` awaited, with ``wait()`` usable from the sync code it calls."""

    __slots__ = ("_coroutine", "_loop")

    def __init__(self, awaitable: Awaitable[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop  # the running loop (the caller has it at hand: each lookup is a getpid())
        # (an ASGI app may return any awaitable: one that is not a coroutine is awaited by one)
        self._coroutine: Coroutine[Any, Any, Any] | None = (
            awaitable if isinstance(awaitable, Coroutine) else _awaited(lambda: awaitable)
        )

    def __await__(self) -> Generator[Any, Any, Any]:
        try:
            idle = _idle.drivers
        except AttributeError:
            idle = _idle.drivers = []
        driver = idle.pop() if idle else _Driver()
        here = greenlet.getcurrent()
        driver.parent = here
        driver.loop = self._loop
        driver.gr_context = here.gr_context  # the task's contextvars, shared (not a copy)
        kind, payload = driver.switch(self._coroutine)
        self._coroutine = None
        while kind != _DONE:
            try:
                # _YIELD: what the coroutine yielded goes to the loop as it is; _AWAIT: wait()'s awaitable.
                value = (yield payload) if kind == _YIELD else (yield from payload.__await__())
            except BaseException as exc:
                kind, payload = driver.switch((None, exc)) if kind == _YIELD else driver.throw(exc)
            else:
                kind, payload = driver.switch((value, None)) if kind == _YIELD else driver.switch(value)
        value, error = driver.result
        driver.result, driver.loop, driver.gr_context = (None, None), None, None
        if len(idle) < _IDLE_KEPT:
            idle.append(driver)
        if error is not None:
            try:
                raise error
            finally:
                del error
        return value


def wait(loop: asyncio.AbstractEventLoop, make: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    """``await make(*args)`` on ``loop`` from sync code; see the module's docstring for where that works."""
    current = greenlet.getcurrent()
    if isinstance(current, _Driver) and current.loop is loop:
        coroutine = make(*args)
        try:  # as far as it goes without waiting, here: a lock that is free costs no switch
            first = coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        # (the coroutine's exception, if any, is thrown in here)
        return current.parent.switch(_AWAIT, _Resumed(coroutine, first))
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a worker thread: this thread waits, the loop runs on
        return asyncio.run_coroutine_threadsafe(_awaited(make, *args), loop).result()
    raise SessionError(
        "this session was first used in a task the session middleware does not run (a BaseHTTPMiddleware "
        "between them runs the app in a task of its own, as does a task the app spawned), where a read cannot "
        "wait for its lock: `await fastsession.asgi.load_session(request)` first, or add the session "
        "middleware inside that middleware"
    )


class _Resumed:
    """An awaitable that goes on with a coroutine already run up to its first yield (``first``)."""

    __slots__ = ("coroutine", "first")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coroutine, self.first = coroutine, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, out = self.coroutine, self.first
        while True:
            step: Callable[[Any], Any]
            try:
                value = yield out
            except BaseException as exc:  # cancellation: thrown into the coroutine
                step, arg = coroutine.throw, exc
            else:
                step, arg = coroutine.send, value
            try:
                out = step(arg)
            except StopIteration as stop:
                return stop.value


async def _awaited(make: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await make(*args)
