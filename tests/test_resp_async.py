"""fastsession.resp.acall: a command and its reply on a redis.asyncio connection's stream, against a real
redis-server; and the async face's scripts going that way."""

import asyncio
import contextlib
import os
import signal
import sys

import pytest
import redis
import redis.asyncio
from conftest import Transaction
from helpers import answering
from redis.exceptions import ConnectionError, InvalidResponse, NoScriptError, ResponseError, TimeoutError
from test_aio import run

from fastsession import resp
from fastsession.aio import AsyncRedisSessionStore
from fastsession.bench.redis_server import RedisServer
from fastsession.redis import packed

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="acall needs asyncio.timeout (Python 3.11)")


@contextlib.asynccontextmanager
async def connected(url, protocol=2, socket_timeout=5):
    """A connected redis.asyncio connection, whose reads through redis-py are counted (``reads``)."""
    client = redis.asyncio.Redis.from_url(url, socket_timeout=socket_timeout, protocol=protocol)
    conn = await client.connection_pool.get_connection()
    read = conn.read_response
    conn.reads = []

    async def counted(*args, **kwargs):
        conn.reads.append(1)
        return await read(*args, **kwargs)

    conn.read_response = counted
    try:
        yield conn
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_of_every_kind_the_scripts_give(redis_url, protocol):
    other = redis.Redis.from_url(redis_url)
    other.delete("aresp:list", "aresp:none")
    other.rpush("aresp:list", b"a", b"\r\n", b"")

    async def calls():
        async with connected(redis_url, protocol) as conn:
            writer = conn._writer
            assert await resp.acall(conn, packed("RPUSH", "aresp:list", "z")) == 4
            assert await resp.acall(conn, packed("LRANGE", "aresp:list", 0, -1)) == [b"a", b"\r\n", b"", b"z"]
            assert await resp.acall(conn, packed("GET", "aresp:none")) is None
            assert await resp.acall(conn, packed("EVAL", "return {1, false, 'x', {2}}", 0)) == [1, None, b"x", [2]]
            assert await resp.acall(conn, packed("SET", "aresp:none", "v")) == b"OK"
            assert await resp.acall(conn, packed("DEL", "aresp:none")) == 1
            assert conn._writer is writer and conn.reads == []  # one connection all along, never redis-py's reading

    run(calls())
    other.delete("aresp:list")
    other.close()


def test_a_reply_larger_than_one_read_is_read_whole(redis_url):
    other = redis.Redis.from_url(redis_url)
    big = os.urandom(3 * resp.READ_SIZE + 17)
    other.set("aresp:big", big)

    async def calls():
        async with connected(redis_url) as conn:
            assert await resp.acall(conn, packed("GET", "aresp:big")) == big
            assert await resp.acall(conn, packed("EXISTS", "aresp:big")) == 1  # nothing of it left to be read

    run(calls())
    other.delete("aresp:big")
    other.close()


def test_a_command_larger_than_the_transports_buffer_is_written_whole(redis_url):
    big = os.urandom(8 << 20)

    async def calls():
        async with connected(redis_url) as conn:
            assert await resp.acall(conn, packed("SET", "aresp:sent", big)) == b"OK"
            assert await resp.acall(conn, packed("STRLEN", "aresp:sent")) == len(big)
            assert await resp.acall(conn, packed("DEL", "aresp:sent")) == 1

    run(calls())


def test_error_replies_are_redis_pys_exceptions_and_the_connection_stays_good(redis_url):
    async def calls():
        async with connected(redis_url) as conn:
            writer = conn._writer
            with pytest.raises(NoScriptError):
                await resp.acall(conn, packed("EVALSHA", "0" * 40, 0))
            with pytest.raises(ResponseError, match="not UTF-8: \ufffd"):
                await resp.acall(conn, packed("EVAL", "return redis.error_reply('not UTF-8: ' .. string.char(255))", 0))
            assert conn._writer is writer
            assert await resp.acall(conn, packed("ECHO", "after")) == b"after"

    run(calls())


def test_a_reply_type_no_script_gives_is_refused(redis_url):
    async def calls():
        async with connected(redis_url, protocol=3) as conn:
            with pytest.raises(InvalidResponse, match="unexpected reply type '%'"):
                await resp.acall(conn, packed("HELLO", 3))  # a RESP3 map

    run(calls())


def test_a_connection_the_server_closed_is_a_connection_error_and_is_closed(redis_url):
    async def calls():
        async with connected(redis_url) as conn:
            killer = redis.Redis.from_url(redis_url)
            killer.client_kill_filter(_id=await resp.acall(conn, packed("CLIENT", "ID")))
            killer.close()
            with pytest.raises(ConnectionError, match="^Connection closed by server.$|^Error while "):
                await resp.acall(conn, packed("PING"))
            assert conn._writer is None  # never used half-read: redis-py's next call connects afresh
            assert await resp.acall(conn, packed("ECHO", "again")) in (b"again", "again")

    run(calls())


@contextlib.contextmanager
def stopped_server():
    """A redis-server that is SIGSTOPped by ``stop()`` (it answers nothing) until the block ends."""
    server = RedisServer().start()
    try:
        yield server, lambda: os.kill(server.process.pid, signal.SIGSTOP)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_a_read_past_the_connections_timeout_is_a_timeout_error_and_the_connection_is_closed():
    with stopped_server() as (server, stop):

        async def calls():
            async with connected(server.url, socket_timeout=0.3) as conn:
                assert await resp.acall(conn, packed("PING")) == b"PONG"
                stop()
                with pytest.raises(TimeoutError, match="^Timeout reading from socket$"):
                    await resp.acall(conn, packed("PING"))
                assert conn._writer is None

        run(calls())


def test_a_cancelled_call_closes_its_connection():
    """A reply never read must never be read as the next call's: the connection goes with the cancellation."""
    with stopped_server() as (server, stop):

        async def calls():
            async with connected(server.url) as conn:
                assert await resp.acall(conn, packed("PING")) == b"PONG"
                stop()
                call = asyncio.ensure_future(resp.acall(conn, packed("ECHO", "lost")))
                await asyncio.sleep(0.1)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                assert conn._writer is None

        run(calls())


async def connection_to(address):
    conn = redis.asyncio.Connection(host=address[0], port=address[1])
    conn._reader, conn._writer = await asyncio.open_connection(*address)
    return conn


PUSH = b">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n:1\r\n"  # a RESP3 notice, as CLIENT TRACKING sends


@pytest.mark.parametrize("together", [True, False])
def test_a_push_before_the_reply_is_read_past_and_the_connection_closed_after(together):
    chunks = (PUSH + b"$4\r\nmine\r\n",) if together else (PUSH, b"$4\r\nmine\r\n")  # one read, or two

    async def call():
        with answering(*chunks) as address:
            conn = await connection_to(address)
            assert await resp.acall(conn, packed("ECHO", "mine")) == b"mine"
            assert conn._writer is None  # closed after its reply: connected afresh by the next call

    run(call())


def test_bytes_after_the_reply_close_the_connection():
    async def call():
        with answering(b"+OK\r\n+stray\r\n") as address:
            conn = await connection_to(address)
            assert await resp.acall(conn, packed("PING")) == b"OK"
            assert conn._writer is None

    run(call())


def test_bytes_read_ahead_close_the_connection_and_redis_py_answers(redis_url):
    async def calls():
        async with connected(redis_url) as conn:
            await conn.send_packed_command((packed("PING") + packed("ECHO", "stale"),))
            assert await conn.read_response() in (b"PONG", "PONG")  # the ECHO's reply may wait in the stream
            await asyncio.sleep(0.1)
            old = conn._writer
            stale = bool(conn._reader._buffer or conn._parser._buffer)
            assert await resp.acall(conn, packed("ECHO", "fresh")) in (b"fresh", "fresh")
            assert stale and conn._writer is not old and len(conn.reads) > 1  # afresh, read by redis-py

    run(calls())


def test_a_connection_not_connected_or_a_parser_of_another_kind_goes_through_redis_py(redis_url, monkeypatch):
    async def calls():
        async with connected(redis_url) as conn:
            await conn.disconnect()
            assert await resp.acall(conn, packed("ECHO", "b")) in (b"b", "b") and conn._writer is not None
            assert conn.reads  # connected by redis-py, and read by it
            conn.reads.clear()
            assert await resp.acall(conn, packed("ECHO", "c")) == b"c" and conn.reads == []  # now past it
            monkeypatch.setattr(resp, "ASYNC_PARSERS", ())  # what hiredis's parser is to this module
            assert await resp.acall(conn, packed("ECHO", "d")) in (b"d", "d") and conn.reads == [1]

    run(calls())


def test_a_connection_reset_while_reading_is_a_connection_error():
    async def call():
        with answering(reset=True) as address:
            conn = await connection_to(address)
            with pytest.raises(ConnectionError, match="^Error while reading from socket: |^Connection closed by"):
                await resp.acall(conn, packed("PING"))
            assert conn._writer is None

    run(call())


@pytest.mark.parametrize("read_size", [1, 2, 3, 7])
def test_replies_cut_at_every_byte_are_read_whole(redis_url, monkeypatch, read_size):
    monkeypatch.setattr(resp, "READ_SIZE", read_size)  # every frame split wherever a read may end
    other = redis.Redis.from_url(redis_url)
    other.delete("aresp:cut", "aresp:empty")
    other.rpush("aresp:cut", b"abc", b"", b"\r\n" * 3)

    async def calls():
        async with connected(redis_url) as conn:
            writer = conn._writer
            assert await resp.acall(conn, packed("LRANGE", "aresp:cut", 0, -1)) == [b"abc", b"", b"\r\n" * 3]
            assert await resp.acall(conn, packed("LRANGE", "aresp:empty", 0, -1)) == []
            assert await resp.acall(conn, packed("EVAL", "return {1, false, {}, 'x'}", 0)) == [1, None, [], b"x"]
            with pytest.raises(ResponseError, match="^boom$"):
                await resp.acall(conn, packed("EVAL", "return redis.error_reply('boom')", 0))
            assert await resp.acall(conn, packed("GET", "aresp:empty")) is None
            assert conn._writer is writer  # every reply read to its end, nothing left over

    run(calls())
    other.delete("aresp:cut")
    other.close()


def test_the_async_faces_scripts_go_past_redis_pys_reading_and_after_a_script_flush_load_again(redis_url, monkeypatch):
    """A read-modify-write of the async store makes its two scripts through acall (redis-py reads nothing), and
    a server that forgot the scripts (SCRIPT FLUSH) gets them again."""
    from redis.asyncio.connection import Connection

    reads = []
    read = Connection.read_response

    async def counted(self, *args, **kwargs):
        reads.append(1)
        return await read(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "read_response", counted)
    prefix = f"aresp-{os.getpid()}:"

    async def requests():
        client = redis.asyncio.Redis.from_url(redis_url)
        trans = Transaction()
        async with AsyncRedisSessionStore(trans, client, prefix=prefix) as store:
            (await store.get_session(True))["n"] = 1
        reads.clear()
        for expected in (2, 3):
            async with AsyncRedisSessionStore(trans, client, prefix=prefix) as store:
                session = await store.get_session(False)
                session["n"] += 1
                assert session["n"] == expected
        assert reads == []
        await client.script_flush()
        async with AsyncRedisSessionStore(trans, client, prefix=prefix) as store:
            assert (await store.get_session(False))["n"] == 3
        await client.aclose()

    run(requests())
