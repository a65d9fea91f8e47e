# System calls the compiled kernels make, beyond Cython's own posix/*.pxd,
# and the one place an errno becomes the OSError subclass the pure twins raise.

cdef extern from "<sys/random.h>" nogil:
    ssize_t getrandom(void *buf, size_t buflen, unsigned int flags)

cdef extern from "<pthread.h>" nogil:
    ctypedef void (*fork_hook)() noexcept nogil
    int pthread_atfork(fork_hook prepare, fork_hook parent, fork_hook child)

cdef extern from "<fcntl.h>" nogil:
    enum: O_NOFOLLOW

cdef extern from "<stdio.h>" nogil:
    int rename(const char *oldpath, const char *newpath)


cdef inline int raise_oserror(int err, object path) except -1:
    # OSError(errno, ...) picks the subclass (FileExistsError, PermissionError,
    # ...) exactly as os.open and friends do in the pure twins.
    import os
    raise OSError(err, os.strerror(err), path)
