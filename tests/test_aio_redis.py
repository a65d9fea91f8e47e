"""fastsession.aio.AsyncRedisSessionStore on redis.asyncio, against a real redis-server."""

import asyncio
import os
import signal
import time
import uuid

import pytest
import redis
import redis.asyncio
from conftest import Transaction
from test_aio import run

from fastsession import LockTimeout, SessionError
from fastsession.aio import AsyncRedisSessionStore
from fastsession.bench.redis_server import RedisServer
from fastsession.redis import RedisSessionStore, data_key


@pytest.fixture
def prefix():
    return f"test-aio-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def sync_client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def stored(sync_client, prefix, data):
    trans = Transaction()
    with RedisSessionStore(trans, sync_client, prefix=prefix) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


def load(sync_client, prefix, session_id):
    with RedisSessionStore(Transaction({"SID": session_id}), sync_client, prefix=prefix) as store:
        return store.get_session(False)


def our_keys(sync_client, prefix):
    """The prefix's keys, but the short-lived wake-up marks of a contended lock (each with a TTL of at most 1 s)."""
    keys = sorted(k.decode() for k in sync_client.scan_iter(match=prefix + "*"))
    marks = [k for k in keys if k.endswith((":waiting", ":wake"))]
    assert all(0 < sync_client.pttl(k) <= 1000 or sync_client.pttl(k) == -2 for k in marks)
    return [k for k in keys if k not in marks]


async def increment(client, prefix, session_id, pause=0.0, **options):
    async with AsyncRedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, **options) as store:
        session = await store.get_session(False)
        seen = session["n"]
        await asyncio.sleep(pause)
        session["n"] = seen + 1


def with_client(redis_url, work, **options):
    """Run ``work(client)`` on a new loop with its own redis.asyncio client."""

    async def go():
        client = redis.asyncio.Redis.from_url(redis_url, **options)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return run(go())


def test_round_trip_shared_with_the_sync_store(redis_url, sync_client, prefix):
    async def write(client):
        trans = Transaction()
        async with AsyncRedisSessionStore(trans, client, prefix=prefix, max_age=100) as store:
            (await store.get_session(True))["user"] = "ann"
        return trans.cookies["SID"]

    session_id = with_client(redis_url, write)
    assert load(sync_client, prefix, session_id) == {"user": "ann"}
    assert 99_000 < sync_client.pttl(data_key(prefix, session_id)) <= 100_000
    assert our_keys(sync_client, prefix) == [data_key(prefix, session_id)]


def test_unknown_id_is_never_adopted_and_an_empty_new_session_is_not_stored(redis_url, sync_client, prefix):
    async def go(client):
        async with AsyncRedisSessionStore(Transaction({"SID": "A" * 43}), client, prefix=prefix) as store:
            assert await store.get_session(False) is None
            session = await store.get_session(True)
            assert session.session_id != "A" * 43

    with_client(redis_url, go)
    assert our_keys(sync_client, prefix) == []


def test_expire_and_regenerate(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 1})

    async def go(client):
        trans = Transaction({"SID": session_id})
        async with AsyncRedisSessionStore(trans, client, prefix=prefix) as store:
            await store.get_session(False)
            new_id = await store.regenerate_id()
        async with AsyncRedisSessionStore(trans, client, prefix=prefix) as store:
            assert dict(await store.get_session(False)) == {"n": 1}
            await store.expire_session()
        return new_id, trans

    new_id, trans = with_client(redis_url, go)
    assert new_id != session_id and ("delete", "SID") in trans.events
    assert our_keys(sync_client, prefix) == []


def test_a_hundred_concurrent_increments_in_one_loop_and_a_sync_process_lose_nothing(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 0})

    def sync_increments():
        c = redis.Redis.from_url(redis_url)
        for _ in range(50):
            with RedisSessionStore(Transaction({"SID": session_id}), c, prefix=prefix) as store:
                session = store.get_session(False)
                seen = session["n"]
                time.sleep(0.001)
                session["n"] = seen + 1

    async def go(client):
        await asyncio.gather(
            asyncio.to_thread(sync_increments),
            *(increment(client, prefix, session_id, 0.001) for _ in range(100)),
        )

    with_client(redis_url, go)
    assert load(sync_client, prefix, session_id)["n"] == 150
    assert our_keys(sync_client, prefix) == [data_key(prefix, session_id)]


def test_lock_timeout_and_cancellation_while_waiting_leave_only_the_holders_lock(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 0})

    async def go(client):
        holder = AsyncRedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix)
        await holder.get_session(False)
        with pytest.raises(LockTimeout):
            await increment(client, prefix, session_id, timeout=0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(increment(client, prefix, session_id), 0.05)
        assert our_keys(sync_client, prefix) == [data_key(prefix, session_id), data_key(prefix, session_id) + ":lock"]
        await holder.close()

    with_client(redis_url, go)
    assert our_keys(sync_client, prefix) == [data_key(prefix, session_id)]
    assert load(sync_client, prefix, session_id)["n"] == 0


def test_cancelled_request_releases_its_lock_and_writes_nothing(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 0})

    async def go(client):
        task = asyncio.ensure_future(increment(client, prefix, session_id, pause=30))
        await asyncio.sleep(0.1)
        assert data_key(prefix, session_id) + ":lock" in our_keys(sync_client, prefix)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with_client(redis_url, go)
    assert our_keys(sync_client, prefix) == [data_key(prefix, session_id)]
    assert load(sync_client, prefix, session_id)["n"] == 0


def test_a_paused_redis_is_a_session_error_and_leaves_no_lock_once_it_resumes():
    server = RedisServer().start()
    try:
        sync_client = redis.Redis.from_url(server.url)
        session_id = stored(sync_client, "fastsession:", {"n": 1})

        async def go(client):
            os.kill(server.process.pid, signal.SIGSTOP)  # Redis stops answering, mid-traffic
            try:
                with pytest.raises(SessionError, match="Redis"):  # the request gives up...
                    await increment(client, "fastsession:", session_id)
                await asyncio.sleep(2)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)  # ...and its queued SET NX runs now
            resumed = time.monotonic()
            await increment(client, "fastsession:", session_id, timeout=10)
            return time.monotonic() - resumed

        took = with_client(server.url, go, socket_timeout=0.5, socket_connect_timeout=0.5)
        assert took < 2.0  # served at once, not after lock_ttl (30 s)
        assert load(sync_client, "fastsession:", session_id)["n"] == 2
        assert sync_client.keys("fastsession:*:lock") == []
    finally:
        server.stop()


def test_a_request_cancelled_while_its_acquire_is_on_the_wire_leaves_no_lock():
    # Redis paused: the SET NX sits in the socket when the request is cancelled
    # (a client disconnect), and runs once Redis resumes. The token is swept.
    server = RedisServer().start()
    try:
        sync_client = redis.Redis.from_url(server.url)
        session_id = stored(sync_client, "fastsession:", {"n": 0})

        async def go(client):
            await client.ping()  # connected before the pause
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                task = asyncio.ensure_future(increment(client, "fastsession:", session_id))
                await asyncio.sleep(0.2)  # sent, waiting for the reply
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            resumed = time.monotonic()
            await increment(client, "fastsession:", session_id, timeout=10)
            return time.monotonic() - resumed

        took = with_client(server.url, go)
        assert took < 2.0  # not kept waiting for lock_ttl (30 s) by the cancelled request's lock
        assert load(sync_client, "fastsession:", session_id)["n"] == 1
        assert sync_client.keys("fastsession:*:lock") == []
    finally:
        server.stop()


def test_async_scripts_survive_a_script_flush_and_killed_connections(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 0})

    async def go():
        # Retries are the client's, as for its own commands: from_url's async client makes none, this one does.
        kwargs = redis.asyncio.Redis.from_url(redis_url).connection_pool.connection_kwargs
        client = redis.asyncio.Redis(host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379))
        try:
            await increment(client, prefix, session_id)
            await sync_client_flush_and_kill()
            await increment(client, prefix, session_id)  # NOSCRIPT and a dropped connection: handled
        finally:
            await client.aclose()

    async def sync_client_flush_and_kill():
        sync_client.script_flush()
        sync_client.execute_command("CLIENT", "KILL", "TYPE", "normal")

    run(go())
    assert load(sync_client, prefix, session_id)["n"] == 2
