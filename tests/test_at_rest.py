"""Nothing at rest names a live session: files, Redis keys, lockfiles, errors and logs show a hash of the id.

And sessions 0.1 stored under the id itself stay readable, moved on first locked access.
"""

import logging
import os
import time

import pytest
import redis
from conftest import Transaction, session_files
from faces import pg_at_rest
from helpers import redis_session, session_0_1, session_path, stored_relpath

from fastsession import LockTimeout, SessionStore
from fastsession.names import stored_name
from fastsession.redis import data_key


def everything_at_rest(face, redis_url):
    """Every name storage holds for this face: file paths, or Redis keys."""
    if face.kind.startswith("files"):
        return session_files(face.directory)
    if face.kind.startswith("postgres"):
        return pg_at_rest(face)
    sync = redis.Redis.from_url(redis_url)
    try:
        return [k.decode() for k in sync.scan_iter(match=face.prefix + "*")]
    finally:
        sync.close()


def test_no_name_at_rest_contains_a_live_id_while_held_and_after(face, redis_url, caplog):
    sid = face.stored({"user": "ann"})
    holder = face.store(sid)
    holder.get_session(False)  # a lock is held: a lockfile or a lock key exists now
    held = everything_at_rest(face, redis_url)
    assert any(name.endswith((".lock", ":lock", ":lease")) for name in held)
    with caplog.at_level(logging.DEBUG, logger="fastsession"):
        with pytest.raises(LockTimeout) as caught:
            face.store(sid, timeout=0.05).get_session(False)
    holder.rollback()
    after = everything_at_rest(face, redis_url)
    for name in held + after:
        assert sid not in name
    assert any(stored_name(sid) in name for name in after)
    assert sid not in str(caught.value) and stored_name(sid) in str(caught.value)
    assert all(sid not in record.getMessage() for record in caplog.records)


# -- sessions 0.1 stored under the id itself (files) ---------------------------------------------


def legacy(session_dir, data):
    """A session as 0.1 left it on disk: ``<id[:2]>/<id>``; its id and path."""
    return session_0_1(session_dir, data)


def test_a_0_1_file_is_read_and_moved_to_its_stored_name_by_the_first_locked_request(session_dir):
    sid, old = legacy(session_dir, {"n": 1})
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:
        session = store.get_session(False)
        assert dict(session) == {"n": 1}
        assert not os.path.exists(old) and os.path.exists(session_path(session_dir, sid))
        session["n"] = 2
    assert [f for f in session_files(session_dir) if sid in f] == []
    assert stored_relpath(sid) in session_files(session_dir)
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"n": 2}


def test_an_unlocked_read_of_a_0_1_file_reads_it_where_it_is(session_dir):
    sid, old = legacy(session_dir, {"n": 1})
    with SessionStore(Transaction({"SID": sid}), session_dir, locking="commit") as store:
        assert dict(store.get_session(False)) == {"n": 1}
    assert os.path.exists(old)  # nothing changed, no lock taken: not moved
    with SessionStore(Transaction({"SID": sid}), session_dir, locking="commit") as store:
        store.get_session(False)["n"] = 5  # a change: locked at commit, moved, merged, written
    assert not os.path.exists(old)
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"n": 5}


def test_deleting_a_0_1_session_leaves_nothing_that_could_bring_it_back(session_dir):
    sid, old = legacy(session_dir, {"user": "ann"})
    with SessionStore(Transaction({"SID": sid}), session_dir, locking="commit") as store:
        store.expire_session()
    assert not os.path.exists(old) and not os.path.exists(session_path(session_dir, sid))
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert store.get_session(False) is None


def test_without_locks_a_0_1_file_is_moved_by_its_first_write(session_dir):
    sid, old = legacy(session_dir, {"n": 1})
    with SessionStore(Transaction({"SID": sid}), session_dir, concurrent=0) as store:
        store.get_session(False)["n"] += 1
    assert not os.path.exists(old)
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert dict(store.get_session(False)) == {"n": 2}


def test_gc_expires_a_0_1_file_like_any_other(session_dir):
    from fastsession.gc import collect

    _sid, old = legacy(session_dir, {"n": 1})
    then = time.time() - 7200
    os.utime(old, (then, then))
    counts = collect(session_dir, 3600)
    assert counts.removed == 1 and not os.path.exists(old)


def test_redis_keys_never_hold_the_id(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix, sid = redis_session(client, {"n": 1})
    keys = [k.decode() for k in client.scan_iter(match=prefix + "*")]
    assert keys == [data_key(prefix, sid)] == [f"{prefix}{{{stored_name(sid)}}}"]
    client.close()


def test_with_max_age_a_recently_used_0_1_file_is_read_not_judged_expired(session_dir):
    sid, _ = legacy(session_dir, {"n": 1})
    with SessionStore(Transaction({"SID": sid}), session_dir, max_age=3600) as store:
        assert dict(store.get_session(False)) == {"n": 1}
    then = time.time() - 7200
    sid2, old2 = legacy(session_dir, {"n": 2})
    os.utime(old2, (then, then))
    with SessionStore(Transaction({"SID": sid2}), session_dir, max_age=3600) as store:
        assert store.get_session(False) is None  # idle past max_age: expired, as any session
