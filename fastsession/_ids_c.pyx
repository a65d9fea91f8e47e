"""Session ids, compiled twin of ``_ids_py``.

The kernel is read 4096 bytes at a time (one getrandom call per 128 ids);
each id is cut from that pool. A forked child must never hand out the bytes
its parent also holds, so a pthread_atfork child hook empties the pool.
"""

from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
)
from libc.errno cimport EINTR, errno

cdef extern from "Python.h":
    str PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
from libc.string cimport memcpy, memset

from fastsession._posix cimport getrandom, pthread_atfork, raise_oserror

cdef enum:
    POOL_BYTES = 4096
    ID_BYTES = 32
    ID_CHARS = 43

cdef unsigned char pool[POOL_BYTES]
cdef Py_ssize_t pool_used = POOL_BYTES  # empty until the first id
cdef const char *ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
cdef unsigned char VALID[256]


cdef void empty_pool_in_child() noexcept nogil:
    global pool_used
    memset(pool, 0, POOL_BYTES)
    pool_used = POOL_BYTES


cdef int refill() except -1:
    global pool_used
    cdef unsigned char fresh[POOL_BYTES]
    cdef Py_ssize_t got = 0
    cdef ssize_t n
    cdef int err = 0
    with nogil:
        while got < POOL_BYTES:
            n = getrandom(&fresh[got], POOL_BYTES - got, 0)
            if n < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            got += n
    if err:
        raise_oserror(err, None)
    # Copied under the GIL: no other thread can take an id half-way through.
    memcpy(pool, fresh, POOL_BYTES)
    memset(fresh, 0, POOL_BYTES)
    pool_used = 0
    return 0


cdef inline void encode_b64url(const unsigned char *src, char *dst) noexcept nogil:
    # 32 bytes: ten 3-byte groups give 40 characters, the last 2 bytes give 3.
    cdef unsigned int v
    cdef int i = 0
    cdef int j = 0
    while i < 30:
        v = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2]
        dst[j] = ALPHABET[(v >> 18) & 63]
        dst[j + 1] = ALPHABET[(v >> 12) & 63]
        dst[j + 2] = ALPHABET[(v >> 6) & 63]
        dst[j + 3] = ALPHABET[v & 63]
        i += 3
        j += 4
    v = (src[30] << 16) | (src[31] << 8)
    dst[40] = ALPHABET[(v >> 18) & 63]
    dst[41] = ALPHABET[(v >> 12) & 63]
    dst[42] = ALPHABET[(v >> 6) & 63]


def new_session_id():
    """32 bytes from the OS CSPRNG (getrandom), base64url without padding: 43 characters."""
    global pool_used
    if pool_used + ID_BYTES > POOL_BYTES:
        refill()
    # Encoded straight into a new ASCII str: no intermediate buffer, no decode.
    cdef str out = PyUnicode_New(ID_CHARS, 127)
    encode_b64url(&pool[pool_used], <char *>PyUnicode_1BYTE_DATA(out))
    memset(&pool[pool_used], 0, ID_BYTES)  # a handed-out id stays only in its str
    pool_used += ID_BYTES
    return out


def is_valid_id(value):
    """True when ``value`` is a str of exactly 43 characters of ``[A-Za-z0-9_-]``."""
    cdef Py_ssize_t i
    cdef const unsigned char *chars
    if not isinstance(value, str):
        return False
    if PyUnicode_GET_LENGTH(value) != ID_CHARS or PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND:
        return False
    chars = PyUnicode_1BYTE_DATA(value)
    for i in range(ID_CHARS):
        if not VALID[chars[i]]:
            return False
    return True


cdef int init() except -1:
    cdef int i
    memset(VALID, 0, 256)
    for i in range(64):
        VALID[<unsigned char>ALPHABET[i]] = 1
    if pthread_atfork(NULL, NULL, empty_pool_in_child) != 0:
        raise RuntimeError("pthread_atfork failed")
    return 0


init()
