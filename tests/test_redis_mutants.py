"""Behaviours of the Redis backend that mutation testing found untested: each test here kills
mutants of fastsession/redis.py that passed the whole suite before (tools/mutation.sh)."""

import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import orjson
import pytest
import redis
from conftest import Transaction
from helpers import hold_until_killed, kill_and_reap

from fastsession import LockTimeout, SessionError
from fastsession import redis as fs_redis
from fastsession._holder import holder_record
from fastsession.bench.redis_server import RedisServer
from fastsession.redis import RedisBackend, RedisSessionStore, data_key, describe_lock, lock_holder, lock_keys
from fastsession.users import UserSession, user_hash

KEY = "k" * 43


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex[:8]}:"


def backend_of(client, prefix, **options):
    """A backend as RedisSessionStore makes one: (client, concurrent, delay, timeout, lock_ttl, max_age, prefix)."""
    args = {"delay": 1.0, "timeout": None, "lock_ttl": 30.0, "max_age": None} | options
    return RedisBackend(client, True, args["delay"], args["timeout"], args["lock_ttl"], args["max_age"], prefix)


def stored(client, prefix, data, **options):
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix, **options) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


# -- the holder a lock's value names ------------------------------------------------------


def test_a_locks_holder_line_is_read_from_any_value_a_lock_can_hold():
    assert lock_holder(b"token web/1 boot 42 99") == b"web/1 boot 42 99"
    assert lock_holder(b"R token web/1 boot 42 99") == b"web/1 boot 42 99"  # revoked while held: same holder
    assert lock_holder(b"t web/1 boot 42 99") == b"web/1 boot 42 99"  # however short the token
    assert lock_holder(b"R t web/1 boot 42 99") == b"web/1 boot 42 99"
    assert lock_holder("token web/1 boot 42 99") == b"web/1 boot 42 99"  # a client that decodes replies
    assert lock_holder(b"token w\xffb/1 boot 42 99") == b"w?b/1 boot 42 99"  # bytes no holder writes: no error


def test_a_lock_is_described_with_its_holder_and_its_age_from_the_ttl_left():
    value = b"token " + holder_record()[len(b"FSv1 ") : -1]  # this process holds it
    assert describe_lock(None, -2, 30.0) is None  # no lock
    held = describe_lock(value, 10_000, 30.0)
    assert held == {"host": held["host"], "pid": os.getpid(), "age": 20.0, "alive": True}
    assert describe_lock(value, -1, 30.0)["age"] == 30.0  # no TTL (written by something else): as old as a TTL
    assert describe_lock(value, 40_000, 30.0)["age"] == 0.0  # a TTL longer than lock_ttl: just taken
    assert describe_lock(value, 9_000, 30.0)["age"] == 21.0


# -- names that are not names ---------------------------------------------------------------


def test_a_stored_name_or_user_hash_that_is_not_one_is_refused_before_any_call(client, prefix):
    backend = backend_of(client, prefix)
    with pytest.raises(ValueError, match="^invalid stored name$"):
        backend.open_stored("../" + "a" * 40)
    with pytest.raises(ValueError, match="^invalid user hash$"):
        backend.index_list("not a hash")
    assert list(client.scan_iter(match=prefix + "*")) == []


def test_a_failed_script_names_the_script_and_its_key_never_the_id(client, prefix):
    session_id = "W" * 43
    client.rpush(data_key(prefix, session_id), "not a string")
    with pytest.raises(SessionError) as caught:
        RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix).get_session(False)
    lock_key = data_key(prefix, session_id) + ":lock"
    assert str(caught.value).startswith(f"Redis could not run its 'acquire' script on {lock_key!r}: ")
    assert session_id not in str(caught.value)  # the key names the session by its stored name


def test_an_error_reply_after_the_lock_was_taken_releases_it_at_once_not_through_the_unlocker(
    client, prefix, monkeypatch
):
    session_id = stored(client, prefix, {"n": 1})
    store = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix)
    store.get_session(False)["big"] = "x" * 5_000_000
    handed_over = []
    monkeypatch.setattr(store.backend, "hand_over", lambda *args: handed_over.append(args))
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 1_000_000)
    try:
        with pytest.raises(SessionError, match="'commit' script on .*maxmemory"):
            store.close()
    finally:
        client.config_set("maxmemory", 0)
    assert handed_over == []  # Redis answered: released by this request, now
    assert client.exists(data_key(prefix, session_id) + ":lock") == 0
    assert orjson.loads(client.get(data_key(prefix, session_id))) == {"n": 1}  # the stored data is kept


# -- a dead holder ---------------------------------------------------------------------------


def test_a_dead_holders_lock_is_broken_even_by_a_request_that_would_not_wait(client, redis_url, prefix):
    session_id = stored(client, prefix, {"n": 7})

    def hold():
        own = redis.Redis.from_url(redis_url)
        store = RedisSessionStore(Transaction({"SID": session_id}), own, prefix=prefix)
        store.get_session(False)["n"] = 1000  # never committed
        return store

    kill_and_reap(hold_until_killed(hold))
    with RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, timeout=0) as store:
        assert store.get_session(False) == {"n": 7}  # judged dead at once: no LockTimeout


# -- the wake-up -----------------------------------------------------------------------------


class SubclassedRedis(redis.Redis):
    """A client that is not a plain redis.Redis: driven through redis-py's own objects."""


@pytest.mark.parametrize("client_class", [redis.Redis, SubclassedRedis])
def test_a_redis_waiter_is_woken_by_the_release_not_by_its_next_poll(redis_url, prefix, client_class, monkeypatch):
    """With pauses of 30 s, only the wake-up can hand the lock over within the 20 s timeout."""
    monkeypatch.setattr(fs_redis, "FIRST_PAUSE", 30.0)
    monkeypatch.setattr(fs_redis, "MAX_PAUSE", 30.0)
    client = client_class.from_url(redis_url)
    session_id = stored(client, prefix, {"n": 1})
    holder = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix)
    holder.get_session(False)["n"] = 2
    waiter = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, delay=30, timeout=20)
    woken = []
    real_wait = waiter.backend.wait
    monkeypatch.setattr(waiter.backend, "wait", lambda key, seconds: woken.append(real_wait(key, seconds)))
    waiting = data_key(prefix, session_id) + ":waiting"
    releaser = threading.Thread(target=lambda: (wait_until(lambda: client.exists(waiting)), holder.close()))
    releaser.start()
    try:
        assert waiter.get_session(False) == {"n": 2}
    finally:
        releaser.join()
        waiter.close()
        client.close()
    assert len(woken) == 1 and woken[0] is not None  # one pause, ended by the release's push


@pytest.mark.parametrize("client_class", [redis.Redis, SubclassedRedis])
def test_a_redis_waiters_pause_ends_by_itself_when_no_release_comes(redis_url, prefix, client_class):
    client = client_class.from_url(redis_url)
    session_id = stored(client, prefix, {"n": 1})
    holder = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix)
    holder.get_session(False)
    try:
        with pytest.raises(LockTimeout):  # paused, not blocked until a wake-up that never comes
            RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix, timeout=0.3).get_session(False)
    finally:
        holder.rollback()
        client.close()


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


# -- the per-user index ----------------------------------------------------------------------


def index_key(prefix, user):
    return prefix + "user:{" + user + "}"


def test_a_malformed_index_entry_is_skipped_with_a_warning_naming_the_index(client, prefix, caplog):
    user = user_hash("ann")
    store = RedisSessionStore(Transaction(), client, prefix=prefix)
    store.get_session(True)["x"] = 1
    store.bind_user("ann")
    store.close()
    client.hset(index_key(prefix, user), mapping={b"\xff" * 43: b"{}", "b" * 43: b"[1]", "c" * 43: b"{not json"})
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        listed = store.sessions_of("ann")
    assert len(listed) == 1
    warned = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert warned == [f"skipping a malformed entry in the user index {index_key(prefix, user)}"] * 3


def test_index_entries_of_sessions_gone_are_removed_and_the_others_all_listed(client, prefix):
    user = user_hash("ann")
    store = RedisSessionStore(Transaction(), client, prefix=prefix)
    pending, old, undated = "p" * 43, "o" * 43, "u" * 43
    now = time.time()
    client.hset(  # listed first (a small hash keeps insertion order): a login whose commit has not landed
        index_key(prefix, user),
        mapping={
            pending: orjson.dumps({"created": now, "added": now, "metadata": {}}),
            old: orjson.dumps({"created": 1.0, "added": 1.0, "metadata": {}}),
            undated: orjson.dumps({"created": 1.0, "metadata": {}}),  # no "added": not written lately
        },
    )
    with RedisSessionStore(Transaction(), client, prefix=prefix) as login:
        login.get_session(True)["x"] = 1
        login.bind_user("ann")
    listed = store.sessions_of("ann")
    assert len(listed) == 1 and listed[0].session not in (pending, old, undated)
    remaining = {name.decode() for name in client.hkeys(index_key(prefix, user))}
    assert remaining == {pending, listed[0].session}  # the two long gone were removed; the young one kept


def test_last_seen_on_redis_is_told_by_the_ttl_left(client, prefix):
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix, max_age=100_000) as login:
        login.get_session(True)["x"] = 1
        login.bind_user("ann")
    session_id = trans.cookies["SID"]
    client.pexpire(data_key(prefix, session_id), 90_000_000)  # 10,000 s of its 100,000 gone
    (listed,) = RedisSessionStore(Transaction(), client, prefix=prefix, max_age=100_000).sessions_of("ann")
    assert abs(listed.last_seen - (time.time() - 10_000)) < 5


# -- revoking a session that keeps changing ----------------------------------------------------


def test_revoking_a_session_that_changes_under_every_attempt_gives_up_with_a_clear_error(client, prefix):
    store = RedisSessionStore(Transaction(), client, prefix=prefix)
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix) as login:
        login.get_session(True)["n"] = 0
        login.bind_user("ann")
    session_id = trans.cookies["SID"]
    holder = RedisSessionStore(Transaction({"SID": session_id}), client, prefix=prefix)
    holder.get_session(False)  # held: revoked through REVOKE_HELD, which checks what it read
    (entry,) = store.sessions_of("ann")
    backend = store.backend
    real = backend.script
    bumps = []

    def a_commit_lands_before_each_attempt(name, keys, args):
        if name == "revoke_held":
            body = orjson.loads(client.get(keys[1]))
            body["n"] = len(bumps) + 1  # a change: not what the revoke read
            bumps.append(client.set(keys[1], orjson.dumps(body)))
        return real(name, keys, args)

    backend.script = a_commit_lands_before_each_attempt
    try:
        with pytest.raises(
            SessionError, match=f"^could not revoke '{data_key(prefix, session_id)}': it kept changing$"
        ):
            store.revoke(UserSession(entry.session, entry.user, entry.created, entry.last_seen, entry.metadata))
    finally:
        del backend.script
        holder.rollback()
    assert len(bumps) > 1 and client.exists(data_key(prefix, session_id)) == 1  # nothing revoked half-way


# -- the unlocker --------------------------------------------------------------------------------


def test_the_unlocker_releases_a_lock_that_shows_up_after_redis_answered(client, prefix):
    """A SET NX that sat in a socket lands a moment after the request gave up on it: still released."""
    backend = backend_of(client, prefix)
    lock = f"{prefix}{{late}}:lock"
    backend.hand_over(lock, "token-late")  # not there yet
    assert wait_until(lambda: backend.pending.get((lock, "token-late"), [0, 1.0])[1] != 0)  # Redis answered
    client.set(lock, "token-late", px=60_000)  # the command lands now, within LATE_ARRIVAL
    assert wait_until(lambda: not client.exists(lock))
    backend.sweeper.join(10)
    assert not backend.sweeper or not backend.sweeper.is_alive()


def test_the_unlocker_ends_once_its_locks_are_released_or_never_showed_up(client, prefix):
    backend = backend_of(client, prefix)
    lock = f"{prefix}{{done}}:lock"
    client.set(lock, "token-1", px=60_000)
    backend.hand_over(lock, "token-1")
    backend.hand_over(lock + "2", "token-2")  # never shows up: dropped LATE_ARRIVAL after Redis answered
    sweeper = backend.sweeper
    assert sweeper.name == "fastsession-redis-unlocker" and sweeper.daemon  # never holds the process at exit
    sweeper.join(10 + fs_redis.LATE_ARRIVAL)
    assert not sweeper.is_alive() and backend.pending == {} and backend.sweeper is None
    assert not client.exists(lock)


def test_the_unlocker_gives_up_on_an_unreachable_redis_once_the_lock_would_have_expired(prefix):
    down = redis.Redis(host="127.0.0.1", port=RedisServer().port, socket_connect_timeout=0.2)
    backend = RedisBackend(down, True, 1.0, None, 0.3, None, prefix)
    backend.hand_over(f"{prefix}{{down}}:lock", "token")
    sweeper = backend.sweeper
    sweeper.join(30)
    assert not sweeper.is_alive() and backend.pending == {}


def test_a_process_exits_while_its_unlocker_still_waits_for_redis(prefix):
    script = f"""
import redis
from fastsession.redis import RedisBackend
down = redis.Redis(host="127.0.0.1", port={RedisServer().port}, socket_connect_timeout=0.2)
backend = RedisBackend(down, True, 1.0, None, 3600.0, None, {prefix!r})
backend.hand_over({prefix!r} + "{{exit}}:lock", "token")
assert backend.sweeper.is_alive()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()


def test_an_unlocker_that_dies_says_so(client, prefix, caplog, monkeypatch):
    backend = backend_of(client, prefix)
    monkeypatch.setattr(backend, "script", lambda *args: (_ for _ in ()).throw(RuntimeError("a bug in a sweep")))
    with caplog.at_level(logging.ERROR, logger="fastsession"):
        backend.hand_over(f"{prefix}{{dies}}:lock", "token")
        backend.sweeper.join(10)
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "the Redis unlocker stopped; the next hand-over starts another"
    assert "a bug in a sweep" in str(record.exc_info[1])


def test_lock_keys_are_the_lock_its_data_and_the_wake_up_marks():
    assert lock_keys("p:{x}:lock") == ["p:{x}:lock", "p:{x}", "p:{x}:waiting", "p:{x}:wake"]
