/* System calls the kernels make without the glibc wrappers that would raise
 * the wheel's glibc floor: getrandom() has a wrapper only since glibc 2.25
 * (manylinux2014 has 2.17, without <sys/random.h>), and fstat()/lstat() are
 * exported symbols only since 2.33. On Linux with glibc on x86_64 and
 * aarch64, whose struct stat is the kernel's, they go to the kernel through
 * syscall(); elsewhere (musl, other systems) the libc functions are used. */
#ifndef FASTSESSION_COMPAT_H
#define FASTSESSION_COMPAT_H

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(__linux__) && !defined(SYS_getrandom)
#if defined(__x86_64__)
#define SYS_getrandom 318
#elif defined(__aarch64__)
#define SYS_getrandom 278
#elif defined(__i386__)
#define SYS_getrandom 355
#endif
#endif

#if defined(__linux__) && defined(__GLIBC__) && (defined(__x86_64__) || defined(__aarch64__))
#define FASTSESSION_RAW_STAT 1
#endif

/* -1 with errno ENOSYS where the kernel (before Linux 3.17) or the system has no getrandom. */
static inline ssize_t fastsession_getrandom(void *buf, size_t size, unsigned int flags)
{
#if defined(SYS_getrandom)
    return syscall(SYS_getrandom, buf, size, flags);
#else
    (void)buf; (void)size; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static inline int fastsession_fstat(int fd, struct stat *st)
{
#ifdef FASTSESSION_RAW_STAT
    return (int)syscall(SYS_fstat, fd, st);
#else
    return fstat(fd, st);
#endif
}

static inline int fastsession_lstat(const char *path, struct stat *st)
{
#ifdef FASTSESSION_RAW_STAT
    return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
#else
    return lstat(path, st);
#endif
}

#endif
