"""O_EXCL lockfiles, pure-Python twin of ``_lock_c``.

Whoever creates ``<session file>.lock`` owns the session. The file starts
with the holder line, so a waiter can tell a dead holder from a live one.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator

from . import _syscalls as sc
from . import _wake
from ._holder import HELD, break_if_stale, holder_of, summary
from ._syscalls import named
from .errors import LockTimeout, SessionError

LOCK_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FIRST_PAUSE = 0.00005  # 50 µs: most critical sections are shorter than a millisecond
MAX_PAUSE = 0.05  # a waiter sees a released lock within 50 ms whatever `delay` is
CHECK_HOLDER_AFTER = 0.002  # short waits never pay for reading the holder line
CHECK_HOLDER_EVERY = 0.1  # then now and then: a dead holder's lock is broken within this much


def try_lock(lock_path: bytes, record: bytes) -> int:
    """The lockfile's descriptor, with ``record`` written; -1 when it exists (locked)."""
    try:
        fd = sc.open(lock_path, LOCK_FLAGS, 0o600)
    except FileExistsError:
        return -1
    try:
        if sc.write(fd, record) != len(record):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), lock_path)
    except BaseException as exc:
        sc.close(fd)
        sc.unlink(lock_path)
        if isinstance(exc, OSError):
            raise named(exc, lock_path) from None
        raise
    return fd


def acquire(lock_path: bytes, record: bytes, delay: float, timeout: float | None, stale_after: float) -> int:
    """Lock, waiting while locked (``wait_to_lock``).

    Raises LockTimeout after ``timeout`` seconds (None: never), OSError at once
    for any error but EEXIST, and breaks the lock when its holder is gone.
    """
    fd = try_lock(lock_path, record)
    if fd >= 0:
        return fd
    return wait_to_lock(lock_path, record, delay, timeout, stale_after, try_lock)


def wait_to_lock(
    lock_path: bytes,
    record: bytes,
    delay: float,
    timeout: float | None,
    stale_after: float,
    take: Callable[[bytes, bytes], int],
) -> int:
    """A taken lock's waiting, shared by both twins: woken when the lockfile goes, else polling.

    ``take`` is the twin's try_lock. Polls follow lock_waits (50 µs doubling
    up to min(delay, 50 ms)); a release on this host ends the pause at once.
    """
    subscription = _wake.subscribe(lock_path)
    try:
        for pause in lock_waits(lock_path, delay, timeout, stale_after):
            if pause:
                if subscription is not None:
                    subscription.wait(pause)
                else:
                    time.sleep(pause)
            fd = take(lock_path, record)
            if fd >= 0:
                return fd
    finally:
        if subscription is not None:
            subscription.close()
    raise AssertionError("lock_waits never ends")  # pragma: no cover


def lock_waits(lock_path: bytes, delay: float, timeout: float | None, stale_after: float) -> Iterator[float]:
    """The pauses a waiter takes between tries of a taken lock (``acquire``'s schedule).

    Endless; raises LockTimeout once ``timeout`` has passed. Breaks the lock
    (and yields 0, try again now) when its holder is gone. The async stores
    sleep on their event loop where acquire sleeps in its thread.
    """
    start = time.monotonic()
    max_pause = min(delay, MAX_PAUSE)
    pause = min(FIRST_PAUSE, max_pause)
    check_at = CHECK_HOLDER_AFTER
    while True:
        waited = time.monotonic() - start
        timed_out = timeout is not None and waited >= timeout
        # A dead holder's lock is broken whatever the timeout, timeout=0 included.
        checking = waited >= check_at or timed_out
        if checking:
            check_at = waited + CHECK_HOLDER_EVERY
        if checking and break_if_stale(lock_path, stale_after) != HELD:
            pause = min(FIRST_PAUSE, max_pause)
            yield 0.0
        elif timed_out:
            holder = holder_of(lock_path)
            raise LockTimeout(
                f"session lock {os.fsdecode(lock_path)!r} still held after {timeout} s"
                + (f" ({summary(holder)})" if holder else ""),
                holder,
            )
        else:
            if timeout is not None:
                pause = min(pause, max(timeout - waited, 0.0))
            yield pause
            pause = min(pause * 2, max_pause)


def owns(fd: int, lock_path: bytes) -> bool:
    """Whether ``lock_path`` still names the lockfile open at ``fd`` (nobody broke the lock)."""
    mine = sc.fstat(fd)
    try:
        now = sc.stat(lock_path)
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev)


def lock_lost(lock_path: bytes) -> SessionError:
    return SessionError(
        f"session lock {os.fsdecode(lock_path)!r} was broken and may be another holder's now "
        "(this holder outlived stale_after): nothing was written"
    )


def unlock(fd: int, lock_path: bytes) -> None:
    """Release without committing: the lockfile goes, the session file stays as it was.

    A lock that was broken meanwhile (and may be someone else's now) is left alone.
    """
    try:
        try:
            mine = owns(fd, lock_path)
        finally:
            sc.close(fd)
    except OSError:
        sc.unlink(lock_path)  # ownership unknown: release, as a lock must not outlive its holder
        raise
    if mine:
        sc.unlink(lock_path)
