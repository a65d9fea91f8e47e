"""Who holds a lock, and when a lock may be broken.

Every lockfile starts with one line naming its holder::

    FSv1 <host>/<pid namespace> <boot id> <pid> <process start time>\n

and, since the next version of a session is written into its lockfile and
renamed over the session file, every session file starts with that line too.
Readers skip it. This module is the slow path shared by both lock twins: it
runs only while a session is locked by someone else.

The PID namespace (the inode of ``/proc/self/ns/pid``) is part of the host
field: two containers of one pod share hostname and boot id but not pids, so
a pid means something only to a waiter in the holder's own namespace. A
holder in another namespace is judged like one on another host (by age,
``stale_after``), never "dead at once". Versions before the namespace was
recorded read such a line as another host's too, which is the safe reading.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from typing import Any

MAGIC = b"FSv1 "
# A lockfile whose creator died before writing its holder line.
UNREADABLE_GRACE = 1.0


def _read_small(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(256)
    except OSError:
        return b""


def _proc_stat(pid: int | str) -> tuple[bytes, bytes]:
    """(state, start time in clock ticks since boot) of a process; (b"", b"") when it is gone."""
    stat = _read_small(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else (b"", b"")


def _pid_namespace() -> bytes:
    """The inode of this process's PID namespace; b"-" without a /proc of its own namespace."""
    try:
        # /proc/self does not resolve when /proc belongs to another namespace
        # (unshare --pid without --mount-proc): "-" then.
        return b"%d" % os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return b"-"


def host_field(hostname: str, namespace: bytes) -> bytes:
    """The holder line's host field: one token, with no space and no "/" but the one before the namespace."""
    name = hostname.encode("ascii", "replace").replace(b" ", b"_").replace(b"/", b"_")
    return b"%s/%s" % (name or b"-", namespace)


def _this_host() -> tuple[bytes, bytes]:
    boot = _read_small("/proc/sys/kernel/random/boot_id").strip() or b"-"
    return host_field(socket.gethostname(), _pid_namespace()), boot


HOST, BOOT = _this_host()
_record = b""


def holder_record() -> bytes:
    """This process's holder line (computed once per process, again after fork)."""
    global _record
    if not _record:
        # /proc/self, not /proc/<pid>: under a /proc of another namespace that
        # pid names another process; /proc/self then fails and says "-".
        _record = b"%s%s %s %d %s\n" % (MAGIC, HOST, BOOT, os.getpid(), _proc_stat("self")[1] or b"-")
    return _record


def _forget_record() -> None:
    global _record, HOST
    _record = b""
    # A child forked after unshare(CLONE_NEWPID) is in another namespace (same host, same boot).
    HOST = host_field(socket.gethostname(), _pid_namespace())


os.register_at_fork(after_in_child=_forget_record)


def _holder_alive(pid: int, start: bytes) -> bool:
    if start == b"-":  # no /proc when the lock was taken: ask the kernel about the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = _proc_stat(pid)
    # A pid reused by a newer process has another start time; a killed holder
    # that nobody has reaped yet is a zombie (Z) or being reaped (X).
    return started == start and state not in (b"Z", b"X")


# Linux pids stay below 2**22; a field longer than this names no process (and would overflow kill()).
PID_DIGITS = 10


def _fields(head: bytes) -> list[bytes] | None:
    """The five fields of a holder line (magic, host, boot id, pid, start); None when it is no holder line."""
    line, newline, _ = head.partition(b"\n")
    fields = line.split(b" ")
    if not newline or not line.startswith(MAGIC) or len(fields) != 5:
        return None
    pid = fields[3]
    return fields if pid.isdigit() and pid.isascii() and len(pid) <= PID_DIGITS else None


def is_stale(head: bytes, age: float, stale_after: float) -> bool:
    """Whether a lock whose file starts with ``head`` and is ``age`` seconds old may be broken.

    An age below zero (a lockfile dated in the future: a clock stepped back,
    a restored backup) counts as much as the same age past: every lock
    becomes breakable in time, whatever its file says.
    """
    age = abs(age)
    fields = _fields(head)
    if fields is None:
        return age > UNREADABLE_GRACE
    _, host, boot, pid, start = fields
    if host != HOST:
        return age > stale_after
    if boot != BOOT:  # this host rebooted since: every holder then is gone
        return True
    return not _holder_alive(int(pid), start)


def written_by_0_1(head: bytes) -> bool:
    """Whether ``head`` starts with 0.1's holder line: its host field has no PID namespace (no "/").

    Every file this version writes names the namespace, so a file with 0.1's
    line was written by 0.1 and never since: the proof that a file at an id's
    0.1 path is 0.1's session, not the record of a session whose stored name
    looks like an id.
    """
    fields = _fields(head)
    return fields is not None and b"/" not in fields[1]


def describe(head: bytes, age: float) -> dict[str, Any]:
    """Who holds a lock whose file starts with ``head`` and is ``age`` seconds old, for logs and errors.

    ``host``, ``pid`` (None when unreadable), ``age`` in seconds, and
    ``alive``: True or False for a holder in this host's PID namespace, None
    where that cannot be known (another host or namespace, no holder line).
    """
    fields = _fields(head if b"\n" in head else head + b"\n")
    if fields is None:
        return {"host": None, "pid": None, "age": round(age, 3), "alive": None}
    _, host, boot, pid, start = fields
    name = host.rpartition(b"/")[0].decode("ascii", "replace")
    alive = _holder_alive(int(pid), start) if host == HOST and boot == BOOT else None
    return {"host": name, "pid": int(pid), "age": round(age, 3), "alive": alive}


def summary(holder: dict[str, Any]) -> str:
    """``describe``'s answer in words: "pid 42 on web-1, alive, locked 3.2 s ago"."""
    if holder["pid"] is None:
        return f"holder unknown, locked {holder['age']:.1f} s ago"
    state = {True: "alive", False: "dead", None: "liveness unknown"}[holder["alive"]]
    return f"pid {holder['pid']} on {holder['host']}, {state}, locked {holder['age']:.1f} s ago"


def holder_of(lock_path: bytes) -> dict[str, Any] | None:
    """``describe`` of a lockfile; None when it is gone."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return describe(os.read(fd, 512), time.time() - os.fstat(fd).st_mtime)
    except OSError:
        return None
    finally:
        os.close(fd)


# What break_if_stale found.
BROKEN = "broken"  # a stale lock, removed by this call (with dry_run: that would be)
GONE = "gone"  # released, or broken by another waiter, meanwhile: try to lock again
HELD = "held"  # a live holder's lock


def break_if_stale(lock_path: bytes, stale_after: float, dry_run: bool = False) -> str:
    """Remove the lockfile if its holder is gone: BROKEN, GONE or HELD.

    Race-free among breakers: they serialise on flock() of the stale inode, and
    the one that gets it removes the path only while the path still names that
    same inode. A lock taken since then is a new inode and is never removed.
    """
    try:
        # O_NONBLOCK: a FIFO in place of a lockfile must not hang the waiter.
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return GONE
    try:
        seen = os.fstat(fd)
        if not is_stale(os.read(fd, 512), time.time() - seen.st_mtime, stale_after):
            return HELD
        if dry_run:
            return BROKEN
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = os.lstat(lock_path)
        except FileNotFoundError:
            return GONE
        if (now.st_ino, now.st_dev) != (seen.st_ino, seen.st_dev):
            return GONE  # another breaker won, or the lock was released and retaken
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            return GONE
        return BROKEN
    finally:
        os.close(fd)
