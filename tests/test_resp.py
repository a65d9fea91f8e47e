"""fastsession.resp: a command and its reply on a redis-py connection's socket, against a real redis-server."""

import contextlib
import os
import signal
import socket
import struct
import time

import pytest
import redis
from conftest import TWINS
from helpers import answering
from redis.exceptions import ConnectionError, InvalidResponse, NoScriptError, ResponseError, TimeoutError

from fastsession import _kernels, resp
from fastsession._resp_py import ErrorReply
from fastsession.bench.redis_server import RedisServer
from fastsession.redis import packed


def timeval(sock, option):
    seconds, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return seconds + micro / 1_000_000


@pytest.mark.parametrize("timeout", [0.25, 2.5, 3.0, 1e-9])
def test_a_sockets_timeout_goes_to_the_kernel_and_the_socket_blocks(timeout):
    sock = socket.socket()
    sock.settimeout(timeout)
    resp.timed_by_the_kernel(sock)
    assert sock.gettimeout() is None
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        kept = timeval(sock, option)
        assert kept == pytest.approx(timeout, abs=0.01) and kept > 0  # (in clock ticks; never 0, which is "forever")
    sock.close()


def test_a_socket_without_a_timeout_or_not_a_plain_one_is_left_as_it_is():
    class Wrapped(socket.socket):  # what ssl.SSLSocket is: a subclass, whose reads the kernel cannot time
        pass

    blocking, wrapped = socket.socket(), Wrapped()
    wrapped.settimeout(1.0)
    resp.timed_by_the_kernel(blocking)
    resp.timed_by_the_kernel(wrapped)
    assert blocking.gettimeout() is None and timeval(blocking, socket.SO_RCVTIMEO) == 0
    assert wrapped.gettimeout() == 1.0 and timeval(wrapped, socket.SO_RCVTIMEO) == 0
    blocking.close()
    wrapped.close()


@pytest.fixture(params=[2, 3])
def connection(request, redis_url):
    """A connected redis-py connection (RESP2 or RESP3) whose socket the kernel times, as the idle ones are."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, protocol=request.param)
    conn = client.connection_pool.get_connection()
    resp.timed_by_the_kernel(conn._sock)
    yield conn
    client.connection_pool.release(conn)
    client.close()


def test_replies_of_every_kind_the_scripts_give(connection, redis_url, monkeypatch):
    monkeypatch.setattr(connection, "read_response", None)  # past redis-py's reading: never called
    sock = connection._sock
    other = redis.Redis.from_url(redis_url)
    other.delete("resp:list", "resp:none")
    other.rpush("resp:list", b"a", b"\r\n", b"")
    assert resp.call(connection, packed("RPUSH", "resp:list", "z")) == 4
    assert resp.call(connection, packed("LRANGE", "resp:list", 0, -1)) == [b"a", b"\r\n", b"", b"z"]
    assert resp.call(connection, packed("GET", "resp:none")) is None
    assert resp.call(connection, packed("EVAL", "return {1, false, 'x', {2}}", 0)) == [1, None, b"x", [2]]
    assert resp.call(connection, packed("SET", "resp:none", "v")) == b"OK"
    assert resp.call(connection, packed("DEL", "resp:none")) == 1
    assert connection._sock is sock  # the same connection all along
    other.delete("resp:list")
    other.close()


def test_a_reply_larger_than_one_read_is_read_whole(connection, redis_url):
    other = redis.Redis.from_url(redis_url)
    big = os.urandom(3 * resp.READ_SIZE + 17)
    other.set("resp:big", big)
    assert resp.call(connection, packed("GET", "resp:big")) == big
    assert resp.call(connection, packed("EXISTS", "resp:big")) == 1  # nothing of it left to be read
    other.delete("resp:big")
    other.close()


def test_error_replies_are_redis_pys_exceptions_and_the_connection_stays_good(connection):
    sock = connection._sock
    with pytest.raises(NoScriptError):
        resp.call(connection, packed("EVALSHA", "0" * 40, 0))
    with pytest.raises(ResponseError, match="not UTF-8: \ufffd"):  # whatever bytes an error carries
        resp.call(connection, packed("EVAL", "return redis.error_reply('not UTF-8: ' .. string.char(255))", 0))
    assert connection._sock is sock
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        resp.call(
            connection,
            packed("EVAL", "redis.call('SET', KEYS[1], 1) return redis.call('LPUSH', KEYS[1], 1)", 1, "resp:x"),
        )
    assert resp.call(connection, packed("DEL", "resp:x")) == 1


def test_a_reply_type_no_script_gives_is_refused(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=5, protocol=3)
    conn = client.connection_pool.get_connection()
    resp.timed_by_the_kernel(conn._sock)
    with pytest.raises(InvalidResponse, match="unexpected reply type '%'"):
        resp.call(conn, packed("HELLO", 3))  # a RESP3 map
    client.connection_pool.release(conn)
    client.close()


def test_a_connection_the_server_closed_is_a_connection_error(connection, redis_url):
    killer = redis.Redis.from_url(redis_url)
    killer.client_kill_filter(_id=resp.call(connection, packed("CLIENT", "ID")))
    killer.close()
    with pytest.raises(ConnectionError, match="^Connection closed by server.$|^Error while reading from socket: "):
        resp.call(connection, packed("PING"))


@contextlib.contextmanager
def stopped_server(socket_timeout):
    """A connection whose socket the kernel times, to a redis-server then SIGSTOPped (it answers nothing)."""
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=socket_timeout)
        conn = client.connection_pool.get_connection()
        resp.timed_by_the_kernel(conn._sock)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            yield conn
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            client.close()
    finally:
        server.stop()


def test_a_read_past_the_kernels_timeout_is_a_timeout_error():
    with stopped_server(0.3) as conn, pytest.raises(TimeoutError, match="^Timeout reading from socket$"):
        resp.call(conn, packed("PING"))


@contextlib.contextmanager
def tracked(redis_url, key):
    """A RESP3 connection that tracks ``key`` (CLIENT TRACKING), and another client, whose change to ``key``
    pushes a notice to the first."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, protocol=3)
    conn = client.connection_pool.get_connection()
    resp.timed_by_the_kernel(conn._sock)
    resp.call(conn, packed("CLIENT", "TRACKING", "on"))
    resp.call(conn, packed("GET", key))
    other = redis.Redis.from_url(redis_url)
    try:
        yield conn, other
    finally:
        other.delete(key)
        other.close()
        client.connection_pool.release(conn)
        client.close()


def test_a_push_before_the_reply_is_read_past_and_the_connection_closed_after(redis_url):
    with tracked(redis_url, "resp:tracked") as (conn, other):
        other.set("resp:tracked", "changed")
        assert resp.call(conn, packed("ECHO", "mine")) == b"mine"
        assert conn._sock is None  # closed after its reply: connected afresh by the next call


def slow_reads(connection, monkeypatch):
    """redis-py's reads of ``connection`` wait until both replies of a two-command write are in the socket."""
    read = connection.read_response
    monkeypatch.setattr(connection, "read_response", lambda *a, **k: time.sleep(0.1) or read(*a, **k))


def test_bytes_redis_pys_read_left_unread_close_the_connection_and_the_next_call_answers(connection, monkeypatch):
    connection._sock.settimeout(5)  # timed by Python: the call goes through redis-py
    slow_reads(connection, monkeypatch)
    old = connection._sock
    # Both replies in the socket: redis-py's read takes both and parses one; the ECHO's reply is what a
    # direct read of the next call would take for its own, so the connection is closed instead.
    assert resp.call(connection, packed("PING") + packed("ECHO", "stale")) in (b"PONG", "PONG")
    assert connection._sock is None
    assert resp.call(connection, packed("ECHO", "fresh")) in (b"fresh", "fresh")
    assert connection._sock is not old  # connected afresh, the stale reply dropped with the old socket


def test_an_error_reply_through_redis_py_with_bytes_after_it_closes_the_connection_too(connection, monkeypatch):
    connection._sock.settimeout(5)
    slow_reads(connection, monkeypatch)
    with pytest.raises(ResponseError):
        resp.call(connection, packed("NO-SUCH-COMMAND") + packed("ECHO", "stale"))
    assert connection._sock is None
    assert resp.call(connection, packed("ECHO", "fresh")) in (b"fresh", "fresh")


def test_a_read_through_redis_py_that_leaves_nothing_keeps_the_connection(connection):
    connection._sock.settimeout(5)
    old = connection._sock
    assert resp.through_redis_py(connection, packed("ECHO", "x")) in (b"x", "x")
    assert connection._sock is old


def test_a_socket_python_times_or_none_yet_goes_through_redis_py(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    conn = client.connection_pool.get_connection()
    assert conn._sock.gettimeout() == 5
    read = conn.read_response
    reads = []
    conn.read_response = lambda *args, **kwargs: reads.append(1) or read(*args, **kwargs)
    assert resp.call(conn, packed("ECHO", "a")) in (b"a", "a")  # redis-py's path: its poll-timed socket kept
    assert conn._sock.gettimeout() == 5 and reads == [1]
    conn.disconnect()
    assert resp.call(conn, packed("ECHO", "b")) in (b"b", "b") and conn._sock is not None  # connected by redis-py
    client.connection_pool.release(conn)
    client.close()


def test_a_write_on_a_socket_shut_for_writing_is_a_connection_error(connection):
    connection._sock.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError, match="^Error while writing to socket: "):
        resp.call(connection, packed("PING"))


def test_a_write_past_the_kernels_timeout_is_a_timeout_error():
    with stopped_server(0.3) as conn, pytest.raises(TimeoutError, match="^Timeout writing to socket$"):
        resp.call(conn, packed("SET", "big", b"x" * (64 << 20)))  # more than the socket's buffers hold


def test_a_push_that_comes_alone_is_read_past_and_the_reply_waited_for(redis_url):
    with tracked(redis_url, "resp:alone") as (conn, other):
        other.set("resp:alone", "changed")  # the notice is in this connection's socket now
        time.sleep(0.05)
        other.client_pause(300)  # the reply comes 0.3 s after the notice: two reads
        assert resp.call(conn, packed("ECHO", "mine")) == b"mine"
        assert conn._sock is None


def test_a_parser_of_another_kind_is_left_to_redis_py(connection, monkeypatch):
    monkeypatch.setattr(resp, "PARSERS", ())  # what hiredis's parser is to this module
    read = connection.read_response
    reads = []
    monkeypatch.setattr(connection, "read_response", lambda *a, **k: reads.append(1) or read(*a, **k))
    assert resp.call(connection, packed("ECHO", "x")) in (b"x", "x") and reads == [1]


def test_a_connection_reset_while_reading_is_a_connection_error():
    with answering(reset=True) as address:
        conn = redis.Connection(host=address[0], port=address[1])
        conn._sock = socket.create_connection(address)
        try:
            with pytest.raises(ConnectionError, match="^Error while reading from socket: "):
                resp.call(conn, packed("PING"))
        finally:
            conn._sock.close()


@pytest.mark.parametrize("read_size", [1, 2, 3, 7])
def test_replies_cut_at_every_byte_are_read_whole(connection, redis_url, monkeypatch, read_size):
    monkeypatch.setattr(resp, "READ_SIZE", read_size)  # every frame split wherever a read may end
    sock = connection._sock
    other = redis.Redis.from_url(redis_url)
    other.delete("resp:cut", "resp:empty")
    other.rpush("resp:cut", b"abc", b"", b"\r\n" * 3)
    assert resp.call(connection, packed("LRANGE", "resp:cut", 0, -1)) == [b"abc", b"", b"\r\n" * 3]
    assert resp.call(connection, packed("LRANGE", "resp:empty", 0, -1)) == []
    assert resp.call(connection, packed("BLPOP", "resp:empty", "0.01")) is None  # a null array (RESP2) or null
    assert resp.call(connection, packed("EVAL", "return {1, false, {}, 'x'}", 0)) == [1, None, [], b"x"]
    with pytest.raises(ResponseError, match="^boom$"):
        resp.call(connection, packed("EVAL", "return redis.error_reply('boom')", 0))
    assert resp.call(connection, packed("GET", "resp:empty")) is None
    assert connection._sock is sock  # every reply read to its end, nothing left over
    other.delete("resp:cut")
    other.close()


# -- packed, both twins ---------------------------------------------------------------------------


class Shown(str):
    def __str__(self):
        return "shown"


class Level(int):
    def __str__(self):
        return "level"


ODD_ARGUMENTS = [
    True,
    False,
    None,
    1.5,
    -0.0,
    2**63,
    -(2**63) - 1,
    2**64 + 7,
    Shown("kept"),
    Level(3),
    bytearray(b"ba"),
    memoryview(b"mv"),
    "é€😀",
    "",
    b"",
    b"\r\n$*",
]


@pytest.mark.parametrize("kind", TWINS)
def test_packed_is_redis_pys_command_for_what_the_scripts_send(kind):
    twin = _kernels.twin(kind)
    pack = redis.Connection().pack_command
    for command in [
        ("EVALSHA", "0" * 40, 2, "fastsession:{n}", "fastsession:{n}:lock", b'{"a":1}\r\n', "token", 30000, -1),
        ("GET", "k"),
        ("SET", "k", "é€", "PX", 0),
        ("EVAL", "return 1", 0, 2**63 - 1, -(2**63)),
    ]:
        assert twin.packed(*command) == b"".join(pack(*command))


@pytest.mark.parametrize("kind", TWINS)
def test_packed_writes_any_argument_as_its_str_and_a_long_command_whole(kind):
    """What redis-py's packer refuses (None, bool) or writes otherwise, the twins write alike: str(arg)."""
    packed_by = _kernels.twin(kind).packed
    for arg in ODD_ARGUMENTS:
        data = arg if type(arg) is bytes else str(arg).encode()
        assert packed_by("X", arg) == b"*2\r\n$1\r\nX\r\n$%d\r\n%s\r\n" % (len(data), data), repr(arg)
    many = [f"k{number}" for number in range(40)] + [7] * 5  # (past the compiled twin's 32 arguments)
    assert packed_by(*many) == _kernels.twin("py").packed(*many)
    assert packed_by() == b"*0\r\n"
    with pytest.raises(UnicodeEncodeError):
        packed_by("GET", "\ud800")  # a lone surrogate: no UTF-8 for it, as str.encode says


# -- reply_of, both twins against the pure one ----------------------------------------------------


def shape(value):
    """A reply as comparable data: an error reply's message, a push frame told from an array."""
    if isinstance(value, ErrorReply):
        return ("error", value.message)
    if isinstance(value, list):
        return (type(value).__name__, [shape(item) for item in value])
    return value


def outcome(reply_of, data):
    try:
        reply, end, pushed = reply_of(data)
    except Exception as exc:  # (Incomplete, ValueError, InvalidResponse, RecursionError: compared by type and text)
        return type(exc).__name__, str(exc)
    return shape(reply), end, pushed


def random_frame(rng, depth=0):
    kind = rng.choice("::$$$*+-_" if depth == 0 else "::$$$*+-_>" if depth < 3 else ":$+-_")  # (a push alone: no reply)
    if kind == ":":
        return b":%d\r\n" % rng.choice([0, -1, 7, 2**62, -(2**63), 10**18, 10**30, -(10**25)])
    if kind == "$":
        if rng.random() < 0.2:
            return b"$-1\r\n"
        body = bytes(rng.choice(b"ab\r\n\x00\xff$*:") for _ in range(rng.randrange(12)))
        return b"$%d\r\n%s\r\n" % (len(body), body)
    if kind in "*>":
        if kind == "*" and rng.random() < 0.1:
            return b"*-1\r\n"
        items = [random_frame(rng, depth + 1) for _ in range(rng.randrange(4))]
        return kind.encode() + b"%d\r\n" % len(items) + b"".join(items)
    if kind == "+":
        return b"+OK\r\n"
    if kind == "-":
        return rng.choice([b"-ERR boom\r\n", b"-NOSCRIPT No matching script\r\n", b"-ERR \xff\xfe not UTF-8\r\n"])
    return b"_\r\n"


MALFORMED = [
    b"",
    b":",
    b":12",
    b":abc\r\n",
    b":+5\r\n",
    b": 5\r\n",
    b":1_000\r\n",
    b":-\r\n",
    b":\r\n",
    b"$x\r\n",
    b"$3\r\nab",
    b"$3\rab\r\nabc\r\n",
    b"*99999999999999999999999\r\n:1\r\n",
    b"$99999999999999999999999\r\nabc\r\n",
    b"*-7\r\n",
    b"$-3\r\n",
    b"!3\r\nabc\r\n",
    b"\x80\r\n",
    b"*1\r\n" * 40 + b":1\r\n",  # (nested past the compiled twin's own recursion)
    b"*1\r\n" * 5000 + b":1\r\n",  # (past Python's recursion limit, in both)
    b">1\r\n+notice\r\n:5\r\n",
    b">0\r\n>1\r\n:1\r\n$2\r\nok\r\ntrailing",
]


@pytest.mark.parametrize("kind", TWINS)
def test_reply_of_reads_every_frame_and_every_cut_of_it_as_the_pure_twin_does(kind):
    import random

    pure, twin = _kernels.twin("py").reply_of, _kernels.twin(kind).reply_of
    rng = random.Random(26)
    frames = [random_frame(rng) for _ in range(300)] + [b">2\r\n+a\r\n:1\r\n" + random_frame(rng) for _ in range(30)]
    for data in frames:
        whole = outcome(pure, data)
        assert whole[0] != "Incomplete" and whole[1] == len(data)  # (the corpus is well formed)
        assert outcome(twin, data) == whole, data
        assert outcome(twin, data + b"$1\r\nx\r\n") == whole  # a reply's end, with bytes after it
        for cut in range(len(data)):
            assert outcome(twin, data[:cut]) == outcome(pure, data[:cut]) == ("Incomplete", ""), data[:cut]
    for data in MALFORMED:
        assert outcome(twin, data) == outcome(pure, data), data
    assert outcome(pure, MALFORMED[-4])[0][0] == "list"  # (read whole: 40 arrays deep)
    assert outcome(pure, MALFORMED[-3])[0] == "RecursionError"
    assert outcome(pure, b"!3\r\nabc\r\n")[0] == "InvalidResponse"
