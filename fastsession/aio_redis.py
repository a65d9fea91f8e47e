"""Redis for the async face: the sync backend's scripts and logic (redis.RedisCore) on redis.asyncio.

Reached as ``fastsession.aio.AsyncRedisSessionStore``; a module of its own so
that ``fastsession.aio`` imports without redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from redis.exceptions import RedisError

from .aio import PENDING, AsyncBaseStore, arun, to_completion
from .redis import SCRIPTS, RedisCore, RedisSteps
from .store import DELETE, OPEN, OPEN_LOAD, RELEASE, SAVE, Steps, shared_backend


class AsyncRedisBackend(RedisCore):
    """Sessions as Redis strings, locked with SET NX PX and a token (a ``redis.asyncio`` client)."""

    def __init__(self, client: Any, *options: Any) -> None:
        RedisCore.__init__(self, *options)
        self.client = client
        self.scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        self.routines = {OPEN: self._open, OPEN_LOAD: self._open_load, SAVE: self._save, RELEASE: self._release,
                         DELETE: self._delete}
        self.sweeper: Optional["asyncio.Task[None]"] = None

    async def _run(self, steps: RedisSteps) -> Any:
        """Make a routine's calls on the async client; its result."""
        reply: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value
            reply, error = None, None
            try:
                if type(step) is float:
                    await asyncio.sleep(step)
                else:
                    reply = await self.scripts[step[0]](keys=step[1], args=step[2])
            except (RedisError, asyncio.CancelledError) as exc:
                error = exc  # a cancelled call may yet run: the routine lets its lock go

    @staticmethod
    def now(step: tuple) -> Any:
        return PENDING  # every call is a round trip: awaited

    async def call(self, step: tuple) -> Any:
        return await self._run(self.routines[step[0]](*step[1:]))

    async def finish(self, steps: Steps) -> Any:
        """Drive cleanup (close, rollback) to its end whatever cancellation the caller meets."""
        try:
            first = next(steps)
        except StopIteration as done:  # nothing to send: no task needed
            return done.value
        return await to_completion(arun(self, steps, first=first))

    def _start_sweeper(self) -> None:
        loop = asyncio.get_running_loop()
        sweeper = self.sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            self.sweeper = loop.create_task(self._run(self._sweep()))


class AsyncRedisSessionStore(AsyncBaseStore):
    """RedisSessionStore for asyncio, on a ``redis.asyncio`` client: the same sessions, awaited."""

    __slots__ = ("client", "concurrent", "delay")

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
        backend = shared_backend(AsyncRedisBackend, client, concurrent, delay, timeout, lock_ttl, max_age, prefix)
        AsyncBaseStore.__init__(self, trans, backend, session_cookie_name)
        self.client = client
        self.concurrent = concurrent
        self.delay = delay
