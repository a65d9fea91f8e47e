"""PostgreSQL's schema and garbage collection for fastsession.postgres.

``fastsession postgres init DSN`` and the Django app's migration create the
tables (``create_sql``); ``fastsession gc --postgres DSN`` deletes expired
sessions in small batches (``collect``), each its own short statement, so no
long lock is ever held and the app's requests interleave.
"""

from __future__ import annotations

import time
from typing import Any

from .postgres import TABLE, quoted

__all__ = ["collect", "create_sql", "drop_sql", "init"]


def create_sql(table: str = TABLE) -> list[str]:
    """The statements that create the session table, its expiry index and the user index (idempotent)."""
    index = table.rsplit(".", 1)[-1]
    users, table = quoted(table + "_user"), quoted(table)
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
    name text PRIMARY KEY,
    body bytea,
    expires_at timestamptz,
    holder text,
    lease_until timestamptz,
    waiting_until timestamptz
)""",
        # gc finds what is over by these, never by a scan of the table
        f'CREATE INDEX IF NOT EXISTS "{index}_expires" ON {table} (expires_at) WHERE expires_at IS NOT NULL',
        f'CREATE INDEX IF NOT EXISTS "{index}_leases" ON {table} (lease_until) WHERE body IS NULL',
        f"""CREATE TABLE IF NOT EXISTS {users} (
    user_hash text NOT NULL,
    name text NOT NULL,
    info bytea NOT NULL,
    PRIMARY KEY (user_hash, name)
)""",
    ]


def drop_sql(table: str = TABLE) -> list[str]:
    return [f"DROP TABLE IF EXISTS {quoted(table + '_user')}", f"DROP TABLE IF EXISTS {quoted(table)}"]


def _connected(dsn_or_connection: Any) -> Any:
    import psycopg

    if isinstance(dsn_or_connection, str):
        return psycopg.connect(dsn_or_connection, autocommit=True)
    return dsn_or_connection


def init(dsn_or_connection: Any, table: str = TABLE) -> None:
    """Create fastsession's tables (nothing that exists is changed)."""
    conn = _connected(dsn_or_connection)
    try:
        with conn.transaction():
            for statement in create_sql(table):
                conn.execute(statement)
    finally:
        if conn is not dsn_or_connection:
            conn.close()


def collect(
    dsn_or_connection: Any, table: str = TABLE, batch: int = 1000, pause: float = 0.0, dry_run: bool = False
) -> int:
    """Delete expired sessions, and rows that only held a lease that is over, ``batch`` rows per statement
    (``pause`` seconds between statements); how many were deleted (``dry_run``: would be; none is). A row
    whose lease is live stays: its holder's commit decides. Entries of the user index that name no session are left to its reader, which
    removes them after their grace (fastsession.users.GRACE)."""
    table = quoted(table)
    if batch <= 0:
        raise ValueError(f"batch must be a positive number of rows, not {batch!r}")
    over = (
        "(expires_at <= clock_timestamp() OR (body IS NULL AND (lease_until IS NULL OR lease_until <= clock_timestamp())))"
        " AND (holder IS NULL OR lease_until <= clock_timestamp())"
    )
    statement = f"""DELETE FROM {table} WHERE name IN (
  SELECT name FROM {table} WHERE {over} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"""
    conn = _connected(dsn_or_connection)
    deleted = 0
    try:
        if dry_run:
            counted: int = conn.execute(f"SELECT count(*) FROM {table} WHERE {over}").fetchone()[0]
            return counted
        while True:
            done: int = conn.execute(statement, {"batch": batch}).rowcount
            if not conn.autocommit:
                conn.commit()
            deleted += done
            if done < batch:
                return deleted
            if pause:
                time.sleep(pause)
    finally:
        if conn is not dsn_or_connection:
            conn.close()
