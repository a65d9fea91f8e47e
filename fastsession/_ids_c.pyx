"""Session ids and their stored names, compiled twin of ``_ids_py``.

The kernel is read 4096 bytes at a time (one getrandom call per 128 ids);
each id is cut from that pool. A forked child must never hand out the bytes
its parent also holds, so a pthread_atfork child hook empties the pool.

A stored name is SHA-256 of the id (fastsession.names). An id is 43 ASCII
bytes: one SHA-256 block, hashed here without hashlib's object, its OpenSSL
context and the base64 round trip (FIPS 180-4, section 6.2): with the CPU's
SHA instructions where it has them (``_sha256.h``), else in portable C.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
)
from libc.errno cimport EINTR, ENOSYS, errno
from libc.stdint cimport uint32_t

cdef extern from "Python.h":
    str PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
from libc.string cimport memcpy, memset

from fastsession._posix cimport getrandom, pthread_atfork, raise_oserror

cdef extern from "_sha256.h" nogil:
    int fastsession_has_sha_ni()
    void fastsession_sha256_block_ni(uint32_t *state, const unsigned char *block, const uint32_t *k)
    void fastsession_sha256_block_portable(uint32_t *state, const unsigned char *block, const uint32_t *k)

import os

from fastsession import _ids_py

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
    if err == ENOSYS:  # a kernel before Linux 3.17: the pool comes from os.urandom (/dev/urandom) instead
        spare = os.urandom(POOL_BYTES)
        memcpy(fresh, <const char *>spare, POOL_BYTES)
    elif err:
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


cdef const unsigned char *id_chars(object value) noexcept:
    # The 43 ASCII bytes of an id, or NULL when ``value`` is not one.
    cdef Py_ssize_t i
    cdef const unsigned char *chars
    if not isinstance(value, str):
        return NULL
    if PyUnicode_GET_LENGTH(value) != ID_CHARS or PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND:
        return NULL
    chars = PyUnicode_1BYTE_DATA(value)
    for i in range(ID_CHARS):
        if not VALID[chars[i]]:
            return NULL
    return chars


def is_valid_id(value):
    """True when ``value`` is a str of exactly 43 characters of ``[A-Za-z0-9_-]``."""
    return id_chars(value) != NULL


# FIPS 180-4, 4.2.2 and 5.3.3: the round constants and the initial hash value.
cdef uint32_t K[64]
K[:] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]
cdef uint32_t H0[8]
H0[:] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]


cdef bint sha_ni = False  # set by init() when the CPU has the SHA instructions


cdef void sha256_of_id(const unsigned char *chars, unsigned char *digest) noexcept nogil:
    # One block: the 43 bytes, the 0x80 end mark, zeros, the length in bits (344) big-endian.
    cdef unsigned char block[64]
    cdef uint32_t h[8]
    cdef int i
    memcpy(block, chars, ID_CHARS)
    block[ID_CHARS] = 0x80
    memset(&block[ID_CHARS + 1], 0, 64 - ID_CHARS - 1)
    block[62] = (ID_CHARS * 8) >> 8
    block[63] = (ID_CHARS * 8) & 0xFF
    memcpy(h, H0, sizeof(h))
    if sha_ni:
        fastsession_sha256_block_ni(h, block, K)
    else:
        fastsession_sha256_block_portable(h, block, K)
    for i in range(8):
        digest[4 * i] = h[i] >> 24
        digest[4 * i + 1] = (h[i] >> 16) & 0xFF
        digest[4 * i + 2] = (h[i] >> 8) & 0xFF
        digest[4 * i + 3] = h[i] & 0xFF


def _sha256_rounds(portable=None):
    """Which rounds hash stored names: "sha-ni" (the CPU's SHA instructions) or "portable" (C).

    ``portable=True`` makes it the portable rounds, ``False`` the CPU's where it has them (for the tests,
    which check both against hashlib)."""
    global sha_ni
    if portable is not None:
        sha_ni = not portable and fastsession_has_sha_ni() != 0
    return "sha-ni" if sha_ni else "portable"


def stored_name(session_id):
    """SHA-256 of ``session_id``, base64url without padding (43 characters): what storage keeps it under."""
    cdef const unsigned char *chars = id_chars(session_id)
    cdef unsigned char digest[ID_BYTES]
    if chars == NULL:  # not an id (a name asked for by a caller): the general case
        return _ids_py.stored_name(session_id)
    cdef str out = PyUnicode_New(ID_CHARS, 127)
    sha256_of_id(chars, digest)
    encode_b64url(digest, <char *>PyUnicode_1BYTE_DATA(out))
    return out


def session_path(bytes directory, key):
    """``<directory><name[:2]>/<name>`` for the stored name of ``key``; None when ``key`` is not an id."""
    cdef const unsigned char *chars = id_chars(key)
    cdef unsigned char digest[ID_BYTES]
    cdef Py_ssize_t size = PyBytes_GET_SIZE(directory)
    cdef char *out
    if chars == NULL:
        return None
    path = PyBytes_FromStringAndSize(NULL, size + 3 + ID_CHARS)
    out = PyBytes_AS_STRING(path)
    memcpy(out, PyBytes_AS_STRING(directory), size)
    sha256_of_id(chars, digest)
    encode_b64url(digest, &out[size + 3])
    out[size] = out[size + 3]
    out[size + 1] = out[size + 4]
    out[size + 2] = b"/"
    return path


cdef int init() except -1:
    cdef int i
    memset(VALID, 0, 256)
    for i in range(64):
        VALID[<unsigned char>ALPHABET[i]] = 1
    if pthread_atfork(NULL, NULL, empty_pool_in_child) != 0:
        raise RuntimeError("pthread_atfork failed")
    _sha256_rounds(portable=False)
    return 0


init()
