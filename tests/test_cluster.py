"""RedisSessionStore and AsyncRedisSessionStore on a real 3-master Redis Cluster (started here)."""

import asyncio
import multiprocessing
import os
import signal
import time
import uuid

import pytest
import redis
from conftest import Transaction
from helpers import run_in_processes
from redis.cluster import key_slot
from redis_topologies import wait_until

from fastsession import SessionError
from fastsession.aio import AsyncRedisSessionStore
from fastsession.names import stored_name
from fastsession.redis import RedisSessionStore, data_key


@pytest.fixture
def cluster(redis_cluster):
    return redis_cluster


@pytest.fixture
def client(cluster):
    c = cluster.client()
    yield c
    c.close()


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex[:8]}:"


def stored(client, prefix, data, **options):
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix, **options) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


def load(client, prefix, session_id, **options):
    with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, **options) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


def test_round_trip_keeps_every_key_of_a_session_in_one_slot(client, prefix):
    session_id = stored(client, prefix, {"user": "ann"}, max_age=100)
    assert load(client, prefix, session_id) == {"user": "ann"}
    key = data_key(prefix, session_id)
    assert key == f"{prefix}{{{stored_name(session_id)}}}"  # a hash of the id, never the id
    assert client.get(key) == b'{"user":"ann"}' and 99_000 < client.pttl(key) <= 100_000
    slot = key_slot(key.encode())
    assert {key_slot((key + suffix).encode()) for suffix in (":lock", ":waiting", ":wake")} == {slot}
    with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix) as store:
        store.expire_session()
    assert client.exists(key, key + ":lock") == 0


def test_async_store_on_the_async_cluster_client(cluster, client, prefix):
    from redis.asyncio.cluster import RedisCluster

    async def scenario():
        async_client = RedisCluster(host="127.0.0.1", port=cluster.port)
        try:
            trans = Transaction()
            async with AsyncRedisSessionStore(trans, async_client, prefix=prefix) as store:
                (await store.get_session(True))["cart"] = [1, 2]
            session_id = trans.cookies["SID"]

            async def add(item):
                async with AsyncRedisSessionStore(
                    Transaction({"SID": session_id}), async_client, prefix=prefix
                ) as store:
                    session = await store.get_session(False)
                    await asyncio.sleep(0.001)
                    session["cart"] = session["cart"] + [item]

            await asyncio.gather(*(add(i) for i in range(20)))
            return session_id
        finally:
            await async_client.aclose()

    session_id = asyncio.run(scenario())
    assert sorted(load(client, prefix, session_id)["cart"]) == sorted([1, 2, *range(20)])


def _increment(port, prefix, session_id, times):
    from redis.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=port)
    for _ in range(times):
        with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, timeout=30) as store:
            store.get_session(False)["n"] += 1


def test_four_processes_lose_no_update(cluster, client, prefix):
    session_id = stored(client, prefix, {"n": 0})
    run_in_processes(lambda: _increment(cluster.port, prefix, session_id, 100))
    assert load(client, prefix, session_id) == {"n": 400}


def test_sessions_spread_over_every_master(cluster, client, prefix):
    ids = [stored(client, prefix, {"i": i}) for i in range(60)]
    per_node = [len(redis.Redis(host="127.0.0.1", port=node.port).keys(prefix + "*")) for node in cluster.nodes]
    assert sum(per_node) == 60 and all(count > 0 for count in per_node), per_node
    assert [load(client, prefix, session_id)["i"] for session_id in ids] == list(range(60))


def _hammer(port, prefix, ids, report, stop_at):
    """Increment each session in turn until ``stop_at``; report (acknowledged, attempted, errors) per session."""
    from redis.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=port, socket_timeout=1.0, cluster_error_retry_attempts=1)
    acknowledged = dict.fromkeys(ids, 0)
    attempted = dict.fromkeys(ids, 0)
    errors = []
    while time.time() < stop_at:
        for session_id in ids:
            attempted[session_id] += 1
            try:
                with RedisSessionStore(
                    Transaction({"SID": session_id}), client, prefix=prefix, timeout=2, lock_ttl=3
                ) as store:
                    session = store.get_session(False)
                    if session is None:
                        errors.append("session vanished")
                        continue
                    session["n"] += 1
            except SessionError as exc:  # LockTimeout is one too
                errors.append(type(exc).__name__)
                continue
            except Exception as exc:  # anything else is a failure of the test
                errors.append(f"unexpected {type(exc).__name__}: {exc}")
                continue
            acknowledged[session_id] += 1
    report.put((acknowledged, attempted, errors))


def test_a_master_killed_and_restarted_mid_run_gives_session_errors_and_loses_nothing(cluster, client, prefix):
    victim = cluster.nodes[1]

    def on(node, session_id):
        return client.get_node_from_key(data_key(prefix, session_id)).port == node.port

    ids = [stored(client, prefix, {"n": 0}) for _ in range(9)]
    while len([i for i in ids if on(victim, i)]) < 3:  # some on the master to restart, whatever the slots
        ids.append(stored(client, prefix, {"n": 0}))
    on_victim = [i for i in ids if on(victim, i)]
    deleted = stored(client, prefix, {"gone": True})
    while not on(victim, deleted):
        deleted = stored(client, prefix, {"gone": True})
    with RedisSessionStore(Transaction({"SID": deleted}), client, prefix=prefix) as store:
        store.expire_session()  # deleted before the crash: must not come back after it

    report = multiprocessing.get_context("fork").Queue()
    stop_at = time.time() + 6
    workers = [
        multiprocessing.get_context("fork").Process(target=_hammer, args=(cluster.port, prefix, ids, report, stop_at))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    time.sleep(1.0)
    victim.start()  # same folder: its nodes.conf and append-only file
    wait_until(cluster.ready, 30, "the cluster to be ok again")
    results = [report.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)

    errors = [e for _, _, errs in results for e in errs]
    assert not [e for e in errors if e.startswith("unexpected") or e == "session vanished"], errors
    assert "SessionError" in errors or "LockTimeout" in errors  # the outage was seen, and said so
    wait_until(lambda: all(load(client, prefix, i) is not None for i in ids), 30, "every session readable")
    for session_id in ids:
        n = load(client, prefix, session_id)["n"]
        acknowledged = sum(r[0][session_id] for r in results)
        attempted = sum(r[1][session_id] for r in results)
        # every acknowledged commit is kept; a failed one may or may not have been applied
        assert acknowledged <= n <= attempted, (session_id in on_victim, acknowledged, n, attempted)
    assert load(client, prefix, deleted) is None


def test_lock_table_lists_the_held_locks_of_every_master(cluster, client, prefix):
    import json
    import subprocess

    ids, per_master = [], {}
    while len(per_master) < 3 or min(per_master.values()) < 2:  # sessions on every master
        ids.append(stored(client, prefix, {"i": len(ids)}))
        port = client.get_node_from_key(data_key(prefix, ids[-1])).port
        per_master[port] = per_master.get(port, 0) + 1
    held = [RedisSessionStore(Transaction({"SID": i}), client, prefix=prefix) for i in ids]
    for store in held:
        store.get_session(False)
    try:
        done = subprocess.run(
            [
                "fastsession",
                "locks",
                "--redis",
                f"redis://127.0.0.1:{cluster.port}",
                "--cluster",
                "--prefix",
                prefix,
                "--json",
            ],
            capture_output=True,
            text=True,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert sorted(row["session"] for row in rows) == sorted(stored_name(i)[:8] + "…" for i in ids)
        assert all(row["pid"] == os.getpid() and row["alive"] is True for row in rows)
    finally:
        for store in held:
            store.rollback()


def test_the_user_index_on_cluster_lists_and_revokes_sessions_on_every_master(cluster, client, prefix):
    ids = []
    while len({client.get_node_from_key(data_key(prefix, i)).port for i in ids}) < 3:  # devices on every master
        trans = Transaction()
        with RedisSessionStore(trans, client, prefix=prefix) as store:
            store.get_session(True)["user"] = "ann"
            store.bind_user("ann", device=str(len(ids)))
        ids.append(trans.cookies["SID"])
    store = RedisSessionStore(Transaction({"SID": ids[0]}), client, prefix=prefix)
    assert sorted(e.session for e in store.sessions_of("ann")) == sorted(stored_name(i) for i in ids)
    assert store.revoke_all("ann", keep=ids[0]) == len(ids) - 1
    store.close()
    assert [load(client, prefix, i) is not None for i in ids] == [True] + [False] * (len(ids) - 1)
    with RedisSessionStore(Transaction(), client, prefix=prefix) as store:
        assert [e.session for e in store.sessions_of("ann")] == [stored_name(ids[0])]


def _log_in_capped(port, prefix, max_sessions, report):
    from redis.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=port)
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix, max_age=3600, max_sessions=max_sessions, timeout=30) as store:
        store.get_session(True)["user"] = "ann"
        store.bind_user("ann")
    client.close()
    report.put(trans.cookies["SID"])


def test_max_sessions_on_cluster_leaves_exactly_n_of_racing_logins_whatever_master_holds_them(cluster, client, prefix):
    context = multiprocessing.get_context("fork")
    report = context.Queue()
    workers = [context.Process(target=_log_in_capped, args=(cluster.port, prefix, 2, report)) for _ in range(5)]
    for worker in workers:
        worker.start()
    ids = [report.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    alive = [i for i in ids if load(client, prefix, i) is not None]
    assert len(alive) == 2
    with RedisSessionStore(Transaction(), client, prefix=prefix) as store:
        assert sorted(e.session for e in store.sessions_of("ann")) == sorted(stored_name(i) for i in alive)

    async def async_login():
        from redis.asyncio.cluster import RedisCluster

        async_client = RedisCluster(host="127.0.0.1", port=cluster.port)
        try:
            trans = Transaction()
            async with AsyncRedisSessionStore(trans, async_client, prefix=prefix, max_age=3600) as store:
                (await store.get_session(True))["user"] = "ann"
                await store.bind_user("ann", max_sessions=1)
            return trans.cookies["SID"]
        finally:
            await async_client.aclose()

    newest = asyncio.run(async_login())
    assert [load(client, prefix, i) is not None for i in [*alive, newest]] == [False, False, True]


def test_lifecycle_events_on_cluster(client, prefix):
    from fastsession import events

    seen = []
    handler = events.subscribe(lambda event: seen.append((event.kind, event.session, event.reason)))
    try:
        trans = Transaction()
        with RedisSessionStore(trans, client, prefix=prefix) as store:
            store.get_session(True)["user"] = "ann"
            store.bind_user("ann")
        sid = trans.cookies["SID"]
        with RedisSessionStore(Transaction(), client, prefix=prefix) as store:
            assert store.revoke_all("ann") == 1
    finally:
        events.unsubscribe(handler)
    assert seen == [("created", stored_name(sid), None), ("revoked", stored_name(sid), "revoke_all")]
