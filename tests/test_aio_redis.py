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


# -- the pool's idle list (redis.idle_list), as the sync client has it ------------------------------


def scripts_of(client, prefix):
    return AsyncRedisSessionStore(Transaction(), client, prefix=prefix).backend.caller


def test_async_calls_in_turn_share_one_idle_connection_and_aclose_closes_it(redis_url, sync_client, prefix):
    session_id = stored(sync_client, prefix, {"n": 0})

    async def go(client):
        for _ in range(5):
            await increment(client, prefix, session_id)
        scripts = scripts_of(client, prefix)
        [connection] = scripts.idle
        assert connection in client.connection_pool._in_use_connections  # counted by the pool
        assert connection.is_connected
        await client.aclose()  # an app's shutdown: no socket of fastsession's is left open
        assert not connection.is_connected
        await increment(client, prefix, session_id)  # connected again on the next call
        assert scripts.idle == [connection] and connection.is_connected

    with_client(redis_url, go)
    assert load(sync_client, prefix, session_id)["n"] == 6


def test_an_idle_async_connection_the_server_closed_is_connected_afresh_even_without_retries(
    redis_url, sync_client, prefix
):
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    session_id = stored(sync_client, prefix, {"n": 0})

    async def go(client):
        await increment(client, prefix, session_id)
        [connection] = scripts_of(client, prefix).idle
        sync_client.client_kill_filter(_type="normal", skipme=True)  # as a server timeout or restart would
        await asyncio.sleep(0.05)  # the loop has seen the close
        # The acquire goes unchecked, finds the connection closed, and is made again on it connected afresh
        # (with no retries, an error would reach the caller); the commit is checked first.
        await increment(client, prefix, session_id)
        assert scripts_of(client, prefix).idle == [connection]
        sync_client.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.05)
        scripts = scripts_of(client, prefix)
        assert await scripts.script("pttl", [data_key(prefix, session_id)], []) == -1  # checked, not sent on blind
        assert scripts.idle == [connection]

    with_client(redis_url, go, retry=Retry(NoBackoff(), 0))
    assert load(sync_client, prefix, session_id)["n"] == 2


def test_a_call_cancelled_mid_reply_closes_its_connection_and_the_next_reads_only_its_own():
    server = RedisServer().start()
    try:
        sync_client = redis.Redis.from_url(server.url)
        first, second = stored(sync_client, "fastsession:", {"n": 1}), stored(sync_client, "fastsession:", {"n": 2})

        async def go(client):
            await increment(client, "fastsession:", first)
            [connection] = scripts_of(client, "fastsession:").idle
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                task = asyncio.ensure_future(increment(client, "fastsession:", first))
                await asyncio.sleep(0.2)  # its script sent, its reply not read
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert not connection.is_connected  # closed: its late reply is never read as another call's
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            async with AsyncRedisSessionStore(Transaction({"SID": second}), client, timeout=10) as store:
                return dict(await store.get_session(False))

        assert with_client(server.url, go) == {"n": 2}  # the second session's data, not the first's reply
        assert load(sync_client, "fastsession:", first)["n"] == 2
    finally:
        server.stop()


def test_async_calls_past_the_pools_max_connections_are_refused_and_the_calls_in_flight_finish(
    redis_url, sync_client, prefix, monkeypatch
):
    from fastsession import redis as fs_redis

    # The refused call's unlocker tries again every RETRY_EVERY, a call more at once on the pool's two
    # connections: the pool may refuse an in-flight read's release for it. Its next try comes after they ended.
    monkeypatch.setattr(fs_redis, "RETRY_EVERY", 2.0)
    sessions = [stored(sync_client, prefix, {"n": i}) for i in range(3)]

    async def read_one(client, session_id):
        async with AsyncRedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix) as store:
            return dict(await store.get_session(False))

    async def go():
        pool = redis.asyncio.ConnectionPool.from_url(redis_url, max_connections=2)
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            sync_client.client_pause(1000)  # every call now waits in the server, holding its connection
            in_flight = [asyncio.ensure_future(read_one(client, s)) for s in sessions[:2]]
            await asyncio.sleep(0.2)
            with pytest.raises(SessionError, match="Too many connections"):  # a third at once: as the pool says
                await read_one(client, sessions[2])
            assert await asyncio.gather(*in_flight) == [{"n": 0}, {"n": 1}]
            # The refused call left its token (whose SET NX might yet have run) to the unlocker, which takes an
            # idle connection for each try: once it has settled, both connections are idle again.
            backend = AsyncRedisSessionStore(Transaction(), client, prefix=prefix).backend
            assert backend.sweeper is not None
            await asyncio.wait_for(backend.sweeper, 10)
            assert not backend.pending
            assert len(scripts_of(client, prefix).idle) == 2
        finally:
            await client.aclose()

    run(go())


def test_an_async_burst_keeps_at_most_idle_keep_connections_and_gives_the_rest_back(redis_url, sync_client, prefix):
    from fastsession.redis import IDLE_KEEP

    sessions = [stored(sync_client, prefix, {"n": 0}) for _ in range(3 * IDLE_KEEP)]

    async def go():
        pool = redis.asyncio.ConnectionPool.from_url(redis_url, max_connections=3 * IDLE_KEEP)
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            sync_client.client_pause(300)  # every call at once holds a connection
            await asyncio.gather(*(increment(client, prefix, s) for s in sessions))
            assert len(scripts_of(client, prefix).idle) == IDLE_KEEP  # the rest went back to the pool
            sync_client.client_pause(300)  # the app's own commands, as many at once as the pool has left
            assert await asyncio.gather(*(client.get("x") for _ in range(2 * IDLE_KEEP))) == [None] * (2 * IDLE_KEEP)
        finally:
            await client.aclose()

    run(go())
    assert [load(sync_client, prefix, s)["n"] for s in sessions] == [1] * len(sessions)


def test_an_async_store_on_a_server_that_may_evict_any_key_warns_at_its_first_call(redis_url, sync_client, caplog):
    import logging

    sync_client.config_set("maxmemory-policy", "allkeys-lru")
    try:

        async def go():
            client = redis.asyncio.Redis.from_url(redis_url)
            try:
                with caplog.at_level(logging.WARNING, logger="fastsession"):
                    async with AsyncRedisSessionStore(Transaction(), client) as store:
                        (await store.get_session(True))["n"] = 1
            finally:
                await client.aclose()

        run(go())
    finally:
        sync_client.config_set("maxmemory-policy", "noeviction")
    assert "maxmemory-policy allkeys-lru" in caplog.text


def test_a_caller_made_again_on_a_client_whose_loop_ended_gets_connections_of_its_own_loop(redis_url):
    """A backend made again (a settings change, a new store) on the same client, in a new loop (a test
    client's next request): the connections the former loop left in the client's pool are never used."""
    from fastsession.aio_redis import AsyncScripts
    from fastsession.redis import IDLE_KEEP

    client = redis.asyncio.Redis.from_url(redis_url)

    async def burst():  # more at once than a caller keeps: the rest go back to the client's pool
        scripts = AsyncScripts(client)
        return await asyncio.gather(*(scripts.script("pttl", ["no-such-key"], []) for _ in range(IDLE_KEEP * 2)))

    assert asyncio.run(burst()) == [-2] * IDLE_KEEP * 2
    assert asyncio.run(burst()) == [-2] * IDLE_KEEP * 2
    assert asyncio.run(burst()) == [-2] * IDLE_KEEP * 2


def test_the_django_engines_async_twin_is_dropped_with_its_client():
    """Cached by the client itself, not its id(): a client made later at the same address gets its own."""
    import gc

    from fastsession.contrib._django_redis import _async_clients, async_twin

    before = len(_async_clients)
    client = redis.Redis(host="127.0.0.1", port=RedisServer().port, db=3)
    twin = async_twin(client)
    assert twin.connection_pool.connection_kwargs["db"] == 3 and async_twin(client) is twin
    del client
    gc.collect()
    assert len(_async_clients) == before


@pytest.mark.parametrize("retries", [0, 2])
def test_an_error_the_connections_retry_policy_takes_is_retried_as_many_times_as_it_says(
    redis_url, sync_client, prefix, retries
):
    # As on the sync face (test_redis.py): a first try made outside the policy is judged by it all the same.
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ResponseError

    from fastsession.redis import SCRIPTS

    session_id = stored(sync_client, prefix, {"n": 1})
    sync_client.delete(data_key(prefix, session_id))
    sync_client.rpush(data_key(prefix, session_id), "not a session")  # the acquire script's GET: WRONGTYPE
    for source in SCRIPTS.values():  # (after another test's SCRIPT FLUSH, a NOSCRIPT would count as failed)
        sync_client.script_load(source)
    sync_client.config_resetstat()

    async def read(client):
        with pytest.raises(SessionError, match="WRONGTYPE"):
            async with AsyncRedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix) as store:
                await store.get_session(False)

    with_client(redis_url, read, retry=Retry(NoBackoff(), retries), retry_on_error=[ResponseError])
    calls = sync_client.info("commandstats")["cmdstat_evalsha"]
    assert calls["failed_calls"] == retries + 1  # the acquire's tries
    assert calls["calls"] == retries + 2  # and the unlock that lets go of what a try may have taken
    assert sync_client.lrange(data_key(prefix, session_id), 0, -1) == [b"not a session"]
    assert sync_client.exists(data_key(prefix, session_id) + ":lock") == 0
