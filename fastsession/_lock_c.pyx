"""O_EXCL lockfiles, compiled twin of ``_lock_py``.

Creating the lockfile and writing its holder line is one nogil call; only a
lock that is already taken drops into Python (the waiting in _lock_py, which
both twins share).
"""

from libc.errno cimport EEXIST, errno
from posix.unistd cimport close, unlink

from fastsession._posix cimport create_lockfile, owns_fd, raise_oserror

from fastsession._lock_py import wait_to_lock


cdef int lock_once(bytes lock_path, bytes record) except -2:
    cdef const char *path = lock_path
    cdef const char *rec = record
    cdef Py_ssize_t size = len(record)
    cdef int err = 0
    cdef int fd
    with nogil:
        fd = create_lockfile(path, rec, size, &err)
    if fd >= 0:
        return fd
    if err == EEXIST:
        return -1
    raise_oserror(err, lock_path)


def try_lock(bytes lock_path, bytes record):
    """The lockfile's descriptor, with ``record`` written; -1 when it exists (locked)."""
    return lock_once(lock_path, record)


def acquire(bytes lock_path, bytes record, double delay, timeout, double stale_after):
    """Lock, waiting while locked (the shared ``_lock_py.wait_to_lock``: woken when released, else polling).

    Raises LockTimeout after ``timeout`` seconds (None: never), OSError at once
    for any error but EEXIST, and breaks the lock when its holder is gone.
    """
    cdef int fd = lock_once(lock_path, record)
    if fd >= 0:
        return fd
    return wait_to_lock(lock_path, record, delay, timeout, stale_after, try_lock)


def unlock(int fd, bytes lock_path):
    """Release without committing: the lockfile goes, the session file stays as it was.

    A lock that was broken meanwhile (and may be someone else's now) is left alone.
    """
    cdef const char *path = lock_path
    cdef int err = 0
    cdef bint mine
    with nogil:
        mine = owns_fd(fd, path)
        close(fd)
        if mine and unlink(path) != 0:
            err = errno
    if err:
        raise_oserror(err, lock_path)
