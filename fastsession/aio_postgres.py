"""PostgreSQL for asyncio: ``AsyncPostgresSessionStore`` on psycopg's AsyncConnectionPool.

The same rows, leases and statements as fastsession.postgres (one core,
PostgresCore), each statement awaited on a connection borrowed for it alone;
a wait for a lease awaits a NOTIFY on the event loop (one listening
connection per loop), never a thread.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from .aio import PENDING, AsyncBaseStore, arun, to_completion
from .postgres import (
    LISTEN_IDLE,
    MAX_DROPPED,
    POOL_WAIT,
    SLEEP,
    WAIT,
    OnPostgres,
    PgSteps,
    PostgresCore,
    conninfo_of,
    dropped,
    listener_for,
    logger,
    raise_dropped,
)
from .routines import routines
from .store import Steps

__all__ = ["AsyncPostgresBackend", "AsyncPostgresSessionStore", "DsnPools"]


class DsnPools:
    """The AsyncConnectionPool of one DSN for each event loop (a pool's connections belong to the loop that
    opened them: a test suite's ``asyncio.run`` per test gets a pool per run)."""

    def __init__(self, dsn: str, max_size: int = 10) -> None:
        self.dsn, self.max_size = dsn, max_size
        self.pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self.closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    async def get(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        loop = asyncio.get_running_loop()
        pool = self.pools.get(loop)
        if pool is None:
            pool = AsyncConnectionPool(
                self.dsn,
                min_size=1,
                max_size=self.max_size,
                kwargs={"autocommit": True},
                name="fastsession",
                timeout=POOL_WAIT,
                open=False,
            )
            self.pools[loop] = pool
            await pool.open()
            self.closers[loop] = loop.create_task(self._close_at_shutdown(pool))  # (a loop keeps no task alive)
        return pool

    @staticmethod
    async def _close_at_shutdown(pool: Any) -> None:
        """Parked on the pool's loop until it shuts down (asyncio.run and anyio cancel every task then): closes
        the pool. Left open, its workers outlive the loop's last moments: psycopg_pool's workers survive a
        cancellation that comes while they run a task, and wait for the next one, which never comes, and the
        loop's shutdown waits for them for ever (a test client that makes a loop per request hung so)."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await pool.close(timeout=1.0)


_dsn_pools: dict[tuple[str, int], DsnPools] = {}


def dsn_pools(dsn: str) -> DsnPools:
    """One DsnPools per DSN and process."""
    key = (dsn, os.getpid())
    pools = _dsn_pools.get(key)
    if pools is None:
        pools = _dsn_pools[key] = DsnPools(dsn)
    return pools


class AsyncListener:
    """fastsession.postgres.Listener on an event loop: a task with one LISTENing connection per loop."""

    def __init__(self, table: str, pool: Callable[[], Awaitable[Any]]) -> None:
        self.table, self.pool = table, pool
        self.listening = False
        self.heard: dict[str, float] = {}
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.task: asyncio.Task[None] | None = None
        self.last_wait = 0.0

    def ensure(self) -> None:
        loop = asyncio.get_running_loop()
        task = self.task
        if task is None or task.done() or task.get_loop() is not loop:
            self.waiters.clear()  # (those of a loop that ended)
            self.task = loop.create_task(self._listen())

    async def _listen(self) -> None:
        import psycopg

        while time.monotonic() - self.last_wait < LISTEN_IDLE:
            try:
                conninfo, kwargs = conninfo_of(await self.pool())
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **kwargs) as conn:
                    await conn.execute(f'LISTEN "{self.table}"')
                    self.listening = True
                    self.heard.clear()
                    while self.waiters or time.monotonic() - self.last_wait < LISTEN_IDLE:
                        async for note in conn.notifies(timeout=1.0):
                            if len(self.heard) > 10_000:
                                self.heard.clear()
                            self.heard[note.payload] = time.monotonic()
                            for event in self.waiters.get(note.payload, ()):
                                event.set()
                    self.listening = False
            except asyncio.CancelledError:
                self.listening = False
                raise
            except Exception as exc:
                self.listening = False
                logger.info("fastsession's PostgreSQL listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    async def wait(self, name: str, since: float, seconds: float) -> None:
        self.last_wait = time.monotonic()
        self.ensure()
        if self.heard.get(name, 0.0) >= since:
            return
        event = asyncio.Event()
        self.waiters.setdefault(name, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            waiting = self.waiters.get(name)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self.waiters[name]


class AsyncStatements:
    """What the core's routines yield, awaited: a statement on a borrowed connection, a wait, a sleep."""

    def __init__(self, backend: AsyncPostgresBackend) -> None:
        self.backend = backend

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING  # every call is a round trip: awaited

    async def call(self, step: tuple[Any, ...]) -> Any:
        kind = step[0]
        if kind == SLEEP:
            return await asyncio.sleep(step[1])
        if kind == WAIT:
            return await self.backend.listener.wait(*step[1:])
        return await self.backend.sql(step[1], step[2])


class AsyncPostgresBackend(PostgresCore):
    """Sessions as rows, locked by leases (psycopg's AsyncConnectionPool, or a DSN's pools: DsnPools)."""

    def __init__(self, pool: Any, *options: Any) -> None:
        PostgresCore.__init__(self, *options)
        self.where = pool
        self.statements = AsyncStatements(self)
        self.listener: AsyncListener = listener_for(pool, self.table, lambda: AsyncListener(self.table, self.pool))
        self.routines = routines(self)

    @property
    def listening(self) -> bool:  # type: ignore[override]
        return self.listener.listening

    async def pool(self) -> Any:
        where = self.where
        if isinstance(where, DsnPools):
            return await where.get()
        if where.closed:  # an AsyncConnectionPool made with open=False (a closed one refuses: PoolClosed)
            await where.open()
        return where

    async def sql(self, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pool = await self.pool()
        for _ in range(MAX_DROPPED):
            async with pool.connection() as conn:
                if dropped(conn):
                    await conn.close()
                    continue
                cursor = await conn.execute(self.sql_text[statement], params)
                rows: list[tuple[Any, ...]] = await cursor.fetchall() if cursor.description else []
                if not conn.autocommit:
                    await conn.commit()
            return rows
        raise_dropped()

    async def _run(self, steps: PgSteps) -> Any:
        return await arun(self.statements, steps)

    @staticmethod
    def now(step: tuple[Any, ...]) -> Any:
        return PENDING

    async def call(self, step: tuple[Any, ...]) -> Any:
        return await self._run(self.routines[step[0]](*step[1:]))

    async def finish(self, steps: Steps[Any]) -> Any:
        """Drive cleanup (close, rollback) to its end whatever cancellation the caller meets."""
        try:
            first = next(steps)
        except StopIteration as done:
            return done.value
        return await to_completion(arun(self, steps, first=first))


class AsyncPostgresSessionStore(AsyncBaseStore, OnPostgres):
    """PostgresSessionStore for asyncio: the same sessions, awaited. ``pool``: a psycopg_pool
    AsyncConnectionPool, or a DSN (a pool per event loop is made for it)."""

    __slots__ = ()
    backend_class = AsyncPostgresBackend
    pool_for = staticmethod(dsn_pools)  # type: ignore[assignment]  # (no max_size: a pool per loop)
