# System calls the compiled kernels make, beyond Cython's own posix/*.pxd, the
# lockfile's creation that two kernels share, and the one place an errno
# becomes the OSError subclass the pure twins raise.

from posix.stat cimport struct_stat

# getrandom, fstat and lstat without the glibc symbols that would raise the wheel's glibc floor.
cdef extern from "_compat.h" nogil:
    ssize_t getrandom "fastsession_getrandom" (void *buf, size_t buflen, unsigned int flags)
    int fstat "fastsession_fstat" (int fd, struct_stat *st)
    int lstat "fastsession_lstat" (const char *path, struct_stat *st)

cdef extern from "<pthread.h>" nogil:
    ctypedef void (*fork_hook)() noexcept nogil
    int pthread_atfork(fork_hook prepare, fork_hook parent, fork_hook child)

cdef extern from "<fcntl.h>" nogil:
    enum: O_NOFOLLOW

cdef extern from "<stdio.h>" nogil:
    int rename(const char *oldpath, const char *newpath)

from libc.errno cimport EINTR, ENOENT, ENOSPC, errno
from posix.fcntl cimport O_CLOEXEC, O_CREAT, O_EXCL, O_WRONLY, open
from posix.unistd cimport close, unlink, write


cdef inline bint owns_fd(int fd, const char *lock_path) noexcept nogil:
    # Whether lock_path still names the file open at fd: false once the lock
    # was broken (removed, maybe retaken by another holder). An error that
    # proves nothing (not ENOENT) counts as owning: the caller acts as before.
    cdef struct_stat mine, now
    if fstat(fd, &mine) != 0:
        return True
    if lstat(lock_path, &now) != 0:
        return errno != ENOENT
    return now.st_ino == mine.st_ino and now.st_dev == mine.st_dev


cdef inline int create_lockfile(const char *path, const char *record, Py_ssize_t size, int *err) noexcept nogil:
    # The lock protocol's first step, shared by the lock kernel and the fused open_session:
    # O_EXCL-create the lockfile and write the holder line; its descriptor, or -1 and the
    # errno in err (EEXIST: locked). A short write removes the lockfile again.
    cdef int fd
    cdef ssize_t done
    while True:
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
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


cdef inline int raise_oserror(int err, object path) except -1:
    # OSError(errno, ...) picks the subclass (FileExistsError, PermissionError,
    # ...) exactly as os.open and friends do in the pure twins.
    import os
    raise OSError(err, os.strerror(err), path)
