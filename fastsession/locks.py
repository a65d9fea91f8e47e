"""The table of held locks (``fastsession locks DIR`` / ``--redis URL``): who holds which session, for how long.

One row per lock: ``session`` (the id's first 8 characters: enough to tell
rows apart, too few to use), ``host``, ``pidns`` (the holder's PID
namespace), ``pid``, ``age`` (seconds), ``alive`` (True/False for a holder
in this host's PID namespace, None where that cannot be known) and
``breakable``: on files, whether the lock rules call it stale now (a waiter
would break it); on Redis, None (a Redis lock is never broken, it expires),
with ``expires_in`` (seconds) instead.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from ._holder import MAGIC, describe, is_stale

# Every key the files backends (fastsession's ids, the Django engine's keys) may name a lockfile after.
_KEY = re.compile(r"[A-Za-z0-9_-]{8,200}")
SHOWN = 8


def short(session_id: str) -> str:
    return session_id[:SHOWN] + "…"


def _row(session_id: str, head: bytes, holder: dict[str, Any]) -> dict[str, Any]:
    """A table row: the session, ``holder`` (_holder.describe's), and the PID namespace from the holder line."""
    fields = head.partition(b"\n")[0].split(b" ")
    pidns = (
        fields[1].rpartition(b"/")[2].decode("ascii", "replace")
        if head.startswith(MAGIC) and len(fields) == 5
        else None
    )
    return {"session": short(session_id), **holder, "pidns": pidns}


def file_locks(directory: str, stale_after: float = 30.0) -> list[dict[str, Any]]:
    """The held locks of a session directory, oldest first."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, "no such session directory", directory)
    rows = []
    with os.scandir(directory) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with os.scandir(shard.path) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(".lock") or not _KEY.fullmatch(name[: -len(".lock")]):
                        continue
                    if not entry.is_file(follow_symlinks=False):  # a folder or a link so named holds no lock
                        continue
                    try:
                        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
                    except OSError:
                        continue  # released meanwhile
                    try:
                        head = os.read(fd, 512)
                        age = max(time.time() - os.fstat(fd).st_mtime, 0.0)
                    finally:
                        os.close(fd)
                    row = _row(name[: -len(".lock")], head, describe(head, age))
                    row["breakable"] = is_stale(head, age, stale_after)
                    rows.append(row)
    return sorted(rows, key=lambda row: -row["age"])


def redis_locks(client: Any, prefix: str = "fastsession:", lock_ttl: float = 30.0) -> list[dict[str, Any]]:
    """The held locks under ``prefix`` on Redis (SCAN, then the lock's value and TTL), oldest first.

    A lock's age is ``lock_ttl`` minus its remaining TTL: give the stores' lock_ttl.
    """
    from .redis import describe_lock

    pattern = _glob_escape(prefix) + "{*}:lock"
    rows = []
    for key in client.scan_iter(match=pattern, count=1000):
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        value, pttl = client.get(key), client.pttl(key)
        if value is None:
            continue  # released meanwhile
        session_id = name[len(prefix) + 1 : -len("}:lock")]
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        head = MAGIC + text.partition(" ")[2].encode("ascii", "replace") + b"\n"
        row = _row(session_id, head, describe_lock(value, pttl, lock_ttl))  # type: ignore[arg-type]
        row["breakable"] = None
        row["expires_in"] = round(max(pttl, 0) / 1000.0, 3)
        rows.append(row)
    return sorted(rows, key=lambda row: -row["age"])


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


COLUMNS = ("session", "host", "pidns", "pid", "age", "alive", "breakable")


def table(rows: list[dict[str, Any]], redis: bool = False) -> str:
    """The rows as an aligned text table (``expires_in`` instead of ``breakable`` for Redis)."""
    columns = (*COLUMNS[:-1], "expires_in") if redis else COLUMNS
    shown = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in shown]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in shown]
    lines.append(f"{len(rows)} lock{'s' if len(rows) != 1 else ''} held")
    return "\n".join(lines)


def _cell(value: object | None) -> str:
    if value is None:
        return "?"
    if value is True or value is False:
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}s"
    return str(value)
