"""Read + decode and encode + commit, pure-Python twin of ``_io_c``.

A session file is the holder line of its last writer (see _holder) followed
by one orjson document; orjson never writes a raw newline, so the first
newline ends the holder line. A file that is just a JSON object (written by
another tool) reads as well.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

import orjson

from . import _syscalls as sc
from ._holder import MAGIC
from ._ids_py import session_path
from ._lock_py import lock_lost, owns, try_lock
from ._syscalls import named
from .errors import CorruptSession

# O_NONBLOCK: a FIFO planted in place of a session must not hang the request.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 16384  # most sessions fit: one read
MAX_SESSION_BYTES = 16 << 20  # more is no session: a file that large counts as corrupt


def symlink_found(path: bytes) -> CorruptSession:
    return CorruptSession(f"{os.fsdecode(path)}: a symbolic link where a session should be (not followed)")


def not_a_file(path: bytes) -> CorruptSession:
    return CorruptSession(f"{os.fsdecode(path)}: not a regular file (never read)")


def too_large(path: bytes) -> CorruptSession:
    return CorruptSession(f"{os.fsdecode(path)}: larger than {MAX_SESSION_BYTES} bytes")


def no_holder_line(path: bytes) -> CorruptSession:
    return CorruptSession(f"{os.fsdecode(path)}: no holder line")


def decode_body(body: bytes, path: bytes) -> dict[str, Any]:
    """The session's data; CorruptSession when ``body`` is not one JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CorruptSession(f"{os.fsdecode(path)}: {exc}") from None
    if type(data) is not dict:
        raise CorruptSession(f"{os.fsdecode(path)}: not a JSON object")
    return data


def read_session(path: bytes, want_mtime: bool) -> tuple[dict[str, Any], bytes, float] | None:
    """(data, body, mtime) of the session file; None when there is none.

    ``mtime`` is 0.0 unless ``want_mtime``. Raises CorruptSession for bytes
    that are not a session, for a symlink in its place (never followed), for
    anything but a regular file (a FIFO, a device, a directory: opened
    without blocking, never read) and for a file over MAX_SESSION_BYTES;
    OSError (naming the path) for anything else.
    """
    try:
        fd = sc.open(path, READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_found(path) from None
        raise
    try:
        try:
            status = sc.fstat(fd)  # the descriptor we read: no race with the path
            if not stat.S_ISREG(status.st_mode):
                raise not_a_file(path)
            raw = sc.read(fd, CHUNK)
            if len(raw) == CHUNK:  # a short read of a regular file is its end
                parts = [raw]
                size = len(raw)
                while size <= MAX_SESSION_BYTES:
                    more = sc.read(fd, 1 << 20)
                    if not more:
                        break
                    parts.append(more)
                    size += len(more)
                if size > MAX_SESSION_BYTES:
                    raise too_large(path)
                raw = b"".join(parts)
        finally:
            sc.close(fd)
    except OSError as exc:
        raise named(exc, path) from None
    data, body = parse(raw, path)
    return data, body, status.st_mtime if want_mtime else 0.0


def open_session(
    directory: bytes, key: object, record: bytes, want_mtime: bool
) -> tuple[tuple[bytes, bytes, int, str], tuple[dict[str, Any], bytes, float] | None] | None:
    """Lock and read the session of id ``key`` in one call: ``session_path``, ``try_lock`` and ``read_session``.

    ((path, lock path, descriptor, key), (data, body, mtime)) when it is
    locked and read; (that handle, None) when it is locked and there is no
    session to give (absent, or what read_session calls corrupt: the
    caller's load reads it again, looks for a 0.1 file, logs the corrupt
    one); None when nothing is locked (not an id, locked by another, no
    shard folder yet: the caller's full path raises, waits or makes the
    folder). Any other error raises as try_lock and read_session raise it,
    with the lock just taken released.
    """
    path = session_path(directory, key)
    if path is None:
        return None
    lock_path = path + b".lock"
    try:
        fd = try_lock(lock_path, record)
    except FileNotFoundError:
        return None
    if fd < 0:
        return None
    try:
        handle = (path, lock_path, fd, key)
        try:
            return handle, read_session(path, want_mtime)  # type: ignore[return-value]  # key is an id: a str
        except CorruptSession:
            return handle, None  # type: ignore[return-value]
    except BaseException:  # an error, an interrupt: the lock just taken must not outlive this call
        try:
            sc.close(fd)
        finally:
            sc.unlink(lock_path)
        raise


def parse(raw: bytes, path: bytes) -> tuple[dict[str, Any], bytes]:
    """(data, body) of a session file's bytes: the holder line skipped, the JSON decoded."""
    if raw[:1] == b"{":  # a plain JSON document, written without a holder line
        body = raw
    else:
        end = raw.find(b"\n")
        if end < 0 or not raw.startswith(MAGIC):
            raise no_holder_line(path)
        body = raw[end + 1 :]
    return decode_body(body, path), body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[sc.write(fd, view) :]


def _fsync_dir(path: bytes) -> None:
    directory = os.path.dirname(path) or b"."
    fd = sc.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            sc.fsync(fd)
        finally:
            sc.close(fd)
    except OSError as exc:
        raise named(exc, directory) from None


def _discard(path: bytes) -> None:
    try:
        sc.unlink(path)
    except OSError:
        pass  # the error that brought us here is the one to report


def _fill_and_rename(fd: int, data: bytes, source: bytes, target: bytes, fsync: bool, locked: bool) -> None:
    mine = True
    try:
        try:
            # A lock broken meanwhile is another holder's file now: never written, renamed over the session
            # or removed. Checked before writing: a descriptor inherited across fork() may name the file a
            # child process already renamed over the session, which a write would corrupt.
            mine = not locked or owns(fd, source)
            if mine:
                _write_all(fd, data)
                if fsync:
                    sc.fsync(fd)
        finally:
            sc.close(fd)
        if not mine:
            raise lock_lost(source)
        sc.rename(source, target)
    except OSError as exc:
        if mine:
            _discard(source)
        raise named(exc, source) from None
    if fsync:
        _fsync_dir(target)


def commit_locked(fd: int, lock_path: bytes, path: bytes, body: bytes, fsync: bool) -> None:
    """Write ``body`` after the holder line in the lockfile and rename it over the session.

    Commit and unlock in one step. On any error the lockfile is removed (the
    lock released), the session file is as it was, and OSError names the path.
    A lock that was broken meanwhile raises SessionError: nothing is written,
    the lockfile (another holder's now) is left alone.
    """
    _fill_and_rename(fd, body, lock_path, path, fsync, True)


def write_unlocked(temp_path: bytes, path: bytes, record: bytes, body: bytes, fsync: bool) -> None:
    """Write holder line and ``body`` to a new ``temp_path`` and rename it over the session."""
    fd = sc.open(temp_path, TEMP_FLAGS, 0o600)
    _fill_and_rename(fd, record + body, temp_path, path, fsync, False)
