"""O_EXCL lockfiles, compiled twin of ``_lock_py``.

Creating the lockfile and writing its holder line is one nogil call; only a
lock that is already taken drops into Python (the holder check in _holder).
"""

import os

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EEXIST, EINTR, ENOENT, ENOSPC, errno
from posix.fcntl cimport O_CLOEXEC, O_CREAT, O_EXCL, O_WRONLY, open
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, nanosleep, time_t, timespec
from posix.unistd cimport close, unlink, write

from fastsession._posix cimport O_NOFOLLOW, owns_fd, raise_oserror

from fastsession._holder import HELD, break_if_stale
from fastsession.errors import LockTimeout

cdef int LOCK_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
cdef double FIRST_PAUSE = 0.00005
cdef double MAX_PAUSE = 0.05
cdef double CHECK_HOLDER_AFTER = 0.002


cdef int create_lockfile(const char *path, const char *record, Py_ssize_t size, int *err) noexcept nogil:
    cdef int fd
    cdef ssize_t done
    while True:
        fd = open(path, LOCK_FLAGS, 0o600)
        if fd >= 0 or errno != EINTR:
            break
    if fd < 0:
        err[0] = errno
        return -1
    while True:
        done = write(fd, record, size)
        if done >= 0 or errno != EINTR:
            break
    if done != size:
        err[0] = errno if done < 0 else ENOSPC
        close(fd)
        unlink(path)
        return -1
    return fd


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


cdef double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int sleep_for(double seconds) except -1:
    cdef timespec ts
    ts.tv_sec = <time_t>seconds
    ts.tv_nsec = <long>((seconds - <double>ts.tv_sec) * 1e9)
    with nogil:
        nanosleep(&ts, NULL)
    PyErr_CheckSignals()  # a Ctrl-C while waiting must not wait for the lock
    return 0


def acquire(bytes lock_path, bytes record, double delay, timeout, double stale_after):
    """Lock, polling while locked: pauses start at 50 µs and double up to min(delay, 50 ms).

    Raises LockTimeout after ``timeout`` seconds (None: never), OSError at once
    for any error but EEXIST, and breaks the lock when its holder is gone.
    """
    cdef int fd = lock_once(lock_path, record)
    if fd >= 0:
        return fd
    cdef double start = monotonic()
    cdef double waited
    cdef bint has_timeout = timeout is not None
    cdef double limit = timeout if has_timeout else 0.0
    cdef double max_pause = min(delay, MAX_PAUSE)
    cdef double pause = min(FIRST_PAUSE, max_pause)
    cdef bint timed_out
    while True:
        waited = monotonic() - start
        timed_out = has_timeout and waited >= limit
        # A dead holder's lock is broken whatever the timeout, timeout=0 included.
        if (waited >= CHECK_HOLDER_AFTER or timed_out) and break_if_stale(lock_path, stale_after) != HELD:
            pause = min(FIRST_PAUSE, max_pause)
        elif timed_out:
            raise LockTimeout(
                f"session lock {os.fsdecode(lock_path)!r} still held after {timeout} s"
            )
        else:
            if has_timeout:
                pause = min(pause, max(limit - waited, 0.0))
            sleep_for(pause)
            pause = min(pause * 2, max_pause)
        fd = lock_once(lock_path, record)
        if fd >= 0:
            return fd


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
