"""What an attacker with a browser, a log line, a backup or write access to storage can and cannot do.

Each test names the access it models and what it must keep.
"""

import logging
import os
import time

import pytest
import redis
from conftest import Transaction, session_files, store_session
from helpers import HOLDER_LINE_0_1, hold_until_killed, kill_and_reap, redis_session, session_0_1, session_path
from test_sealed import put_bytes
from test_wsgi import call, counter_app, sid_from

import fastsession
from fastsession.names import stored_name
from fastsession.redis import RedisSessionStore, data_key
from fastsession.wsgi import SessionMiddleware

FILE_OPTIONS = [{}, {"locking": "commit"}, {"concurrent": 0}]


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# -- a stored name (from a log line, `fastsession users`, sessions_of, a listing) is not a key ----------------


@pytest.mark.parametrize("options", FILE_OPTIONS, ids=["request", "commit", "no-locks"])
def test_a_stored_name_presented_as_a_cookie_opens_moves_and_deletes_nothing(session_dir, options):
    victim = Transaction()
    with fastsession.SessionStore(victim, session_dir) as store:
        store.get_session(True)["user"] = "victim"
    sid = victim.cookies["SID"]
    path = session_path(session_dir, sid)
    before = file_bytes(path)
    name = stored_name(sid)  # what logs, listings and "your devices" pages show

    attacker = fastsession.SessionStore(Transaction({"SID": name}), session_dir, **options)
    assert attacker.get_session(False) is None  # the victim's data is not handed out
    fresh = attacker.get_session(True)
    assert fresh.session_id not in (name, sid)  # nor is the stored name adopted as an id (fixation)
    fresh["x"] = 1
    attacker.close()
    expirer = fastsession.SessionStore(Transaction({"SID": name}), session_dir, **options)
    expirer.expire_session()  # and "log out" with it deletes nothing of the victim's
    expirer.close()

    assert file_bytes(path) == before  # not moved, not rewritten, not deleted
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"user": "victim"}
    assert not any(f.endswith(".lock") for f in session_files(session_dir))


def test_through_the_wsgi_middleware_a_stored_name_is_a_stranger(session_dir):
    app = SessionMiddleware(counter_app, session_dir)
    _, headers, _ = call(app)
    sid = sid_from(headers)
    assert call(app, f"SID={sid}")[2] == b"2"
    _, headers, body = call(app, f"SID={stored_name(sid)}")
    assert body == b"1" and sid_from(headers) != stored_name(sid)  # a new session of its own
    assert call(app, f"SID={sid}")[2] == b"3"  # the victim's session goes on


def test_a_0_1_session_moved_to_its_stored_name_never_again_looks_like_0_1s(session_dir):
    sid, old = session_0_1(session_dir, {"user": "ann"})
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"user": "ann"}  # migrated: nobody logged out
    assert not os.path.exists(old)
    moved = file_bytes(session_path(session_dir, sid))
    assert not moved.startswith(HOLDER_LINE_0_1)  # rewritten with this version's holder line
    with fastsession.SessionStore(Transaction({"SID": stored_name(sid)}), session_dir) as store:
        assert store.get_session(False) is None  # its stored name opens nothing
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"user": "ann"}


def test_a_moved_0_1_session_keeps_its_mtime_so_max_age_still_counts_from_its_last_use(session_dir):
    sid, old = session_0_1(session_dir, {"n": 1})
    then = os.stat(old).st_mtime - 1000
    os.utime(old, (then, then))
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        store.get_session(False)
    assert abs(os.stat(session_path(session_dir, sid)).st_mtime - then) < 1


def test_a_file_at_an_ids_0_1_path_that_0_1_did_not_write_is_not_a_session(session_dir):
    """A header-less or 0.2 record at ``<id[:2]>/<id>`` proves nothing: it is never read, moved or deleted."""
    sid, old = session_0_1(session_dir, {"n": 1})
    with open(old, "wb") as f:
        f.write(b'{"user": "planted"}')
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert store.get_session(False) is None
        store.expire_session()
    assert file_bytes(old) == b'{"user": "planted"}'


def test_with_legacy_off_0_1_files_are_not_read(session_dir):
    from fastsession.files import FileBackend

    sid, old = session_0_1(session_dir, {"n": 1})
    backend = FileBackend(session_dir)
    backend.legacy = False
    assert backend.load(backend.unlocked(sid)) is None and os.path.exists(old)


# -- the lock is never left behind (items 11-13) --------------------------------------------------------------


@pytest.mark.parametrize(
    "meta", [b'"a string"', b"[1, 2]", b"7", b'{"c": "yesterday"}', b'{"u": 5}', b'{"c": true}', b'{"m": []}']
)
def test_a_record_with_malformed_metadata_reads_as_absent_and_leaves_no_lock(face, meta, caplog):
    sid = face.stored({"n": 1})
    put_bytes(face, sid, b'{"n": 1, "\\u0000fastsession": ' + meta + b"}")
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert face.read(sid) is None
    assert "malformed metadata" in caplog.text
    store = face.store(sid, timeout=0)  # not locked by the request that met it: no wait, no 503
    assert store.get_session(False) is None
    store.rollback()


def test_a_sealed_record_read_without_cryptography_raises_and_leaves_no_lock(face, monkeypatch):
    import sys

    from fastsession import sealed

    sid = face.stored({"n": 1}, encrypt=True)
    monkeypatch.setattr(sealed, "_crypto", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"fastsession-store\[crypto\]"):
        face.store(sid).get_session(False)
    monkeypatch.undo()
    store = face.store(sid, timeout=0, encrypt=True)
    assert dict(store.get_session(False)) == {"n": 1}
    store.rollback()


def another_hosts_lock(session_dir, sid, seconds_ahead):
    lock = session_path(session_dir, sid) + ".lock"
    with open(lock, "wb") as f:
        f.write(b"FSv1 other-host/4026531836 aaaa 77 12345\n")
    then = time.time() + seconds_ahead
    os.utime(lock, (then, then))
    return lock


def test_a_lockfile_dated_in_the_future_becomes_stale_like_one_as_old(session_dir):
    """A clock stepped back or a restored backup must not block a user for good."""
    sid, _ = store_session(session_dir, {"n": 1})
    lock = another_hosts_lock(session_dir, sid, 3600)
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir, timeout=5, stale_after=30) as store:
        assert dict(store.get_session(False)) == {"n": 1}
    assert not os.path.exists(lock)


def test_a_lockfile_dated_a_moment_ahead_is_a_live_lock(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    another_hosts_lock(session_dir, sid, 2)  # clocks of two hosts a little apart: still within stale_after
    with pytest.raises(fastsession.LockTimeout):
        fastsession.SessionStore(Transaction({"SID": sid}), session_dir, timeout=0, stale_after=30).get_session(False)


def test_a_holder_line_with_a_huge_pid_is_unreadable_not_a_crash(session_dir):
    from fastsession import _holder
    from fastsession.gc import collect
    from fastsession.locks import file_locks

    sid, _ = store_session(session_dir, {"n": 1})
    line = b"FSv1 " + _holder.HOST + b" " + _holder.BOOT + b" " + str(2**70).encode() + b" 1\n"
    lock = session_path(session_dir, sid) + ".lock"
    with open(lock, "wb") as f:
        f.write(line)
    assert _holder.describe(line, 0.5)["pid"] is None
    assert file_locks(session_dir)[0]["pid"] is None  # listed, without OverflowError
    then = time.time() - 5
    os.utime(lock, (then, then))
    assert collect(session_dir, stale_locks_only=True).locks_removed == 1


def test_redis_a_lock_without_a_ttl_gets_one_and_blocks_no_longer(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix, sid = redis_session(client, {"n": 1}, "ttl")
    client.set(data_key(prefix, sid) + ":lock", "written by something else")  # no TTL
    with RedisSessionStore(Transaction({"SID": sid}), client, prefix=prefix, lock_ttl=0.3, timeout=10) as store:
        assert dict(store.get_session(False)) == {"n": 1}
    client.close()


def test_redis_a_sigkilled_holders_lock_is_broken_long_before_lock_ttl(redis_url):
    """The OOM killer or gunicorn's worker timeout: the user is not locked out for lock_ttl."""
    client = redis.Redis.from_url(redis_url)
    prefix, sid = redis_session(client, {"n": 1}, "kill")

    def hold():
        child = redis.Redis.from_url(redis_url)
        store = RedisSessionStore(Transaction({"SID": sid}), child, prefix=prefix, lock_ttl=300)
        store.get_session(False)
        return store

    pid = hold_until_killed(hold)
    kill_and_reap(pid)
    assert client.exists(data_key(prefix, sid) + ":lock")
    with RedisSessionStore(Transaction({"SID": sid}), client, prefix=prefix, lock_ttl=300, timeout=30) as store:
        assert dict(store.get_session(False)) == {"n": 1}  # well within the timeout, 10x below lock_ttl
    client.close()


# -- a store dropped unclosed, writes after close (item 14) ---------------------------------------------------


def test_a_store_garbage_collected_unclosed_releases_its_lock_with_a_warning(face, caplog):
    import gc

    sid = face.stored({"n": 1})
    store = face.store(sid)
    store.get_session(False)["n"] = 2
    raw = store.raw
    face.opened.remove(raw)
    del store, raw
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        gc.collect()
    if face.kind in ("redis-async", "postgres-async"):  # no event loop in a finalizer: the lease's TTL ends it
        return
    assert "dropped without close()" in caplog.text
    assert face.read(sid) == {"n": 1}  # released (no wait), and the change discarded


@pytest.mark.parametrize("end", ["close", "rollback"])
def test_a_change_after_close_raises_instead_of_vanishing(face, end):
    sid = face.stored({"n": 1})
    store = face.store(sid)
    session = store.get_session(False)
    getattr(store, end)()
    assert session["n"] == 1 and dict(session) == {"n": 1}  # reading goes on
    for change in (
        lambda: session.__setitem__("n", 2),
        lambda: session.update(n=2),
        lambda: session.pop("n"),
        lambda: session.clear(),
        lambda: session.setdefault("new", 1),
    ):
        with pytest.raises(fastsession.SessionError, match="closed"):
            change()
    assert session.setdefault("n") == 1
    assert face.read(sid) == {"n": 1}


# -- what reads refuse, writes refuse (item 16); durations (item 17) ------------------------------------------


def test_a_session_over_the_files_read_limit_is_refused_at_write_and_the_stored_one_kept(session_dir):
    from fastsession._io_py import MAX_SESSION_BYTES

    sid, trans = store_session(session_dir, {"n": 1})
    store = fastsession.SessionStore(trans, session_dir)
    store.get_session(False)["blob"] = "x" * MAX_SESSION_BYTES
    with pytest.raises(fastsession.SessionTooLarge, match="'blob'"):
        store.close()
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir, timeout=0) as again:
        assert dict(again.get_session(False)) == {"n": 1}  # kept, and not locked


def test_a_session_just_under_the_files_read_limit_is_written_and_read_back(session_dir):
    from fastsession.files import FileBackend

    sid, trans = store_session(session_dir, {"n": 1})
    with fastsession.SessionStore(trans, session_dir) as store:
        store.get_session(False)["blob"] = "x" * (FileBackend.max_record - 100)
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert len(store.get_session(False)["blob"]) == FileBackend.max_record - 100


@pytest.mark.parametrize(
    "option",
    [
        ("max_age", -5),
        ("max_age", float("nan")),
        ("max_age", 0),
        ("max_age", True),
        ("timeout", -1),
        ("timeout", float("nan")),
        ("stale_after", float("nan")),
        ("delay", 0),
        ("max_lifetime", float("nan")),
    ],
)
def test_negative_or_nan_durations_are_refused_when_the_store_is_made(face, option):
    name, value = option
    if face.kind.startswith(("redis", "postgres")) and name == "stale_after":
        name = "lock_ttl"
    with pytest.raises(ValueError, match=name):
        face.store(None, **{name: value})


def test_nothing_is_deleted_by_a_store_that_refused_its_max_age(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    with pytest.raises(ValueError):
        fastsession.SessionStore(Transaction({"SID": sid}), session_dir, max_age=-5)
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"n": 1}


# -- a lock held across fork() (item 15) ----------------------------------------------------------------------


def test_a_lock_held_across_fork_never_corrupts_the_session(session_dir):
    """The child commits through the inherited lock; the parent's later commit writes nothing into what the
    child renamed into place (the lock is no longer the parent's), so the session reads as the child left it."""
    from helpers import fork_child, wait_ok

    sid, _ = store_session(session_dir, {"n": 1})
    parent = fastsession.SessionStore(Transaction({"SID": sid}), session_dir)
    parent.get_session(False)["n"] = 100

    def child(_):
        parent.get_session(False)["n"] = 2
        parent.close()  # the child's commit: renames the shared lockfile over the session

    pid, _ = fork_child(child)
    wait_ok(pid)
    with pytest.raises(fastsession.SessionError, match="broken|lost"):
        parent.close()
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir, timeout=0) as store:
        assert dict(store.get_session(False)) == {"n": 2}  # not corrupt, not the parent's
    assert not any(f.endswith(".lock") for f in session_files(session_dir))


def test_a_forked_child_that_drops_its_parents_store_leaves_the_parents_lock_alone(session_dir):
    """A child process exits (its objects finalized) while the parent still holds the session: the lock stays."""
    import gc

    from helpers import fork_child, wait_ok

    sid, _ = store_session(session_dir, {"n": 1})
    holder = [fastsession.SessionStore(Transaction({"SID": sid}), session_dir)]  # the only reference
    holder[0].get_session(False)["n"] = 2

    def child(_):
        holder.clear()  # the child's copy of the store goes: finalized in the child
        gc.collect()

    pid, _ = fork_child(child)
    wait_ok(pid)
    assert any(f.endswith(".lock") for f in session_files(session_dir))  # still the parent's
    holder[0].close()
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir, timeout=0) as store:
        assert dict(store.get_session(False)) == {"n": 2}


# -- mutants a mutation run of store.py left (tools/mutation-survivors.md) --------------------------


def dropped(face, holder, caplog, monkeypatch):
    """Drop the store in ``holder`` (a one-item list: the only reference) unclosed and collect it.

    The warnings logged meanwhile; the store is checked to be finalized, not merely out of sight.
    """
    import gc

    raw = holder[0].raw
    face.opened.remove(raw)
    finalized = []
    kind = type(raw)
    original = kind.__del__
    monkeypatch.setattr(kind, "__del__", lambda self: (finalized.append(id(self)), original(self)))
    ours = id(raw)
    del raw
    holder.clear()
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        gc.collect()
    assert ours in finalized
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_warning_for_a_dropped_store_names_its_session_by_stored_name(session_dir, caplog):
    from fastsession.names import stored_name

    sid = store_session(session_dir, {"n": 1})[0]
    store = fastsession.SessionStore(Transaction({"SID": sid}), session_dir)
    store.get_session(False)
    import gc

    del store
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        gc.collect()
    assert [r.getMessage() for r in caplog.records] == [
        f"a store was dropped without close() or rollback(); session {stored_name(sid)[:8]}…'s lock was released "
        "and its changes discarded (close the store: use `with`)"
    ]


@pytest.mark.parametrize("how", ["closed", "rolled back", "never opened a session", "read without a lock"])
def test_a_dropped_store_that_holds_no_lock_warns_of_nothing(face, caplog, monkeypatch, how):
    sid = face.stored({"n": 1})
    store = face.store(sid)
    if how == "closed":
        store.get_session(False)
        store.close()
    elif how == "rolled back":
        store.get_session(False)
        store.rollback()
    elif how == "read without a lock":
        store.read_only()
        store.get_session(False)
    holder = [store]
    del store
    assert dropped(face, holder, caplog, monkeypatch) == []
    assert face.read(sid) == {"n": 1}


def test_a_closed_store_says_so_when_used_again(face):
    store = face.store()
    store.get_session(True)["n"] = 1
    store.close()
    with pytest.raises(fastsession.SessionError, match=r"^the session store is closed$"):
        store.get_session(True)


@pytest.mark.parametrize("kind", ["files", "files-async", "redis"])  # (async Redis: the lock's TTL ends it)
def test_a_dropped_store_holding_only_a_session_to_expire_releases_it_and_warns(
    kind, tmp_path, redis_url, caplog, monkeypatch
):
    from faces import Face

    face = Face(kind, str(tmp_path / "sessions"), redis_url)
    try:
        _dropped_with_a_doomed_session(face, caplog, monkeypatch)
    finally:
        face.finish()


def _dropped_with_a_doomed_session(face, caplog, monkeypatch):
    sid = face.stored({"n": 1})
    store = face.store(sid)
    store.get_session(False)
    store.expire_session()  # the session goes to the list of what close() deletes: still locked
    holder = [store]
    del store
    assert dropped(face, holder, caplog, monkeypatch) == [
        "a store was dropped without close() or rollback(); session ?…'s lock was released "
        "and its changes discarded (close the store: use `with`)"
    ]
    assert face.read(sid) == {"n": 1}  # not deleted (never closed), and not left locked
