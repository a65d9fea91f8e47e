"""Redis for the async face: the sync backend's scripts and logic (redis.RedisCore) on redis.asyncio.

Reached as ``fastsession.aio.AsyncRedisSessionStore``; a module of its own so
that ``fastsession.aio`` imports without redis-py.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable

from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from . import resp
from .aio import PENDING, AsyncBaseStore, arun, to_completion
from .redis import (
    IDLE_KEEP,
    REDIS_ERRORS,
    SCRIPTS,
    SLEEP,
    WAIT,
    OnRedis,
    RedisCore,
    RedisSteps,
    ScriptCaller,
    checkout_args,
    idle_list,
    is_cluster,
    packed,
    warn_if_evicting,
)
from .routines import routines
from .store import Steps

__all__ = ["AsyncRedisBackend", "AsyncRedisSessionStore", "AsyncScripts"]


class AsyncScripts:
    """The Redis routines' calls, on a ``redis.asyncio`` client: every one awaited.

    Scripts go as EVALSHA on a connection of the client's, as redis.ScriptCaller does for the sync
    client (the same reasons, the same fallback for Cluster and single-connection clients); with
    redis-py's default ConnectionPool, on the pool's idle list (redis.idle_list) between calls.
    """

    def __init__(self, client: Any) -> None:
        from redis.asyncio import ConnectionPool, Redis

        self.client = client
        self.shas = ScriptCaller.digests()
        plain = type(client) is Redis and getattr(client, "connection", None) is None
        self.pool = client.connection_pool if plain else None
        self.scripts = None if plain else {name: client.register_script(source) for name, source in SCRIPTS.items()}
        own = plain and type(self.pool) is ConnectionPool and getattr(self.pool, "cache", None) is None
        self.idle = idle_list(self.pool) if own else None
        self.checkout = checkout_args(self.pool) if plain else ()
        # The event loop the connections above belong to (the first call's). An asyncio connection serves
        # only its own loop: under another (a test client that runs each request in a new loop) the calls
        # go to a pool of their own for it, whose connections are closed when that loop shuts down.
        self.loop: Any = None
        self.closers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    async def script(self, name: str, keys: Any, args: Any) -> Any:
        if self.pool is None:
            return await self.scripts[name](keys=keys, args=args)  # type: ignore[index]
        return await self._on_connection(self._evalsha, name, keys, args, unchecked=name in ScriptCaller.SENT_UNCHECKED)

    async def blpop(self, key: str, seconds: float) -> Any:
        """A waiter's pause (BLPOP) on the scripts' connections: waiting takes no connection more from the pool."""
        if self.pool is None:
            return await self.client.blpop([key], timeout=seconds)
        return await self._on_connection(self._command, "BLPOP", key, seconds)

    async def memory_info(self) -> Any:
        """INFO memory, on the scripts' connections (no connection more from the pool)."""
        if self.pool is None:
            return await self.client.info("memory")
        return await self._on_connection(self._command, "INFO", "memory")

    async def _on_connection(self, send: Callable[..., Awaitable[Any]], *args: Any, unchecked: bool = False) -> Any:
        """``send(connection, *args)`` on a connection of the pool, under the connection's retry policy.

        ``unchecked``: the call may be made twice (ScriptCaller.SENT_UNCHECKED); an idle connection is not
        checked first.
        """
        if self.loop is not asyncio.get_running_loop():
            await self._follow_loop()
        idle = self.idle
        if idle is None:
            pool: Any = self.pool
            connection = await pool.get_connection(*self.checkout)
            try:
                return await self._retried(connection, send, args)
            finally:
                await pool.release(connection)
        try:
            connection = idle.pop()
        except IndexError:  # none idle: this many calls at once for the first time
            connection = await self.pool.get_connection(*self.checkout)  # type: ignore[union-attr]
        else:
            # The event loop has read whatever came on an idle connection (the server closed it, or a
            # notice): anything there, and it is connected afresh by the call.
            if not unchecked and await self._stale(connection):
                await connection.disconnect()
        try:
            try:
                result = await send(connection, *args)
            except Exception as error:  # the policy judges it (it re-raises what it does not retry)
                if unchecked and isinstance(error, ConnectionError):  # (as ScriptCaller._on_connection)
                    await connection.disconnect()
                    result = await self._retried(connection, send, args)
                else:
                    result = await self._retried(connection, send, args, error)
        except ResponseError:  # an error reply, read whole: the connection is as good as before
            await self._put_back(idle, connection)
            raise
        except BaseException:  # a failure, a cancellation: it may be half read
            # Closing without waiting never suspends, nor does the append: it is back on the list, closed,
            # before anything else runs (past IDLE_KEEP too: the next call gives an extra back to the pool).
            await connection.disconnect(nowait=True)
            idle.append(connection)
            raise
        if getattr(connection, "should_reconnect", bool)():  # the server said it moves (redis-py 6.4's notices)
            await connection.disconnect()
        await self._put_back(idle, connection)
        return result

    async def _follow_loop(self) -> None:
        """Serve the running loop: the first one with the client's pool; another with a pool of its own."""
        from redis.asyncio import ConnectionPool

        loop = asyncio.get_running_loop()
        if self.loop is not None:  # the former loop's connections cannot serve this one
            pool: Any = self.pool
            self.pool = ConnectionPool(
                connection_class=pool.connection_class, max_connections=pool.max_connections, **pool.connection_kwargs
            )
            self.idle = []
            self.checkout = checkout_args(self.pool)
        self.loop = loop
        if self.idle is not None:
            closer = self.closers[loop] = self._close_at_shutdown(self.idle, self.pool)
            await closer.__anext__()

    async def _close_at_shutdown(self, idle: list[Any], pool: Any) -> AsyncIterator[None]:
        """Parked on its loop until the loop shuts down (asyncio closes its async generators then): closes the
        connections, which no other loop can use. The client's own pool too, but for connections still checked
        out: another caller made on the same client later (a backend made again) would take those of the pool
        first, and find them bound to a closed loop."""
        try:
            yield
        finally:
            for connection in idle:
                await connection.disconnect(nowait=True)
            idle.clear()
            await pool.disconnect(inuse_connections=pool is not self.client.connection_pool)

    async def _put_back(self, idle: list[Any], connection: Any) -> None:
        if len(idle) < IDLE_KEEP:
            idle.append(connection)
        else:  # a burst's extra: back to the pool, for the app's own commands
            await self.pool.release(connection)  # type: ignore[union-attr]

    async def _stale(self, connection: Any) -> bool:
        """Whether anything came on an idle connection (or the look itself failed)."""
        try:
            return bool(connection.is_connected) and await self.pending(connection)
        except (ConnectionError, OSError):
            return True

    @staticmethod
    async def pending(connection: Any) -> bool:
        """Whether anything waits to be read on an idle connection (redis-py 8's can_read; before it, can_read_destructive)."""
        check = connection.can_read if hasattr(type(connection), "can_read") else connection.can_read_destructive
        return bool(await check())

    @staticmethod
    async def _retried(
        connection: Any, send: Callable[..., Awaitable[Any]], args: tuple[Any, ...], error: BaseException | None = None
    ) -> Any:
        """``send(connection, *args)`` under the connection's retry policy: a connection or timeout error disconnects and retries.

        ``error``: what a first try, made without the policy, raised; the policy judges it as its own first
        try's (``ScriptCaller._retried``).
        """
        first = [error] if error is not None else []

        async def attempt() -> Any:
            if first:
                raise first.pop()
            return await send(connection, *args)

        return await connection.retry.call_with_retry(attempt, lambda error: connection.disconnect())

    @staticmethod
    async def _command(connection: Any, *command: Any) -> Any:
        await connection.send_packed_command((packed(*command),))
        return await connection.read_response()

    async def _evalsha(self, connection: Any, name: str, keys: Any, args: Any) -> Any:
        command = packed("EVALSHA", self.shas[name], len(keys), *keys, *args)
        try:
            return await resp.acall(connection, command)
        except NoScriptError:  # not loaded on this server (yet, or any more)
            await resp.acall(connection, packed("SCRIPT", "LOAD", SCRIPTS[name]))
            return await resp.acall(connection, command)

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING

    async def call(self, step: tuple[Any, ...]) -> Any:
        if step[0] == SLEEP:
            return await asyncio.sleep(step[1])
        if step[0] == WAIT:
            return await self.blpop(step[1], step[2])
        return await self.script(step[1], step[2], step[3])


class AsyncRedisBackend(RedisCore):
    """Sessions as Redis strings, locked with SET NX PX and a token (a ``redis.asyncio`` client)."""

    def __init__(self, client: Any, *options: Any) -> None:
        RedisCore.__init__(self, *options)
        self.client = client
        self.legacy = not is_cluster(client)
        self.caller = AsyncScripts(client)
        self.routines = routines(self)
        self.sweeper: asyncio.Task[None] | None = None
        self.policy_checked = False

    async def _run(self, steps: RedisSteps) -> Any:
        """Make a routine's calls on the async client (a cancelled call may yet run: the routine lets its lock go)."""
        return await arun(self.caller, steps)

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING  # every call is a round trip: awaited

    async def call(self, step: tuple[Any, ...]) -> Any:
        if not self.policy_checked:  # (made outside any event loop: asked at the first call instead)
            self.policy_checked = True
            try:
                warn_if_evicting(await self.caller.memory_info())
            except REDIS_ERRORS:
                pass
        return await self._run(self.routines[step[0]](*step[1:]))

    async def finish(self, steps: Steps[Any]) -> Any:
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


class AsyncRedisSessionStore(AsyncBaseStore, OnRedis):
    """RedisSessionStore for asyncio, on a ``redis.asyncio`` client: the same sessions, awaited."""

    __slots__ = ()
    backend_class = AsyncRedisBackend
