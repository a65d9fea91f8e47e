"""Redis commands and replies as RESP, compiled twin of ``_resp_py`` (read its docstring: the same rules).

``packed``: the pure twin formats each argument with ``%``, about 1.5k
instructions an argument, and a locked read-modify-write on Redis packs about
twenty. Here each argument's bytes are found once (bytes as they are, an
exact str as its UTF-8, an exact int of 64 bits in decimal, anything else as
the pure twin makes it: ``str(arg).encode()``) and the command is written
into one bytes object. A command of more than ``ARGS`` arguments (none of
fastsession's script calls has as many) is the pure twin's.

``reply_of``: each frame read by pointer, its integers in C where they are
plain decimal of at most 18 digits (anything else is read by ``int()``, as the
pure twin reads it, errors included); the reply's classes, its Incomplete
and its error for an unknown frame type are the pure twin's own. Arrays
nested deeper than ``NESTED`` are read by the pure twin, under Python's
recursion limit.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcpy

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    long long PyLong_AsLongLongAndOverflow(object number, int *overflow) except? -1

from fastsession import _resp_py
from fastsession._resp_py import INCOMPLETE, ErrorReply, Push, unexpected

cdef enum:
    ARGS = 32  # arguments packed here at most
    DECIMAL = 24  # room for a 64-bit integer in decimal, its sign included
    DIGITS = 18  # digits read in C (their value fits 64 bits)
    NESTED = 32  # arrays within arrays read here at most


cdef Py_ssize_t write_decimal(char *out, long long value) noexcept nogil:
    # ``value`` in decimal at ``out``; how many characters that took (at most 20).
    cdef char reversed_digits[DECIMAL]
    cdef unsigned long long magnitude = <unsigned long long>value
    cdef Py_ssize_t count = 0, size = 0
    if value < 0:
        magnitude = 0 - magnitude  # (two's complement: LLONG_MIN's magnitude too)
        out[0] = b"-"
        size = 1
    while True:
        reversed_digits[count] = <char>(c'0' + magnitude % 10)
        count += 1
        magnitude //= 10
        if magnitude == 0:
            break
    while count:
        count -= 1
        out[size] = reversed_digits[count]
        size += 1
    return size


cdef inline char *write_line_end(char *out) noexcept nogil:
    out[0] = b"\r"
    out[1] = b"\n"
    return out + 2


def packed(*args):
    """``args`` as one RESP array of bulk strings (bytes as they are, anything else as ``str(arg)`` in UTF-8)."""
    cdef Py_ssize_t count = len(args)
    if count > ARGS:
        return _resp_py.packed(*args)
    cdef const char *data[ARGS]
    cdef Py_ssize_t sizes[ARGS]
    cdef char numbers[ARGS][DECIMAL]
    cdef char scratch[DECIMAL]  # (a size written only to count its digits)
    cdef Py_ssize_t i, total
    cdef long long number = 0
    cdef int overflow
    cdef list held = None  # the bytes made of other arguments, alive until written
    cdef bytes made
    cdef char *out
    total = 3 + write_decimal(scratch, count)  # "*<count>\r\n"
    for i in range(count):
        arg = args[i]
        if type(arg) is bytes:
            data[i] = PyBytes_AS_STRING(arg)
            sizes[i] = PyBytes_GET_SIZE(arg)
        elif type(arg) is str:
            data[i] = PyUnicode_AsUTF8AndSize(arg, &sizes[i])
        else:
            overflow = 1
            if type(arg) is int:
                number = PyLong_AsLongLongAndOverflow(arg, &overflow)
            if overflow == 0:
                sizes[i] = write_decimal(&numbers[i][0], number)
                data[i] = &numbers[i][0]
            else:  # (bool, float, an int past 64 bits, a subclass: str() may be its own)
                made = str(arg).encode()
                if held is None:
                    held = []
                held.append(made)
                data[i] = PyBytes_AS_STRING(made)
                sizes[i] = PyBytes_GET_SIZE(made)
        total += 1 + write_decimal(scratch, sizes[i]) + 2 + sizes[i] + 2  # "$<size>\r\n<data>\r\n"
    result = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(result)
    out[0] = b"*"
    out = write_line_end(out + 1 + write_decimal(out + 1, count))
    for i in range(count):
        out[0] = b"$"
        out = write_line_end(out + 1 + write_decimal(out + 1, sizes[i]))
        memcpy(out, data[i], sizes[i])
        out = write_line_end(out + sizes[i])
    return result


# -- replies --------------------------------------------------------------------------------------


cdef Py_ssize_t line_end(const char *buf, Py_ssize_t size, Py_ssize_t pos) noexcept:
    # Where the first "\r\n" at or after ``pos`` begins; -1 when there is none (``data.find(b"\r\n", pos)``).
    cdef const char *found
    while pos < size:
        found = <const char *>memchr(buf + pos, c'\r', size - pos)
        if found == NULL:
            return -1
        pos = found - buf
        if pos + 1 < size and buf[pos + 1] == c'\n':
            return pos
        pos += 1
    return -1


cdef bint plain_decimal(const char *buf, Py_ssize_t start, Py_ssize_t end, long long *value) noexcept:
    # buf[start:end] as an optional "-" and 1 to DIGITS digits, into value; False for anything else.
    cdef bint negative = start < end and buf[start] == c'-'
    cdef long long number = 0
    cdef Py_ssize_t i = start + negative
    if i == end or end - i > DIGITS:
        return False
    while i < end:
        if buf[i] < c'0' or buf[i] > c'9':
            return False
        number = number * 10 + (buf[i] - c'0')
        i += 1
    value[0] = -number if negative else number
    return True


cdef object integer_at(bytes data, const char *buf, Py_ssize_t start, Py_ssize_t end):
    # int(data[start:end])
    cdef long long value
    if plain_decimal(buf, start, end, &value):
        return value
    return int(data[start:end])


cdef Py_ssize_t count_at(bytes data, const char *buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t size) except -2:
    # int(data[start:end]) as a bulk string's size or an array's count: -1 for any negative, and at most
    # ``size`` + 1 (more than ``data`` could hold: Incomplete, as the pure twin finds it).
    cdef long long value
    if not plain_decimal(buf, start, end, &value):
        number = int(data[start:end])
        return -1 if number < 0 else size + 1 if number > size else number
    return -1 if value < 0 else size + 1 if value > size else <Py_ssize_t>value


cdef object frame(bytes data, const char *buf, Py_ssize_t size, Py_ssize_t *at, int depth):
    # The value of the frame at at[0], at[0] moved to where the next begins; INCOMPLETE if it is cut short.
    cdef Py_ssize_t pos = at[0], end, count, stop, i
    cdef unsigned char kind
    if depth > NESTED:  # (no C recursion without a bound: the pure twin's, under Python's limit)
        value, at[0] = _resp_py._frame(data, pos)
        return value
    end = line_end(buf, size, pos)
    if end < 0:
        raise INCOMPLETE
    kind = <unsigned char>buf[pos]
    if kind == c':':  # an integer
        value = integer_at(data, buf, pos + 1, end)
        at[0] = end + 2
        return value
    if kind == c'$':  # a bulk string, or null ($-1)
        count = count_at(data, buf, pos + 1, end, size)
        if count < 0:
            at[0] = end + 2
            return None
        stop = end + 2 + count
        if size < stop + 2:
            raise INCOMPLETE
        at[0] = stop + 2
        return PyBytes_FromStringAndSize(buf + end + 2, count)
    if kind == c'*' or kind == c'>':  # an array (or null: *-1), a push
        count = count_at(data, buf, pos + 1, end, size)
        at[0] = end + 2
        if count < 0:
            return None
        items = Push() if kind == c'>' else []
        for i in range(count):
            items.append(frame(data, buf, size, at, depth + 1))  # (Cython appends to an exact list in C)
        return items
    if kind == c'_':  # RESP3's null
        at[0] = end + 2
        return None
    if kind == c'-':  # an error reply
        at[0] = end + 2
        return ErrorReply(data[pos + 1 : end].decode("utf-8", "replace"))
    if kind == c'+':  # a simple string
        at[0] = end + 2
        return PyBytes_FromStringAndSize(buf + pos + 1, end - pos - 1)
    raise unexpected(kind)


def reply_of(bytes data not None):
    """The first reply in ``data``, past any push frames before it: (reply, where it ends, whether a push came
    first); Incomplete until it has all come."""
    cdef Py_ssize_t pos = 0
    cdef bint pushed = False
    cdef const char *buf = PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    while True:
        reply = frame(data, buf, size, &pos, 0)
        if type(reply) is not Push:
            return reply, pos, pushed
        pushed = True  # a notice before the reply: read past it
