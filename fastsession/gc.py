"""Garbage collection of a session directory: expired sessions, stale locks, leftovers.

``collect(directory, max_age)`` streams the directory shard by shard
(constant memory) and removes

- sessions whose mtime is older than ``max_age`` (and, as old, the marks
  that revoked sessions leave), each re-checked under the session's own lock
  first, so a session that is in use or was written after gc looked at it is
  never removed (safe to run from cron beside live traffic);
- lockfiles that the lock rules call stale (dead holder, holder line never
  written, another host's lock older than ``stale_after``);
- temp files of unlocked commits (concurrent=0) whose writer died, once older
  than ``stale_after``.

With ``stale_locks_only`` it removes stale lockfiles and nothing else.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from . import events
from ._holder import BROKEN, HELD, break_if_stale, holder_record
from ._lock_py import owns
from .errors import CorruptSession, LockTimeout
from .files import FileBackend, check_tree
from .record import bound_to

__all__ = ["Collected", "collect"]


@dataclass
class Collected:
    """What a collection saw and did."""

    scanned: int = 0  # session files looked at
    removed: int = 0  # expired sessions removed (or that would be, with dry_run)
    kept: int = 0  # sessions still fresh, or busy
    bytes_freed: int = 0
    locks_removed: int = 0
    temps_removed: int = 0
    index_entries_removed: int = 0  # user index entries whose session is gone (fastsession.users)
    errors: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> object:
        """The counts read as a mapping as well: ``counts["removed"]``."""
        return getattr(self, name)


def _user_of(backend: FileBackend, path: bytes) -> str | None:
    """The user hash the session file at ``path`` is bound to, for its event (None: unbound, sealed, unreadable)."""
    try:
        loaded = backend.kernels.read_session(path, False)
    except (OSError, CorruptSession):
        return None
    return None if loaded is None else bound_to(loaded[0])


def _remove_if_expired(
    backend: FileBackend, path: bytes, max_age: float, now: float, dry_run: bool, done: Collected
) -> None:
    lock_path = path + b".lock"
    if dry_run:  # taking the lock could break a stale one: only look
        if break_if_stale(lock_path, backend.stale_after, True) == HELD:
            done.kept += 1  # in use right now: by definition not expired
        else:
            status = os.stat(path, follow_symlinks=False)
            done.removed += 1
            done.bytes_freed += 0 if stat.S_ISDIR(status.st_mode) else status.st_size
        return
    try:
        fd = backend.kernels.acquire(lock_path, holder_record(), 1.0, 0, backend.stale_after)
    except LockTimeout:
        done.kept += 1  # in use right now: by definition not expired
        return
    try:
        status = os.stat(path, follow_symlinks=False)  # again, under the lock
        if now - status.st_mtime <= max_age or not owns(fd, lock_path):
            done.kept += 1  # written since we looked, or our lock was broken meanwhile
            return
        if stat.S_ISDIR(status.st_mode):  # the mark of a session revoked in a request (files.py): nobody needs it
            os.rmdir(path)
            done.removed += 1
            return
        user = _user_of(backend, path) if events.handlers else None
        os.unlink(path)
        done.removed += 1
        done.bytes_freed += status.st_size
        if events.handlers:
            events.emit("expired", os.fsdecode(os.path.basename(path)), user, None, "idle")
    except FileNotFoundError:
        pass  # removed meanwhile (expired by a request)
    finally:
        backend.kernels.unlock(fd, lock_path)


def collect(
    directory: str,
    max_age: float | None = None,
    *,
    stale_after: float = 30.0,
    dry_run: bool = False,
    stale_locks_only: bool = False,
    progress: Callable[[int, int, Collected], None] | None = None,
) -> Collected:
    """Remove expired sessions and stale lockfiles from ``directory``; the counts.

    ``progress(shards_done, shards_total, counts)`` is called after each shard.
    """
    if max_age is None and not stale_locks_only:
        raise ValueError("max_age is required unless stale_locks_only")
    if max_age is not None and not max_age > 0:
        raise ValueError(f"max_age must be positive, not {max_age}: 0 or less would remove every session")
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, "no such session directory", directory)
    # Again even if this process checked it before: gc may run long after the app started.
    check_tree(os.fsencode(os.path.abspath(directory)))
    backend = FileBackend(directory, True, 1.0, 0, stale_after)
    done = Collected()
    try:
        shards = backend.shards()
    except OSError as exc:
        done.errors.append(f"{directory}: {exc}")
        return done
    for number, shard in enumerate(shards, 1):
        try:
            with os.scandir(shard) as entries:
                for entry in entries:
                    _visit(backend, entry, max_age, stale_after, dry_run, stale_locks_only, done)
        except OSError as exc:
            done.errors.append(f"{os.fsdecode(shard)}: {exc}")
        if progress is not None:
            progress(number, len(shards), done)
    if not stale_locks_only:
        _sweep_user_index(backend, dry_run, done)
    return done


def _sweep_user_index(backend: FileBackend, dry_run: bool, done: Collected) -> None:
    """Remove the user index entries (``.users/<user>/<stored name>``) of sessions that are gone.

    An entry younger than users.GRACE may belong to a commit about to land: it stays.
    """
    from .users import GRACE

    index = backend.directory + b".users"
    try:
        users = [os.fsencode(entry.path) for entry in os.scandir(index) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    except OSError as exc:
        done.errors.append(f"{os.fsdecode(index)}: {exc}")
        return
    for folder in users:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if not backend.kernels.is_valid_id(os.fsdecode(name)):
                        continue
                    if os.path.exists(backend.stored_path(os.fsencode(name))):
                        continue
                    if time.time() - entry.stat(follow_symlinks=False).st_mtime <= GRACE:
                        continue
                    if not dry_run:
                        os.unlink(entry.path)
                    done.index_entries_removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            done.errors.append(f"{os.fsdecode(folder)}: {exc}")


def _visit(
    backend: FileBackend,
    entry: os.DirEntry[bytes],
    max_age: float | None,
    stale_after: float,
    dry_run: bool,
    stale_locks_only: bool,
    done: Collected,
) -> None:
    name = os.fsdecode(entry.name)
    path = os.fsencode(entry.path)
    try:
        if name.endswith(".lock"):
            if backend.check_key(name[: -len(".lock")]) and _stale(path, stale_after, dry_run):
                done.locks_removed += 1
        elif stale_locks_only or max_age is None:  # (collect asks for max_age unless stale_locks_only)
            return
        elif name.endswith(".tmp"):
            status = entry.stat(follow_symlinks=False)
            if time.time() - status.st_mtime > stale_after:
                if not dry_run:
                    os.unlink(path)
                done.temps_removed += 1
                done.bytes_freed += status.st_size
        elif backend.check_key(name):
            done.scanned += 1
            now = time.time()
            if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                _remove_if_expired(backend, path, max_age, now, dry_run, done)
            else:
                done.kept += 1
    except FileNotFoundError:
        pass  # gone between listing and looking: a request got there first
    except OSError as exc:
        done.errors.append(f"{os.fsdecode(entry.path)}: {exc}")


def _stale(lock_path: bytes, stale_after: float, dry_run: bool) -> bool:
    """Whether the lockfile is stale; removed too unless ``dry_run``."""
    return break_if_stale(lock_path, stale_after, dry_run) == BROKEN


class ProgressBar:
    """A one-line progress bar with rate and ETA on stderr (when it is a terminal)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, done_shards: int, total: int, counts: Collected) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = counts.scanned / elapsed
        eta = elapsed / done_shards * (total - done_shards)
        width = 30
        filled = width * done_shards // max(total, 1)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done_shards}/{total} shards, "
            f"{counts.scanned} sessions, {rate:,.0f}/s, ETA {eta:,.0f} s   "
        )
        self.stream.flush()
        if done_shards == total:
            self.stream.write("\n")


def summary(counts: Collected, seconds: float, dry_run: bool) -> str:
    verb, freed = ("would remove", "would free") if dry_run else ("removed", "freed")
    text = (
        f"scanned {counts.scanned} sessions in {seconds:.1f} s: {verb} {counts.removed} expired, "
        f"kept {counts.kept}; {verb} {counts.locks_removed} stale locks and {counts.temps_removed} "
        f"leftover temp files; {freed} {counts.bytes_freed} bytes; {len(counts.errors)} errors"
    )
    if counts.index_entries_removed:
        text += f"; {verb} {counts.index_entries_removed} user index entries of sessions gone"
    return "\n".join([text] + [f"  error: {e}" for e in counts.errors])
