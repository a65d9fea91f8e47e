"""One command and its reply on the socket of a redis-py connection, past redis-py's layers.

redis-py's ``send_packed_command`` and ``read_response`` (its checks, its parser's buffer, its push
handling) cost as much as the round trip itself on loopback; a session's calls are a few scripts whose
replies are integers, bulk strings, nulls and arrays of them. ``call`` sends the packed command and reads
the reply with one ``sendall`` and one ``recv`` (more only for a reply larger than a read), on a plain
socket whose timeout the kernel keeps (``timed_by_the_kernel``: no ``poll`` before each), and leaves
anything else to redis-py (``through_redis_py``): TLS sockets, a connection not yet connected, a parser of
another kind. A connection redis-py's read left bytes in is closed after that read, so ``call`` never has
to ask redis-py's buffer (a third of a call's own instructions).

``acall`` does the same on a ``redis.asyncio`` connection's stream: the command written (drained only past
the transport's buffer), the reply read, under one deadline, the connection's ``socket_timeout``.

Errors are redis-py's, as its own reading gives them: a reply error through the connection's parser
(``NoScriptError``, ``ResponseError``, ``ReadOnlyError``, ...), ``TimeoutError`` when the kernel's timeout
ends a read or write, ``ConnectionError`` when the server closed the connection or a read failed. A push
frame (RESP3 notices) is read past, and the connection is closed after its reply: the next call connects
afresh, as redis-py does when told the server moves.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
import struct
from typing import Any, Callable

from redis.exceptions import ConnectionError, TimeoutError

from . import _kernels
from ._resp_py import ErrorReply, Incomplete

try:  # redis-py 5 and later; before, every call goes through redis-py
    from redis._parsers import _AsyncRESP2Parser, _AsyncRESP3Parser, _RESP2Parser, _RESP3Parser

    PARSERS: tuple[type, ...] = (_RESP2Parser, _RESP3Parser)
    ASYNC_PARSERS: tuple[type, ...] = (_AsyncRESP2Parser, _AsyncRESP3Parser)
except ImportError:
    PARSERS = ASYNC_PARSERS = ()

# A deadline for a block of awaits (Python 3.11 and later; before, asyncio calls go through redis-py).
_deadline: Callable[[float | None], Any] | None = getattr(asyncio, "timeout", None)

READ_SIZE = 65536

# The first reply in a read's bytes: (reply, where it ends, whether a push frame came first), or Incomplete
# until it has all come (the kernels': _resp_c, pure twin _resp_py).
reply_of: Callable[[bytes], tuple[Any, int, bool]] = _kernels.ACTIVE.reply_of


def timed_by_the_kernel(sock: socket.socket) -> None:
    """Give a plain socket's timeout to the kernel (SO_RCVTIMEO, SO_SNDTIMEO) and make the socket blocking:
    Python times a socket that has a timeout with a poll() before every send and every receive, two system
    calls of a call's four. TLS sockets are left as they are."""
    timeout = sock.gettimeout()
    if type(sock) is not socket.socket or not timeout:
        return
    seconds = int(timeout)
    value = struct.pack("@ll", seconds, max(int((timeout - seconds) * 1_000_000), 1 if not seconds else 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def call(connection: Any, command: bytes) -> Any:
    """Send ``command`` (packed RESP) on ``connection`` and return its reply.

    What redis-py reads of a connection only ever used through ``call`` and ``through_redis_py`` (or fresh
    from its pool, which checks) leaves nothing read ahead in its parser's buffer, so what the socket gives
    next is the reply.
    """
    sock = connection._sock
    if (
        sock is None
        or type(sock) is not socket.socket
        or sock.gettimeout() is not None
        or type(connection._parser) not in PARSERS
    ):
        return through_redis_py(connection, command)
    doing = "writing to"
    try:
        sock.sendall(command)
        doing = "reading from"
        data = b""
        while True:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise ConnectionError("Connection closed by server.")
            data += chunk
            try:
                reply, end, pushed = reply_of(data)
                break
            except Incomplete:
                continue
    except BlockingIOError as exc:  # the kernel's send or receive timeout
        raise TimeoutError(f"Timeout {doing} socket") from exc
    except OSError as exc:
        raise ConnectionError(f"Error while {doing} socket: {exc}") from exc
    if pushed or end != len(data):  # notices, or bytes after the reply: start afresh next time
        connection.disconnect()
    if type(reply) is ErrorReply:
        raise connection._parser.parse_error(reply.message)
    return reply


def through_redis_py(connection: Any, command: bytes) -> Any:
    """``command`` sent and its reply read by redis-py. Bytes its read took past the reply (a notice) are no
    reply of a later call: the connection is closed then (redis-py connects afresh), so that ``call`` never
    finds anything read ahead."""
    connection.send_packed_command((command,))
    try:
        return connection.read_response()
    finally:
        if type(connection._parser) in PARSERS:  # (another kind, hiredis, is always read through redis-py)
            _drop_read_ahead(connection)


def _drop_read_ahead(connection: Any) -> None:
    """Close ``connection`` if redis-py's parser holds bytes read from the socket and not yet parsed."""
    buffer = connection._parser._buffer
    try:
        left = buffer is not None and buffer.unread_bytes()
    except Exception:  # (redis-py 7 and later: a buffer closed meanwhile raises ConnectionError)
        left = True
    if left:
        connection.disconnect()


async def acall(connection: Any, command: bytes) -> Any:
    """``call`` for a ``redis.asyncio`` connection: ``command`` written to its stream, the reply read from it.

    Past redis-py's asyncio layers, which time each send with a task of its own (``wait_for``): a round trip
    costs the event loop two turns instead of five. The connection's ``socket_timeout`` bounds the whole call
    (``asyncio.timeout``, Python 3.11 and later). Left to redis-py: a connection not connected yet, a parser
    of another kind (hiredis), bytes already read and not parsed (the connection is closed first), and every
    call before Python 3.11.
    """
    writer, reader = connection._writer, connection._reader
    if _deadline is None or writer is None or reader is None or not await _nothing_read_ahead(connection):
        await connection.send_packed_command((command,))
        return await connection.read_response()
    if writer.transport.is_closing():
        await connection.disconnect(nowait=True)
        raise ConnectionError("Connection closed by the server before write")
    doing = "writing to"
    try:
        async with _deadline(connection.socket_timeout):
            writer.write(command)
            await writer.drain()  # (at once, unless more than the transport's buffer is waiting to go)
            doing = "reading from"
            data = await _areceive(reader, b"")
            while True:
                try:
                    reply, end, pushed = reply_of(data)
                    break
                except Incomplete:
                    data = await _areceive(reader, data)
    except BaseException as exc:  # half written or half read (a cancellation too): never used again
        await connection.disconnect(nowait=True)  # (nowait: closes without a suspension)
        if isinstance(exc, builtins.TimeoutError):  # the deadline (an OSError too)
            raise TimeoutError(f"Timeout {doing} socket") from None
        if isinstance(exc, OSError):
            raise ConnectionError(f"Error while {doing} socket: {exc}") from exc
        raise
    if pushed or end != len(data):  # notices, or bytes after the reply: start afresh next time
        await connection.disconnect(nowait=True)
    if type(reply) is ErrorReply:
        raise connection._parser.parse_error(reply.message)
    return reply


async def _nothing_read_ahead(connection: Any) -> bool:
    """Whether neither redis-py's parser nor the stream of an asyncio connection holds a byte not yet parsed
    (else the connection is closed, for redis-py to connect afresh). (``call`` needs no such check: see
    ``through_redis_py``.)"""
    parser = connection._parser
    if type(parser) not in ASYNC_PARSERS:
        return False
    if not parser._buffer and not connection._reader._buffer:
        return True
    await connection.disconnect(nowait=True)
    return False


async def _areceive(reader: asyncio.StreamReader, data: bytes) -> bytes:
    chunk = await reader.read(READ_SIZE)
    if not chunk:
        raise ConnectionError("Connection closed by server.")
    return data + chunk
