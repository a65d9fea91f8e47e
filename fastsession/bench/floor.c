/*
 * The system-call floor of fastsession's hot paths: the very calls that
 * fastsession makes (see `strace` of a round trip), in C, with nothing else.
 * Loaded with ctypes by fastsession.bench.floor; each function runs `n`
 * iterations and returns the elapsed nanoseconds, or -errno on failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define READ_FLAGS (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Lock: create the lockfile with its holder line. Returns the fd or -1. */
static int take_lock(const char *lock, const char *header, size_t hlen) {
    int fd = open(lock, LOCK_FLAGS, 0600);
    if (fd < 0) return -1;
    if (write(fd, header, hlen) != (ssize_t)hlen) { close(fd); unlink(lock); return -1; }
    return fd;
}

/* Read the session: open, fstat (a regular file?), one read, close. */
static int read_whole(const char *path) {
    char buf[16384];
    struct stat st;
    int fd = open(path, READ_FLAGS);
    if (fd < 0) return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) { close(fd); return -1; }
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n < 0 ? -1 : 0;
}

/* Before a commit (ahead of its write) or a release, whether the lockfile is still the one open
   at fd (nobody broke the lock): fstat the descriptor, lstat the path. */
static int still_mine(int fd, const char *lock) {
    struct stat mine, now;
    if (fstat(fd, &mine) < 0 || lstat(lock, &now) < 0) return -1;
    if (mine.st_ino != now.st_ino || mine.st_dev != now.st_dev) { errno = ESTALE; return -1; }
    return 0;
}

static int still_mine_then_close(int fd, const char *lock) {
    return still_mine(fd, lock) < 0 ? -1 : close(fd);
}

/* Locked read-modify-write: lock, read, write the next version into the
   lockfile, rename it over the session (commit and unlock in one step). */
int64_t floor_modify(const char *path, const char *lock, const char *header, size_t hlen,
                     const char *body, size_t blen, long n) {
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = take_lock(lock, header, hlen);
        if (fd < 0 || read_whole(path) < 0) return -errno;
        if (still_mine(fd, lock) < 0 || write(fd, body, blen) != (ssize_t)blen) return -errno;
        if (close(fd) < 0 || rename(lock, path) < 0) return -errno;
    }
    return now_ns() - start;
}

/* Locked read-only: lock, read, unlock. */
int64_t floor_read(const char *path, const char *lock, const char *header, size_t hlen, long n) {
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = take_lock(lock, header, hlen);
        if (fd < 0 || read_whole(path) < 0) return -errno;
        if (still_mine_then_close(fd, lock) < 0 || unlink(lock) < 0) return -errno;
    }
    return now_ns() - start;
}

/* Lock and release alone. */
int64_t floor_lock(const char *lock, const char *header, size_t hlen, long n) {
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = take_lock(lock, header, hlen);
        if (fd < 0 || still_mine_then_close(fd, lock) < 0 || unlink(lock) < 0) return -errno;
    }
    return now_ns() - start;
}

/* Read a whole session file. */
int64_t floor_load(const char *path, long n) {
    int64_t start = now_ns();
    for (long i = 0; i < n; i++)
        if (read_whole(path) < 0) return -errno;
    return now_ns() - start;
}

/* Lock, write the next version into the lockfile, rename it over the session. */
int64_t floor_commit(const char *path, const char *lock, const char *header, size_t hlen,
                     const char *body, size_t blen, long n) {
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = take_lock(lock, header, hlen);
        if (fd < 0 || still_mine(fd, lock) < 0 || write(fd, body, blen) != (ssize_t)blen) return -errno;
        if (close(fd) < 0 || rename(lock, path) < 0) return -errno;
    }
    return now_ns() - start;
}

/* Session ids: getrandom into a 4096-byte pool, 43-character base64url slices. */
int64_t floor_ids(long n) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static unsigned char pool[4096];
    static size_t used = sizeof pool;
    volatile char out[43];
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        if (used + 32 > sizeof pool) {
            if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool) return -errno;
            used = 0;
        }
        const unsigned char *s = pool + used;
        for (int j = 0, k = 0; j < 30; j += 3, k += 4) {
            unsigned v = (s[j] << 16) | (s[j + 1] << 8) | s[j + 2];
            out[k] = alphabet[v >> 18]; out[k + 1] = alphabet[(v >> 12) & 63];
            out[k + 2] = alphabet[(v >> 6) & 63]; out[k + 3] = alphabet[v & 63];
        }
        unsigned v = (s[30] << 16) | (s[31] << 8);
        out[40] = alphabet[v >> 18]; out[41] = alphabet[(v >> 12) & 63]; out[42] = alphabet[(v >> 6) & 63];
        used += 32;
    }
    return now_ns() - start;
}
