"""Redis commands and replies as RESP, pure-Python twin of ``_resp_c``.

``packed(*args)`` is the array of bulk strings redis-py's packer makes of a
command: bytes as they are, anything else as ``str(arg)`` in UTF-8 (numbers
as text). ``reply_of(data)`` is the first reply in bytes read from the
socket: the integers, bulk strings, nulls, arrays of them, error and simple
strings a script answers with, RESP2 or RESP3, past any push frame before it.
``fastsession.resp`` sends the one and reads the other on a connection's
socket; the scripts' calls are ``fastsession.redis``'s and
``fastsession.aio_redis``'s.
"""

from __future__ import annotations

from typing import Any


def packed(*args: Any) -> bytes:
    """``args`` as one RESP array of bulk strings (bytes as they are, anything else as ``str(arg)`` in UTF-8)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Incomplete(Exception):
    """The frame has not all come yet."""


INCOMPLETE = Incomplete()


class ErrorReply:
    """An error reply's message (its parser makes redis-py's exception of it)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push frame: out of band, never a reply."""


def reply_of(data: bytes) -> tuple[Any, int, bool]:
    """The first reply in ``data``, past any push frames before it: (reply, where it ends, whether a push came
    first); Incomplete until it has all come."""
    pos, pushed = 0, False
    while True:
        reply, pos = _frame(data, pos)
        if type(reply) is not Push:
            return reply, pos, pushed
        pushed = True  # a notice before the reply: read past it


def unexpected(kind: int) -> Exception:
    """The error for a frame of a type no script answers with (redis-py's, imported only then)."""
    from redis.exceptions import InvalidResponse

    return InvalidResponse(f"unexpected reply type {chr(kind)!r} from a fastsession script")


def _frame(data: bytes, pos: int) -> tuple[Any, int]:
    """(the value of the RESP2/RESP3 frame at ``pos``, where the next begins); Incomplete if it is cut short."""
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise INCOMPLETE
    kind = data[pos]
    if kind == 58:  # ":" an integer
        return int(data[pos + 1 : end]), end + 2
    if kind == 36:  # "$" a bulk string, or null ($-1)
        size = int(data[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(data) < stop + 2:
            raise INCOMPLETE
        return data[end + 2 : stop], stop + 2
    if kind == 42 or kind == 62:  # "*" an array (or null: *-1), ">" a push
        size = int(data[pos + 1 : end])
        if size < 0:
            return None, end + 2
        items: list[Any] = Push() if kind == 62 else []
        pos = end + 2
        for _ in range(size):
            item, pos = _frame(data, pos)
            items.append(item)
        return items, pos
    if kind == 95:  # "_" RESP3's null
        return None, end + 2
    if kind == 45:  # "-" an error reply
        return ErrorReply(data[pos + 1 : end].decode("utf-8", "replace")), end + 2
    if kind == 43:  # "+" a simple string
        return data[pos + 1 : end], end + 2
    raise unexpected(kind)
