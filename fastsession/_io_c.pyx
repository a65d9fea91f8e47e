"""Read + decode and encode + commit, compiled twin of ``_io_py``.

Each system-call sequence runs in one nogil block; Python objects are made
only for the result (the body bytes and orjson's decoded dict).
"""

import os

from libc.errno cimport EINTR, ELOOP, ENOENT, errno
from libc.string cimport memchr, memcmp
from posix.fcntl cimport O_CLOEXEC, O_CREAT, O_EXCL, O_NONBLOCK, O_RDONLY, O_WRONLY, open
from posix.stat cimport S_ISREG, struct_stat
from posix.unistd cimport close, fsync, read, unlink, write

from fastsession._posix cimport O_NOFOLLOW, fstat, owns_fd, raise_oserror, rename

from orjson import JSONDecodeError, loads

from fastsession import _io_py
from fastsession._holder import MAGIC
from fastsession._io_py import decode_body, no_holder_line, not_a_file, symlink_found
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
    cdef int fd
    cdef int err = 0
    cdef bint regular = True
    cdef ssize_t n = 0
    cdef struct_stat st
    cdef double mtime = 0.0
    cdef const char *newline
    with nogil:
        fd = open_retry(cpath, READ_FLAGS)
        if fd < 0:
            err = errno
        else:
            if fstat(fd, &st) != 0:  # the descriptor we read: no race with the path
                err = errno
            elif not S_ISREG(st.st_mode):
                regular = False
            else:
                n = read_retry(fd, buf, CHUNK)
                if n < 0:
                    err = errno
            if close(fd) != 0 and not err:
                err = errno
    if err:
        if fd < 0 and err == ENOENT:
            return None
        if fd < 0 and err == ELOOP:
            raise symlink_found(path)
        raise_oserror(err, path)
    if not regular:
        raise not_a_file(path)
    if n == CHUNK:  # a large session: the pure twin's loop reads the rest
        return _io_py.read_session(path, want_mtime)
    if want_mtime:
        mtime = st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9
    if n > 0 and buf[0] == b"{":  # a plain JSON document, written without a holder line
        body = buf[:n]
    else:
        newline = <const char *>memchr(buf, b"\n", n)
        if newline == NULL or n < len(MAGIC_BYTES) or memcmp(buf, <const char *>MAGIC_BYTES, len(MAGIC_BYTES)) != 0:
            raise no_holder_line(path)
        body = buf[newline - buf + 1 : n]
    try:
        data = loads(body)
    except JSONDecodeError:
        data = None
    if type(data) is not dict:
        decode_body(body, path)  # raises the twins' one CorruptSession for this body
    return data, body, mtime


cdef enum:
    LOCK_LOST = -1


cdef int fill_and_rename(int fd, const char *data, Py_ssize_t size, const char *source,
                         const char *target, bint sync, bint locked) noexcept nogil:
    # Returns 0; the errno of the first failure, after removing `source`; or
    # LOCK_LOST when `source` is a locked file that is no longer the one at
    # `fd`: another holder's now, so neither renamed nor removed.
    cdef ssize_t done
    cdef int err = 0
    cdef bint mine = True
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
    if locked:
        mine = owns_fd(fd, source)
    if close(fd) != 0 and not err:
        err = errno
    if not mine:
        return LOCK_LOST
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
