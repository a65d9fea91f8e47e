"""RedisSessionStore against a real redis-server."""

import logging
import os
import re
import time
import uuid

import pytest
import redis
from conftest import Transaction
from helpers import hold_until_killed, kill_and_reap, run_in_processes

from fastsession import LockTimeout, SerializationError, SessionError
from fastsession.bench.redis_server import RedisServer
from fastsession.redis import RedisSessionStore, data_key

ID = re.compile(r"[A-Za-z0-9_-]{43}")


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def make(client, prefix):
    made = []

    def make_store(trans=None, **options):
        options.setdefault("prefix", prefix)
        store = RedisSessionStore(trans if trans is not None else Transaction(), client, **options)
        made.append(store)
        return store

    yield make_store
    for store in made:
        store.rollback()


def stored(make, data, **options):
    trans = Transaction()
    with make(trans, **options) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


def load(make, session_id, **options):
    with make(Transaction({"SID": session_id}), **options) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


def our_keys(client, prefix):
    """The prefix's keys, but the short-lived wake-up marks of a contended lock (each with a TTL of at most 1 s)."""
    keys = sorted(k.decode() for k in client.scan_iter(match=prefix + "*"))
    marks = [k for k in keys if k.endswith((":waiting", ":wake"))]
    assert all(0 < client.pttl(k) <= 1000 or client.pttl(k) == -2 for k in marks)
    return [k for k in keys if k not in marks]


def test_round_trip_and_key_layout(make, client, prefix):
    session_id = stored(make, {"user": "ann", "cart": [1, 2]})
    assert ID.fullmatch(session_id)
    assert load(make, session_id) == {"user": "ann", "cart": [1, 2]}
    assert our_keys(client, prefix) == [data_key(prefix, session_id)]  # no lock left
    assert client.pttl(data_key(prefix, session_id)) == -1  # max_age=None: no TTL


def test_max_age_sets_the_ttl_on_write(make, client, prefix):
    session_id = stored(make, {"a": 1}, max_age=100)
    assert 99_000 < client.pttl(data_key(prefix, session_id)) <= 100_000


def test_unchanged_read_neither_writes_nor_touches_before_a_quarter_of_max_age(make, client, prefix):
    session_id = stored(make, {"a": 1}, max_age=100)
    key = data_key(prefix, session_id)
    client.pexpire(key, 90_000)  # as if written 10 s ago
    assert load(make, session_id, max_age=100) == {"a": 1}
    assert client.pttl(key) <= 90_000
    client.pexpire(key, 60_000)  # 40 s ago: more than a quarter
    load(make, session_id, max_age=100)
    assert client.pttl(key) > 99_000


@pytest.mark.parametrize("cookie", ["A" * 43, "../x", "", "A" * 42 + "\n", "{x}" * 15])
def test_unknown_or_malformed_cookie_is_never_adopted(make, cookie, client, prefix):
    trans = Transaction({"SID": cookie})
    assert make(Transaction({"SID": cookie})).get_session(False) is None
    with make(trans) as store:
        session = store.get_session(True)
        session["x"] = 1
    assert session.session_id != cookie and ID.fullmatch(session.session_id)
    assert our_keys(client, prefix) == [data_key(prefix, session.session_id)]


def test_new_empty_session_is_not_stored(make, client, prefix):
    with make() as store:
        store.get_session(True)
    assert our_keys(client, prefix) == []


def test_expire_session_deletes_data_and_cookie(make, client, prefix):
    session_id = stored(make, {"a": 1})
    trans = Transaction({"SID": session_id})
    with make(trans) as store:
        store.get_session(False)
        store.expire_session()
    assert our_keys(client, prefix) == []
    assert trans.events == [("delete", "SID")]


def test_regenerate_id_moves_the_data(make, client, prefix):
    old = stored(make, {"cart": [1]})
    trans = Transaction({"SID": old})
    with make(trans) as store:
        new = store.regenerate_id()
    assert load(make, old) is None and load(make, new) == {"cart": [1]}
    assert trans.cookies["SID"] == new


def test_exception_rolls_back_and_unlocks(make, client, prefix):
    session_id = stored(make, {"n": 1})
    with pytest.raises(ZeroDivisionError):
        with make(Transaction({"SID": session_id})) as store:
            store.get_session(False)["n"] = 2
            raise ZeroDivisionError("the view fails")
    assert load(make, session_id, timeout=1) == {"n": 1}
    assert our_keys(client, prefix) == [data_key(prefix, session_id)]


def test_unencodable_value_keeps_data_and_unlocks(make, client, prefix):
    session_id = stored(make, {"n": 1})
    store = make(Transaction({"SID": session_id}))
    store.get_session(False)["n"] = object()
    with pytest.raises(SerializationError, match="n"):
        store.close()
    assert load(make, session_id, timeout=1) == {"n": 1}


def test_corrupt_value_counts_as_absent_and_is_logged(make, client, prefix, caplog):
    session_id = stored(make, {"n": 1})
    client.set(data_key(prefix, session_id), b"\x80not json")
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert load(make, session_id) is None
    assert any(r.name == "fastsession.redis" for r in caplog.records)  # the backend's own logger


def test_timeout_raises_lock_timeout(make, prefix):
    session_id = stored(make, {"n": 1})
    holder = make(Transaction({"SID": session_id}))
    holder.get_session(False)
    with pytest.raises(LockTimeout):
        make(Transaction({"SID": session_id}), timeout=0.2).get_session(False)
    holder.close()


def _increment(redis_url, prefix, session_id, times):
    client = redis.Redis.from_url(redis_url)
    for _ in range(times):
        with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, delay=0.01) as store:
            store.get_session(False)["n"] += 1


def test_four_processes_lose_no_update(make, redis_url, prefix):
    session_id = stored(make, {"n": 0})
    run_in_processes(lambda: _increment(redis_url, prefix, session_id, 100))
    assert load(make, session_id) == {"n": 400}


def test_killed_holder_blocks_others_at_most_lock_ttl(make, redis_url, prefix):
    session_id = stored(make, {"n": 7})

    def hold():
        client = redis.Redis.from_url(redis_url)
        store = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, lock_ttl=0.5)
        store.get_session(False)["n"] = 1000  # never committed
        return store

    kill_and_reap(hold_until_killed(hold))
    started = time.monotonic()
    assert load(make, session_id, timeout=5) == {"n": 7}
    assert time.monotonic() - started < 0.5 + 0.3


def test_holder_whose_lock_expired_never_overwrites_the_next_holder(make, prefix):
    session_id = stored(make, {"n": 1})
    slow = make(Transaction({"SID": session_id}), lock_ttl=0.2)
    slow.get_session(False)["n"] = 999
    time.sleep(0.4)  # the lock expires mid-request
    with make(Transaction({"SID": session_id}), timeout=1) as fast:
        fast.get_session(False)["n"] = 2
    with pytest.raises(SessionError, match="expired"):
        slow.close()
    assert load(make, session_id) == {"n": 2}


def test_unreachable_redis_is_a_clear_error_never_an_empty_session():
    client = redis.Redis(host="127.0.0.1", port=RedisServer().port, socket_connect_timeout=0.5)
    store = RedisSessionStore(Transaction({"SID": "A" * 43}), client)
    with pytest.raises(SessionError, match="Redis") as info:
        store.get_session(True)
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)


def test_redis_stopped_in_the_middle_of_a_run():
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
        trans = Transaction()
        with RedisSessionStore(trans, client) as store:
            store.get_session(True)["n"] = 1
        store = RedisSessionStore(Transaction(dict(trans.cookies)), client)
        store.get_session(False)["n"] = 2
        server.stop()
        with pytest.raises(SessionError):
            store.close()  # the commit fails loudly
        with pytest.raises(SessionError):
            RedisSessionStore(Transaction(dict(trans.cookies)), client).get_session(True)
        server.start()  # back, empty (persistence off): a fresh session, no stale lock in the way
        with RedisSessionStore(Transaction(dict(trans.cookies)), client, timeout=1) as store:
            assert store.get_session(True) == {}
    finally:
        server.stop()


def test_failed_commit_leaves_no_lock_and_keeps_the_data(make, client, prefix):
    session_id = stored(make, {"n": 1})
    store = make(Transaction({"SID": session_id}))
    store.get_session(False)["big"] = "x" * 5_000_000
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 1_000_000)
    try:
        with pytest.raises(SessionError, match="OOM|memory"):
            store.close()
    finally:
        client.config_set("maxmemory", 0)
    assert our_keys(client, prefix) == [data_key(prefix, session_id)]  # the lock is gone
    assert load(make, session_id) == {"n": 1}


def test_wsgi_middleware_on_redis(client, prefix):
    from test_wsgi import call, counter_app, sid_from

    from fastsession.wsgi import SessionMiddleware

    app = SessionMiddleware(counter_app, client, store_factory=RedisSessionStore, prefix=prefix)
    sid = sid_from(call(app)[1])
    assert call(app, f"SID={sid}")[2] == b"2"


def test_flask_interface_on_redis(client, prefix):
    import flask

    from fastsession.contrib.flask import FastSessionInterface

    app = flask.Flask(__name__)
    app.session_interface = FastSessionInterface(client, store_class=RedisSessionStore, prefix=prefix)

    @app.route("/")
    def count():
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    web = app.test_client()
    assert [web.get("/").data for _ in range(3)] == [b"1", b"2", b"3"]


def test_a_paused_redis_leaves_no_lock_once_it_resumes():
    import signal

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        session_id = None
        trans = Transaction()
        with RedisSessionStore(trans, client) as store:
            store.get_session(True)["n"] = 1
        session_id = trans.cookies["SID"]
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis stops answering, mid-traffic
        try:
            paused_at = time.monotonic()
            with pytest.raises(SessionError, match="Redis"):  # the request gives up...
                RedisSessionStore(Transaction({"SID": session_id}), client).get_session(False)
            time.sleep(max(0.0, 3.0 - (time.monotonic() - paused_at)))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)  # ...and its queued SET NX runs now
        resumed = time.monotonic()
        with RedisSessionStore(Transaction({"SID": session_id}), client, timeout=10) as store:
            assert store.get_session(False) == {"n": 1}
        assert time.monotonic() - resumed < 2.0  # served at once, not after lock_ttl (30 s)
        assert client.keys("fastsession:*:lock") == []
    finally:
        server.stop()


def test_a_value_of_the_wrong_type_is_a_session_error_and_leaves_no_lock(make, client, prefix):
    session_id = "W" * 43
    client.rpush(data_key(prefix, session_id), "not", "a", "session")
    for _attempt in range(2):  # the second request is not kept waiting by a lock the first left
        started = time.monotonic()
        with pytest.raises(SessionError, match="WRONGTYPE"):
            make(Transaction({"SID": session_id}), timeout=5).get_session(False)
        assert time.monotonic() - started < 1
        assert client.exists(data_key(prefix, session_id) + ":lock") == 0


def test_a_session_stored_by_0_1_under_the_plain_id_is_read_and_moved_to_its_new_key(make, client, prefix):
    from fastsession._kernels import ACTIVE

    session_id = ACTIVE.new_session_id()
    old_key = prefix + session_id  # 0.1's layout
    client.set(old_key, b'{"n":1}', px=60_000)
    # an unlocked read (locking="commit", nothing changed) reads it where it is and moves nothing
    with make(Transaction({"SID": session_id}), locking="commit") as store:
        assert dict(store.get_session(False)) == {"n": 1}
    assert client.exists(old_key) == 1 and client.exists(data_key(prefix, session_id)) == 0
    # the first locked request moves it, TTL and all, under its lock
    with make(Transaction({"SID": session_id}), max_age=60) as store:
        session = store.get_session(False)
        assert dict(session) == {"n": 1}
        assert client.exists(old_key) == 0 and 0 < client.pttl(data_key(prefix, session_id)) <= 60_000
        session["n"] = 2
    assert our_keys(client, prefix) == [data_key(prefix, session_id)]
    assert load(make, session_id) == {"n": 2}


def test_a_stored_sessions_acquire_looks_for_no_0_1_key(make, client, prefix):
    # The 0.1 key is looked for only when the new key holds nothing: a stored session's acquire makes the
    # server run SET NX, GET and PTTL, and no EXISTS (the one EXISTS is the release's: does anyone wait?).
    session_id = stored(make, {"n": 1})
    client.config_resetstat()
    assert load(make, session_id) == {"n": 1}
    stats = client.info("commandstats")
    assert stats["cmdstat_exists"]["calls"] == 1 and "cmdstat_rename" not in stats
    assert stats["cmdstat_pttl"]["calls"] == 1 and stats["cmdstat_evalsha"]["calls"] == 2  # acquire, release


@pytest.mark.parametrize("change", [False, True])
def test_a_0_1_session_without_a_ttl_gets_max_ages_when_it_is_moved(make, client, prefix, change):
    """A session migrated into its new key must expire like the others, read-only users' included."""
    from fastsession._kernels import ACTIVE

    session_id = ACTIVE.new_session_id()
    client.set(prefix + session_id, b'{"n":1}')  # 0.1 wrote it without a TTL
    with make(Transaction({"SID": session_id}), max_age=100) as store:
        session = store.get_session(False)
        if change:
            session["n"] = 2
    assert 0 < client.pttl(data_key(prefix, session_id)) <= 100_000


def test_without_locks_a_0_1_session_is_read_at_its_old_key_and_a_write_or_delete_leaves_nothing_there(
    make, client, prefix
):
    from fastsession._kernels import ACTIVE

    kept, dropped = ACTIVE.new_session_id(), ACTIVE.new_session_id()
    client.set(prefix + kept, b'{"n":1}')
    client.set(prefix + dropped, b'{"n":1}')
    with make(Transaction({"SID": kept}), concurrent=0) as store:
        session = store.get_session(False)
        session["n"] += 1
    with make(Transaction({"SID": dropped}), concurrent=0) as store:
        assert store.get_session(False) is not None
        store.expire_session()
    assert our_keys(client, prefix) == [data_key(prefix, kept)]
    assert load(make, kept) == {"n": 2}


# -- scripts on a pooled connection, without redis-py's per-command layer ---------------------------


def test_scripts_survive_a_script_flush_and_killed_connections(make, client, prefix):
    store = make()
    assert store.backend.scripts.pool is client.connection_pool  # the fast path, on a plain client
    session_id = stored(make, {"n": 1})
    client.script_flush()  # a restarted or flushed server: NOSCRIPT, then loaded again
    with make(Transaction({"SID": session_id})) as store:
        store.get_session(False)["n"] += 1
    client.execute_command("CLIENT", "KILL", "TYPE", "normal")  # every pooled connection dropped
    with make(Transaction({"SID": session_id})) as store:
        store.get_session(False)["n"] += 1  # reconnected and retried, as redis-py's own commands are
    assert load(make, session_id) == {"n": 3}


def test_calls_in_turn_share_one_idle_connection_of_the_pools(make, client):
    session_id = stored(make, {"n": 0})
    scripts = make().backend.scripts
    [connection] = scripts.idle  # checked out of the pool by the first call, kept by it
    assert connection in client.connection_pool._in_use_connections  # counted by the pool: max_connections holds
    for _ in range(5):
        with make(Transaction({"SID": session_id})) as store:
            store.get_session(False)["n"] += 1
    assert scripts.idle == [connection]
    assert load(make, session_id) == {"n": 5}


def test_client_close_closes_the_idle_connections_and_the_next_call_connects_again(make, client):
    session_id = stored(make, {"n": 0})
    [connection] = make().backend.scripts.idle
    assert connection._sock is not None
    client.close()  # an app's shutdown (or a test's teardown): no socket of fastsession's is left open
    assert connection._sock is None
    with make(Transaction({"SID": session_id})) as store:
        store.get_session(False)["n"] += 1
    assert make().backend.scripts.idle == [connection] and connection._sock is not None
    assert load(make, session_id) == {"n": 1}


def test_a_backend_made_again_finds_the_idle_connections_of_its_client(make, client):
    from fastsession import store as store_module

    session_id = stored(make, {"n": 0})
    idle = make().backend.scripts.idle
    [connection] = idle
    store_module._backends.clear()  # as shared_backend does past its bounds
    again = make()
    assert again.backend.scripts.idle is idle
    with make(Transaction({"SID": session_id})) as store:
        store.get_session(False)["n"] += 1
    assert idle == [connection]  # no connection checked out of the pool and left there


def test_an_idle_connection_the_server_closed_is_connected_afresh_even_without_retries(redis_url, prefix):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))  # an error would reach the caller
    make = lambda trans: RedisSessionStore(trans, client, prefix=prefix)  # noqa: E731
    session_id = stored(make, {"n": 1})
    [connection] = make(Transaction()).backend.scripts.idle
    killer = redis.Redis.from_url(redis_url)
    killer.client_kill_filter(_type="normal", skipme=True)  # the idle connection too, as a server timeout would
    time.sleep(0.05)  # the server's close has reached this end
    # The acquire goes out unchecked, finds the connection closed, and is made again on it connected afresh;
    # the release after it is checked first.
    assert load(make, session_id) == {"n": 1}
    assert make(Transaction()).backend.scripts.idle == [connection]
    killer.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.05)
    scripts = make(Transaction()).backend.scripts
    assert scripts("pttl", [data_key(prefix, session_id)], []) == -1  # checked: connected afresh, not sent on blind
    assert scripts.idle == [connection]
    killer.close()
    client.close()


def test_a_backend_subclass_that_overrides_script_has_every_call_go_through_it(client, prefix):
    from fastsession.redis import RedisBackend

    names = []

    class Counting(RedisBackend):
        def script(self, name, keys, args):
            names.append(name)
            return super().script(name, keys, args)

    class Store(RedisSessionStore):
        __slots__ = ()
        backend_class = Counting

    make = lambda trans: Store(trans, client, prefix=prefix)  # noqa: E731
    session_id = stored(make, {"n": 1})
    assert load(make, session_id) == {"n": 1}
    assert names == ["acquire", "commit", "acquire", "release"]


@pytest.mark.parametrize("retries", [0, 2])
def test_an_error_the_connections_retry_policy_takes_is_retried_as_many_times_as_it_says(redis_url, prefix, retries):
    # The first try is made outside the policy (a few frames fewer per call) and handed to it when it fails:
    # any error the policy supports (here an error reply, which an app may list in retry_on_error) is
    # retried, as often as the policy says, counting the first try.
    from redis.backoff import NoBackoff
    from redis.exceptions import ResponseError
    from redis.retry import Retry

    from fastsession.redis import SCRIPTS

    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), retries), retry_on_error=[ResponseError])
    make = lambda trans: RedisSessionStore(trans, client, prefix=prefix)  # noqa: E731
    session_id = stored(make, {"n": 1})
    client.delete(data_key(prefix, session_id))
    client.rpush(data_key(prefix, session_id), "not a session")  # the acquire script's GET: WRONGTYPE
    for source in SCRIPTS.values():  # (after another test's SCRIPT FLUSH, a NOSCRIPT would count as failed)
        client.script_load(source)
    client.config_resetstat()
    with pytest.raises(SessionError, match="WRONGTYPE"):
        load(make, session_id)
    calls = client.info("commandstats")["cmdstat_evalsha"]
    assert calls["failed_calls"] == retries + 1  # the acquire's tries
    assert calls["calls"] == retries + 2  # and the unlock that lets go of what a try may have taken
    assert client.lrange(data_key(prefix, session_id), 0, -1) == [b"not a session"]  # kept, and no lock left
    assert client.exists(data_key(prefix, session_id) + ":lock") == 0
    client.close()


def test_the_acquire_sent_again_with_its_token_answers_as_the_first_time_and_no_other_token_gets_the_lock(
    make, client, prefix
):
    # What makes the acquire safe to send unchecked: a run of it whose reply was lost with its connection
    # (the server ran it, then closed) and the run sent after it on a new connection both hold the lock.
    session_id = stored(make, {"n": 1})
    scripts = make().backend.scripts
    key = data_key(prefix, session_id)
    keys, token = [key + ":lock", key, key + ":waiting"], "tok.1 somewhere"
    first = scripts("acquire", keys, [token, 30000, "0"])
    again = scripts("acquire", keys, [token, 30000, "0"])
    assert first[0] == again[0] == 1 and first[1] == again[1] == client.get(key)
    assert scripts("acquire", keys, ["tok.2 elsewhere", 30000, "0"]) == [0]  # another's: still refused
    assert client.get(key + ":lock") == token.encode()
    assert scripts("release", [key + ":lock", key, key + ":waiting", key + ":wake"], [token, "0"]) == 1


def test_an_idle_connection_past_descriptor_1024_is_checked_too(redis_url, prefix):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail(f"the test needs 1200 file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = []
    try:
        while len(filler) < 1100:  # a busy app's descriptors: the client's socket comes after them
            filler.append(os.open("/dev/null", os.O_RDONLY))
        client = redis.Redis.from_url(redis_url)
        make = lambda trans: RedisSessionStore(trans, client, prefix=prefix)  # noqa: E731
        session_id = stored(make, {"n": 1})
        [connection] = make(Transaction()).backend.scripts.idle
        assert connection._sock.fileno() >= 1024
        redis.Redis.from_url(redis_url).client_kill_filter(_type="normal", skipme=True)
        time.sleep(0.05)
        scripts = make(Transaction()).backend.scripts  # a checked call: select() cannot take it, poll() can
        assert scripts("pttl", [data_key(prefix, session_id)], []) == -1
        assert load(make, session_id) == {"n": 1}
        client.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_calls_past_the_pools_max_connections_are_refused_and_the_calls_in_flight_finish(redis_url, prefix):
    import threading

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=2))
    sessions = [stored(lambda trans: RedisSessionStore(trans, client, prefix=prefix), {"n": i}) for i in range(3)]
    scripts = RedisSessionStore(Transaction(), client, prefix=prefix).backend.scripts
    pauser = redis.Redis.from_url(redis_url)
    pauser.client_pause(1500)  # every call now waits in the server, holding its connection
    read = {}

    def read_one(session_id):
        with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix) as store:
            read[session_id] = dict(store.get_session(False))

    threads = [threading.Thread(target=read_one, args=(session_id,)) for session_id in sessions[:2]]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 1.0
    in_use = client.connection_pool._in_use_connections
    while (scripts.idle or len(in_use) < 2) and time.monotonic() < deadline:  # both calls hold a connection
        time.sleep(0.01)
    assert scripts.idle == [] and len(in_use) == 2
    with pytest.raises(SessionError, match="Too many connections"):  # a third at once: as the pool says
        RedisSessionStore(Transaction({"SID": sessions[2]}), client, prefix=prefix).get_session(False)
    for thread in threads:
        thread.join()
    assert read == {sessions[0]: {"n": 0}, sessions[1]: {"n": 1}}  # the two in flight were served
    assert len(scripts.idle) == 2 and set(scripts.idle) == in_use  # kept, both, counted by the pool
    pauser.close()
    client.close()


def burst(make, sessions, hold=0.0):
    """One thread per session id, all at once, each a locked read-modify-write; the errors they met."""
    import threading

    errors = []

    def bump(session_id):
        try:
            with make(Transaction({"SID": session_id})) as store:
                session = store.get_session(False)
                time.sleep(hold)  # a request's work, with the lock held: the others on this session wait
                session["n"] += 1
        except Exception as exc:  # reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(session_id,)) for session_id in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def paused_burst(redis_url, make, sessions):
    """``burst`` while Redis is paused: every call holds a connection at once."""
    pauser = redis.Redis.from_url(redis_url)
    pauser.client_pause(300)
    try:
        return burst(make, sessions)
    finally:
        pauser.close()


def test_waiters_pause_on_the_scripts_connections_so_a_pool_as_large_as_the_threads_is_enough(redis_url, prefix):
    # Eight threads on eight sessions at once leave the pool's every connection kept (IDLE_KEEP); then
    # eight on one session, most of them waiting (BLPOP) while one holds the lock: the waits take the
    # kept connections, none more from the pool.
    from fastsession.redis import IDLE_KEEP

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=IDLE_KEEP))
    make = lambda trans: RedisSessionStore(trans, client, prefix=prefix, timeout=30)  # noqa: E731
    sessions = [stored(make, {"n": 0}) for _ in range(IDLE_KEEP)]
    assert paused_burst(redis_url, make, sessions) == []
    assert len(make(Transaction()).backend.scripts.idle) == IDLE_KEEP  # the whole pool
    assert burst(make, [sessions[0]] * IDLE_KEEP, hold=0.002) == []
    assert load(make, sessions[0]) == {"n": IDLE_KEEP + 1}
    client.close()


def test_a_burst_keeps_at_most_idle_keep_connections_and_the_apps_own_commands_get_theirs(redis_url, prefix):
    from fastsession.redis import IDLE_KEEP

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=3 * IDLE_KEEP))
    make = lambda trans: RedisSessionStore(trans, client, prefix=prefix)  # noqa: E731
    sessions = [stored(make, {"n": 0}) for _ in range(3 * IDLE_KEEP)]
    assert paused_burst(redis_url, make, sessions) == []  # as many calls at once as the pool allows
    assert len(make(Transaction()).backend.scripts.idle) == IDLE_KEEP  # the rest went back to the pool
    pauser = redis.Redis.from_url(redis_url)
    pauser.client_pause(300)  # the app's own commands, as many at once as the pool has left: each gets one
    import threading

    got = []
    threads = [threading.Thread(target=lambda: got.append(client.get("x"))) for _ in range(2 * IDLE_KEEP)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [None] * (2 * IDLE_KEEP)
    pauser.close()
    client.close()


def test_a_forked_child_makes_its_own_connections_and_neither_reads_the_others_replies(make, prefix):
    from helpers import fork_child, wait_ok

    parents, childs = stored(make, {"n": 0}), stored(make, {"n": 0})
    scripts = make().backend.scripts
    [connection] = scripts.idle

    def bump(session_id, times):
        for _ in range(times):
            with make(Transaction({"SID": session_id})) as store:
                store.get_session(False)["n"] += 1

    def child(_):
        assert scripts.idle == []  # the parent's socket is not the child's to use
        bump(childs, 300)

    pid, _ = fork_child(child)
    bump(parents, 300)  # at the same time, on the connection the child was given a copy of
    wait_ok(pid)
    assert scripts.idle == [connection]
    assert load(make, parents) == {"n": 300} and load(make, childs) == {"n": 300}


def test_a_script_error_is_a_session_error_with_the_cause(make, client, prefix):
    session_id = stored(make, {"n": 1})
    client.delete(data_key(prefix, session_id))
    client.rpush(data_key(prefix, session_id), "not a string")
    with pytest.raises(SessionError, match="WRONGTYPE") as caught:
        make(Transaction({"SID": session_id})).get_session(False)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)


def test_the_pools_checkout_is_called_as_its_redis_py_version_wants(client):
    from fastsession.redis import checkout_args

    assert checkout_args(client.connection_pool) == ()  # redis-py 5.3 and later: no command name (it warns at one)

    class Before53:  # redis-py 4.5 to 5.2: the command name is required
        def get_connection(self, command_name, *keys, **options):
            raise AssertionError("not called")

    assert checkout_args(Before53()) == ("EVALSHA",)


def test_the_suites_redis_server_is_its_own_never_the_one_the_environment_names(redis_url, monkeypatch):
    """Tests kill clients, pause and reconfigure their server: one named by FASTSESSION_REDIS_URL may be shared."""
    import os

    assert redis_url != os.environ.get("FASTSESSION_REDIS_URL")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.info("server")["tcp_port"] == int(redis_url.rsplit(":", 1)[1].split("/")[0])
    finally:
        client.close()


def test_a_string_at_the_wake_key_does_not_turn_a_commit_into_a_failure(make, client, prefix):
    """Item 20: a key of another type where the wake-up list goes is mended, the commit reported as done."""
    session_id = stored(make, {"n": 1})
    holder = make(Transaction({"SID": session_id}))
    holder.get_session(False)["n"] = 2
    key = data_key(prefix, session_id)
    client.set(key + ":wake", "written by something else")
    client.set(key + ":waiting", 1, px=5000)  # as a waiter marks it
    holder.close()  # no SessionError: written, unlocked, the waiter woken
    assert load(make, session_id) == {"n": 2}
    assert client.type(key + ":wake") == b"list"


def test_a_waiter_whose_wake_key_holds_a_string_still_gets_the_lock(make, client, prefix):
    session_id = stored(make, {"n": 1})
    key = data_key(prefix, session_id)
    client.set(key + ":wake", "written by something else")
    holder = make(Transaction({"SID": session_id}))
    holder.get_session(False)
    client.set(key + ":lock", client.get(key + ":lock"), px=200)  # its holder gone quiet: the TTL ends it
    with make(Transaction({"SID": session_id}), timeout=10) as waiter:
        assert waiter.get_session(False) == {"n": 1}


@pytest.mark.parametrize("policy, warned", [("allkeys-lru", True), ("volatile-lru", False), ("noeviction", False)])
def test_a_server_that_may_evict_any_key_is_warned_about_at_start(redis_url, policy, warned, caplog):
    from fastsession.redis import RedisSessionStore

    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory-policy", policy)
    try:
        with caplog.at_level(logging.WARNING, logger="fastsession"):
            fresh = redis.Redis.from_url(redis_url)
            RedisSessionStore(Transaction(), fresh).rollback()
            fresh.close()
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
    assert ("maxmemory-policy " + policy in caplog.text) is warned


def test_without_locks_a_read_refreshes_the_ttl_once_a_quarter_of_max_age_has_passed(make, client, prefix):
    """concurrent=0 with max_age: a user who only reads stays logged in (the TTL is renewed, not left to run out)."""
    session_id = stored(make, {"n": 1}, max_age=100)
    key = data_key(prefix, session_id)
    client.pexpire(key, 60_000)  # 40 s of its 100 gone: more than a quarter
    with make(Transaction({"SID": session_id}), concurrent=0, max_age=100) as store:
        assert store.get_session(False) == {"n": 1}
    assert client.pttl(key) > 90_000
    client.pexpire(key, 90_000)  # 10 s gone: not yet a quarter, left alone (no write per read)
    with make(Transaction({"SID": session_id}), concurrent=0, max_age=100) as store:
        store.get_session(False)
    assert client.pttl(key) <= 90_000


def wait_gone(client, key, seconds=10.0):
    deadline = time.monotonic() + seconds
    while client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not client.exists(key)


def test_the_unlocker_sweeps_every_hand_over_not_only_the_first(client, prefix, monkeypatch):
    """Tokens whose fate was unknown are released by a sweeper thread each time, even after one died."""
    from fastsession.redis import RedisBackend

    backend = RedisBackend(client, True, 1.0, None, 30.0, None, prefix)
    for round_ in range(2):  # the first sweeper ends when it has nothing left: the second hand-over needs another
        lock = f"{prefix}{{round-{round_}}}:lock"
        client.set(lock, f"token-{round_}", px=60_000)
        backend.hand_over(lock, f"token-{round_}")
        assert wait_gone(client, lock)
        sweeper = backend.sweeper
        if sweeper is not None:
            sweeper.join(5)
    real = backend.script
    failures = iter([RuntimeError("a bug in a sweep")])

    def failing_once(*args):
        error = next(failures, None)
        if error is not None:
            raise error
        return real(*args)

    monkeypatch.setattr(backend, "script", failing_once)
    lock = f"{prefix}{{dies}}:lock"
    client.set(lock, "token-x", px=60_000)
    backend.hand_over(lock, "token-x")  # this sweeper dies of the error
    backend.sweeper.join(5)
    client.set(lock + "2", "token-y", px=60_000)
    backend.hand_over(lock + "2", "token-y")  # a new one takes over, and sweeps both
    assert wait_gone(client, lock + "2") and wait_gone(client, lock)


RMW_SCRIPT = """
import os, sys
import redis
from fastsession.redis import RedisSessionStore
sys.path.insert(0, sys.argv[2])
from conftest import Transaction

client = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
trans = Transaction()
with RedisSessionStore(trans, client, prefix="syscalls:") as store:
    store.get_session(True)["n"] = 0
for _ in range(3):  # warm: the connection kept, the scripts loaded, the token prefix drawn
    with RedisSessionStore(Transaction(trans.cookies), client, prefix="syscalls:") as store:
        store.get_session(False)["n"] += 1
os.write(2, b"<<\\n")
with RedisSessionStore(Transaction(trans.cookies), client, prefix="syscalls:") as store:
    store.get_session(False)["n"] += 1
os.write(2, b">>\\n")
"""


def test_a_locked_read_modify_write_makes_five_system_calls(redis_url, tmp_path):
    """Two scripts, each a send and a receive, the second after a look at the idle connection: no poll()
    before each send and receive (the kernel times the socket), no random draw per lock."""
    import shutil
    import subprocess
    import sys

    if shutil.which("strace") is None:
        pytest.fail("strace is needed for this test: apt-get install -y strace")
    log = tmp_path / "trace"
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        ["strace", "-f", "-o", str(log), sys.executable, "-c", RMW_SCRIPT, redis_url, tests],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if 'write(2, "<<' in line)
    end = next(i for i, line in enumerate(lines) if 'write(2, ">>' in line)
    calls = [line.split("(")[0].split()[-1] for line in lines[start + 1 : end] if "(" in line]
    # The acquire, each request's first call, is sent without the look (it may be sent twice: a connection
    # the call finds closed is connected afresh and the call made again); the commit looks first.
    assert calls == ["sendto", "recvfrom", "pselect6", "sendto", "recvfrom"]


def test_lock_tokens_differ_within_a_process_and_in_a_forked_child():
    from helpers import fork_child, wait_ok

    from fastsession._kernels import ACTIVE
    from fastsession.redis import holder_token

    first, second = holder_token(ACTIVE), holder_token(ACTIVE)
    assert first != second and first.split(" ")[1:] == second.split(" ")[1:]  # the same holder after the token
    pid, read = fork_child(lambda write: os.write(write, holder_token(ACTIVE).split(" ")[0].encode()))
    childs = os.read(read, 200).decode()
    os.close(read)
    wait_ok(pid)
    assert childs.rsplit(".", 1)[0] != first.split(" ")[0].rsplit(".", 1)[0]  # a prefix of its own


def test_a_connection_given_back_to_the_pool_is_timed_by_python_again(redis_url, prefix, monkeypatch):
    """The kernel's timeout is fastsession's own business: the app's own commands on a connection it gives
    back time out as redis-py says (TimeoutError), not with EAGAIN."""
    from fastsession import redis as fs_redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    scripts = RedisSessionStore(Transaction(), client, prefix=prefix).backend.scripts
    for _ in range(2):  # made, then kept idle and given to the kernel to time at its next use
        scripts("pttl", ["no-such-key"], [])
    (connection,) = scripts.idle
    assert connection._sock.gettimeout() is None
    monkeypatch.setattr(fs_redis, "IDLE_KEEP", 0)  # this one is a burst's extra: back to the pool
    scripts("pttl", ["no-such-key"], [])
    assert scripts.idle == [] and connection._sock.gettimeout() == 5
    assert connection in client.connection_pool._available_connections
    client.close()
