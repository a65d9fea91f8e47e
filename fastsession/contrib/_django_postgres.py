"""The Django engine's storage on PostgreSQL (``FASTSESSION_BACKEND = "postgres"``).

PostgresBackend on the project's own database (``FASTSESSION_DATABASE``, the
alias, "default" unless set): a pool of its own, made from that alias's
settings, so the sessions' short statements never run inside the app's
transactions (``ATOMIC_REQUESTS`` would hold a lease invisible to other
requests until the view returns). Its tables are created by the migration of
``fastsession.contrib.django_postgres`` (add it to INSTALLED_APPS) or by
``fastsession postgres init``. Expiry as on Redis (_django_ttl): each save
sets the row's expiry to the session's expiry age; ``clearsessions`` deletes
the rows past it, in batches (postgres_admin.collect).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..aio import AsyncFiles, to_completion
from ..postgres import PostgresBackend, PostgresHandle, pool_for
from ._django_ttl import ExpiresByTTL

# Django's OPTIONS that are its own, not libpq's.
DJANGO_ONLY = {"pool", "server_side_binding", "assume_role", "isolation_level", "cursor_factory", "context"}


def database_alias() -> str:
    from .django import setting

    return setting("FASTSESSION_DATABASE", "default")  # type: ignore[no-any-return]


def table_name() -> str:
    from .django import setting

    return setting("FASTSESSION_POSTGRES_TABLE", "fastsession_session")  # type: ignore[no-any-return]


def conninfo_of_database(alias: str) -> str:
    """A libpq connection string for the Django database ``alias`` as it is now (a test run's test database
    once the runner made it)."""
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    settings_dict = connections[alias].settings_dict
    if connections[alias].vendor != "postgresql":
        raise ValueError(f"FASTSESSION_BACKEND = 'postgres' needs a PostgreSQL database; {alias!r} is not one")
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME") or "postgres",
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "application_name": "fastsession",
    }
    for name, value in (settings_dict.get("OPTIONS") or {}).items():
        if name not in DJANGO_ONLY:
            params[name] = value
    return make_conninfo(**{name: value for name, value in params.items() if value is not None})


def pool_of_database(alias: str) -> Any:
    """The pool of the database ``alias``: Django's own when its OPTIONS turn pooling on (Django 5.1+; closed
    with it, as a test run does before it drops its database), else one of fastsession's per process and
    connection string (fastsession.postgres.close_pools)."""
    from django.db import connections

    from .django import setting

    connection = connections[alias]
    if connection.vendor == "postgresql" and (connection.settings_dict.get("OPTIONS") or {}).get("pool"):
        return connection.pool
    return pool_for(conninfo_of_database(alias), setting("FASTSESSION_POSTGRES_POOL_SIZE", 10))


class DjangoPostgres(ExpiresByTTL, PostgresBackend):
    """PostgresBackend as the Django engine uses it: per-save expiry, Django's session keys."""

    def __init__(self, pool: Any, timeout: float | None, table: str, check_key: Any, lock_ttl: float = 30.0) -> None:
        PostgresBackend.__init__(self, pool, True, 1.0, timeout, lock_ttl, None, table)
        self.check_key = check_key
        self.pid = os.getpid()

    @staticmethod
    def ttl_arg(seconds: float | None) -> int:
        """Milliseconds until the row expires: 0 (never) for None, else at least 1 (an expiry already past)."""
        return 0 if seconds is None else max(1, int(seconds * 1000))

    async def aopen(self, key: str) -> PostgresHandle:
        """open(), in a worker thread (a cancelled wait gives back a lease it took)."""
        handle: PostgresHandle = await AsyncFiles._in_thread(self.open, key, undo=self.release)
        return handle

    async def arelease(self, handle: PostgresHandle) -> None:
        """release() from the event loop, carried to its end even when the caller is cancelled."""
        await to_completion(asyncio.get_running_loop().run_in_executor(None, self.release, handle))

    def unlocked(self, key: str) -> PostgresHandle:
        return PostgresHandle(key, self._name(key), None, None)

    def clear_expired(self) -> None:
        from ..postgres_admin import collect

        with self.pool.connection() as conn:
            collect(conn, self.table)
