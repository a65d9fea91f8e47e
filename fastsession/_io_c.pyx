"""Read + decode and encode + commit, compiled twin of ``_io_py``.

Each system-call sequence runs in one nogil block; Python objects are made
only for the result (the body bytes and orjson's decoded dict).
"""

import os

from libc.errno cimport EEXIST, EINTR, ELOOP, ENOENT, errno
from libc.string cimport memchr, memcmp
from posix.fcntl cimport O_CLOEXEC, O_CREAT, O_EXCL, O_NONBLOCK, O_RDONLY, O_WRONLY, open
from posix.stat cimport S_ISREG, struct_stat
from posix.unistd cimport close, fsync, read, unlink, write

from fastsession._posix cimport O_NOFOLLOW, create_lockfile, fstat, owns_fd, raise_oserror, rename

from orjson import JSONDecodeError, loads

from fastsession import _io_py
from fastsession._holder import MAGIC
from fastsession.errors import CorruptSession
from fastsession._ids_c import session_path
from fastsession._io_py import not_a_file, symlink_found
from fastsession._lock_py import lock_lost

cdef int READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK
cdef int TEMP_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
cdef bytes MAGIC_BYTES = MAGIC
cdef enum:
    CHUNK = 16384  # the same as the pure twin: one read


cdef int open_retry(const char *path, int flags) noexcept nogil:
    cdef int fd
    while True:
        fd = open(path, flags, 0o600)
        if fd >= 0 or errno != EINTR:
            return fd


cdef ssize_t read_retry(int fd, char *buf, size_t size) noexcept nogil:
    cdef ssize_t n
    while True:
        n = read(fd, buf, size)
        if n >= 0 or errno != EINTR:
            return n


cdef int read_small(const char *path, char *buf, ssize_t *n, struct_stat *st, bint *opened) noexcept nogil:
    # One read of up to CHUNK bytes of a regular file; 0, or the errno of the first failure
    # (opened says whether it came after the open). n stays -1 for anything but a regular file.
    cdef int err = 0
    cdef int fd = open_retry(path, READ_FLAGS)
    n[0] = -1
    opened[0] = fd >= 0
    if fd < 0:
        return errno
    if fstat(fd, st) != 0:  # the descriptor we read: no race with the path
        err = errno
    elif S_ISREG(st.st_mode):
        n[0] = read_retry(fd, buf, CHUNK)
        if n[0] < 0:
            err = errno
    if close(fd) != 0 and not err:
        err = errno
    return err


cdef object body_of(const char *buf, ssize_t n):
    # The JSON document after the holder line; None when there is no holder line.
    cdef const char *newline
    if n > 0 and buf[0] == b"{":  # a plain JSON document, written without a holder line
        return buf[:n]
    newline = <const char *>memchr(buf, b"\n", n)
    if newline == NULL or n < len(MAGIC_BYTES) or memcmp(buf, <const char *>MAGIC_BYTES, len(MAGIC_BYTES)) != 0:
        return None
    return buf[newline - buf + 1 : n]


cdef inline double mtime_of(struct_stat *st) noexcept nogil:
    return st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9


cdef object parsed(const char *buf, ssize_t n, struct_stat *st, bint want_mtime):
    # (data, body, mtime) of one read's bytes; None when they are no session (_io_py.parse says why).
    body = body_of(buf, n)
    if body is None:
        return None
    try:
        data = loads(body)
    except JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    return data, body, mtime_of(st) if want_mtime else 0.0


def read_session(bytes path, bint want_mtime):
    """(data, body, mtime) of the session file; None when there is none.

    ``mtime`` is 0.0 unless ``want_mtime``. Raises CorruptSession for bytes
    that are not a session, for a symlink in its place (never followed), for
    anything but a regular file (a FIFO, a device, a directory: opened
    without blocking, never read) and for a file over MAX_SESSION_BYTES;
    OSError (naming the path) for anything else.
    """
    cdef const char *cpath = path
    cdef char buf[CHUNK]
    cdef int err
    cdef bint opened
    cdef ssize_t n
    cdef struct_stat st
    with nogil:
        err = read_small(cpath, buf, &n, &st, &opened)
    if err:
        if not opened and err == ENOENT:
            return None
        if not opened and err == ELOOP:
            raise symlink_found(path)
        raise_oserror(err, path)
    if n < 0:
        raise not_a_file(path)
    if n == CHUNK:  # a large session: the pure twin's loop reads the rest
        return _io_py.read_session(path, want_mtime)
    loaded = parsed(buf, n, &st, want_mtime)
    if loaded is None:
        _io_py.parse(buf[:n], path)  # raises the twins' one CorruptSession for these bytes
    return loaded


def open_session(bytes directory, key, bytes record, bint want_mtime):
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
    cdef const char *cpath = path
    cdef const char *clock = lock_path
    cdef const char *crecord = record
    cdef Py_ssize_t record_size = len(record)
    cdef char buf[CHUNK]
    cdef int lock_err = 0
    cdef int err = 0
    cdef int fd
    cdef bint opened = False
    cdef ssize_t n = -1
    cdef struct_stat st
    with nogil:
        fd = create_lockfile(clock, crecord, record_size, &lock_err)
        if fd >= 0:
            err = read_small(cpath, buf, &n, &st, &opened)
            if err and (opened or (err != ENOENT and err != ELOOP)):  # what read_session raises as OSError
                close(fd)
                unlink(clock)
    if fd < 0:
        if lock_err == EEXIST or lock_err == ENOENT:
            return None
        raise_oserror(lock_err, lock_path)
    if err and (opened or (err != ENOENT and err != ELOOP)):
        raise_oserror(err, path)
    try:
        handle = (path, lock_path, fd, key)
        return handle, loaded_of(buf, n, &st, err, path, want_mtime)
    except BaseException:  # an error, an interrupt: the lock just taken must not outlive this call
        close(fd)
        unlink(clock)
        raise


cdef object loaded_of(const char *buf, ssize_t n, struct_stat *st, int err, bytes path, bint want_mtime):
    # What read_session gives for open_session's one read; None where it gives None or raises CorruptSession.
    if err or n < 0:  # absent, a symlink, not a regular file
        return None
    if n == CHUNK:  # a large session: the pure twin's loop reads the rest
        try:
            return _io_py.read_session(path, want_mtime)
        except CorruptSession:
            return None
    return parsed(buf, n, st, want_mtime)


cdef enum:
    LOCK_LOST = -1


cdef int fill_and_rename(int fd, const char *data, Py_ssize_t size, const char *source,
                         const char *target, bint sync, bint locked) noexcept nogil:
    # Returns 0; the errno of the first failure, after removing `source`; or
    # LOCK_LOST when `source` is a locked file that is no longer the one at
    # `fd`: another holder's now, so neither renamed nor removed.
    cdef ssize_t done
    cdef int err = 0
    # Checked before writing: a descriptor inherited across fork() may name the file a child process
    # already renamed over the session; writing through it would corrupt that session.
    if locked and not owns_fd(fd, source):
        close(fd)
        return LOCK_LOST
    while size > 0:
        done = write(fd, data, size)
        if done < 0:
            if errno == EINTR:
                continue
            err = errno
            break
        data += done
        size -= done
    if not err and sync and fsync(fd) != 0:
        err = errno
    if close(fd) != 0 and not err:
        err = errno
    if not err and rename(source, target) != 0:
        err = errno
    if err:
        unlink(source)
    return err


cdef int commit(int fd, bytes data, bytes source, bytes target, bint sync, bint locked) except -1:
    cdef const char *cdata = data
    cdef Py_ssize_t size = len(data)
    cdef const char *csource = source
    cdef const char *ctarget = target
    cdef int err
    with nogil:
        err = fill_and_rename(fd, cdata, size, csource, ctarget, sync, locked)
    if err == LOCK_LOST:
        raise lock_lost(source)
    if err:
        raise_oserror(err, source)
    if sync:
        _io_py._fsync_dir(target)
    return 0


def commit_locked(int fd, bytes lock_path, bytes path, bytes body, bint fsync):
    """Write ``body`` after the holder line in the lockfile and rename it over the session.

    Commit and unlock in one step. On any error the lockfile is removed (the
    lock released), the session file is as it was, and OSError names the path.
    A lock that was broken meanwhile raises SessionError: nothing is written,
    the lockfile (another holder's now) is left alone.
    """
    commit(fd, body, lock_path, path, fsync, True)


def write_unlocked(bytes temp_path, bytes path, bytes record, bytes body, bint fsync):
    """Write holder line and ``body`` to a new ``temp_path`` and rename it over the session."""
    cdef const char *ctemp = temp_path
    cdef int fd
    cdef int err = 0
    with nogil:
        fd = open_retry(ctemp, TEMP_FLAGS)
        if fd < 0:
            err = errno
    if fd < 0:
        raise_oserror(err, temp_path)
    commit(fd, record + body, temp_path, path, fsync, False)
