"""Redis for the async face: the sync backend's scripts and logic (redis.RedisCore) on redis.asyncio.

Reached as ``fastsession.aio.AsyncRedisSessionStore``; a module of its own so
that ``fastsession.aio`` imports without redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from redis.exceptions import NoScriptError

from .aio import PENDING, AsyncBaseStore, arun, to_completion
from .redis import SCRIPTS, SLEEP, WAIT, OnRedis, RedisCore, RedisSteps, ScriptCaller, is_cluster, packed
from .store import DELETE, INDEX_ADD, INDEX_LIST, INDEX_REMOVE, OPEN, OPEN_LOAD, OPEN_STORED, PEEK, RELEASE, SAVE, Steps


class AsyncScripts:
    """The Redis routines' calls, on a ``redis.asyncio`` client: every one awaited.

    Scripts go as EVALSHA on one of the client's pooled connections, as redis.ScriptCaller does for
    the sync client (the same reasons, the same fallback for Cluster and single-connection clients).
    """

    def __init__(self, client: Any) -> None:
        from redis.asyncio import Redis

        self.client = client
        self.shas = ScriptCaller.digests()
        plain = type(client) is Redis and getattr(client, "connection", None) is None
        self.pool = client.connection_pool if plain else None
        self.scripts = None if plain else {name: client.register_script(source) for name, source in SCRIPTS.items()}

    async def script(self, name: str, keys: Any, args: Any) -> Any:
        pool = self.pool
        if pool is None:
            return await self.scripts[name](keys=keys, args=args)  # type: ignore[index]
        connection = await pool.get_connection()
        try:
            return await connection.retry.call_with_retry(
                lambda: self._evalsha(connection, name, keys, args), lambda error: connection.disconnect()
            )
        finally:
            await pool.release(connection)

    async def _evalsha(self, connection: Any, name: str, keys: Any, args: Any) -> Any:
        command = (packed("EVALSHA", self.shas[name], len(keys), *keys, *args),)
        await connection.send_packed_command(command)
        try:
            return await connection.read_response()
        except NoScriptError:  # not loaded on this server (yet, or any more)
            await connection.send_packed_command((packed("SCRIPT", "LOAD", SCRIPTS[name]),))
            await connection.read_response()
            await connection.send_packed_command(command)
            return await connection.read_response()

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING

    async def call(self, step: tuple[Any, ...]) -> Any:
        if step[0] == SLEEP:
            return await asyncio.sleep(step[1])
        if step[0] == WAIT:
            return await self.client.blpop([step[1]], timeout=step[2])
        return await self.script(step[1], step[2], step[3])


class AsyncRedisBackend(RedisCore):
    """Sessions as Redis strings, locked with SET NX PX and a token (a ``redis.asyncio`` client)."""

    def __init__(self, client: Any, *options: Any) -> None:
        RedisCore.__init__(self, *options)
        self.client = client
        self.legacy = not is_cluster(client)
        self.caller = AsyncScripts(client)
        self.routines: dict[str, Callable[..., RedisSteps]] = {
            OPEN: self._open,
            OPEN_LOAD: self._open_load,
            SAVE: self._save,
            RELEASE: self._release,
            DELETE: self._delete,
            PEEK: self._peek,
            OPEN_STORED: self._open_stored,
            INDEX_ADD: self._index_add,
            INDEX_REMOVE: self._index_remove,
            INDEX_LIST: self._index_list,
        }
        self.sweeper: asyncio.Task[None] | None = None

    async def _run(self, steps: RedisSteps) -> Any:
        """Make a routine's calls on the async client (a cancelled call may yet run: the routine lets its lock go)."""
        return await arun(self.caller, steps)

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING  # every call is a round trip: awaited

    async def call(self, step: tuple[Any, ...]) -> Any:
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
