"""Lifecycle events (fastsession.events): each event on each store, gc, a raising handler, no handler.

The Django signal and the Flask signal that carry them are tested in test_django.py and test_flask.py.
"""

import logging
import os
import time

import pytest
from test_users import listed, log_in

from fastsession import events
from fastsession.gc import collect
from fastsession.names import stored_name
from fastsession.users import user_hash


@pytest.fixture
def told():
    """The events told while the test runs, as (kind, session, user, previous, reason)."""
    seen = []

    def handler(event):
        seen.append((event.kind, event.session, event.user, event.previous, event.reason))

    events.subscribe(handler)
    yield seen
    events.unsubscribe(handler)


def kinds(seen):
    return [event[0] for event in seen]


def test_a_stored_new_session_is_created_and_an_empty_one_is_not(face, told):
    sid = face.stored({"cart": [1]})
    store = face.store()
    store.get_session(True)  # new and left empty: never stored, so never created
    store.close()
    assert told == [("created", stored_name(sid), None, None, None)]


def test_a_login_tells_created_with_the_user(face, told):
    sid = log_in(face)
    assert told == [("created", stored_name(sid), user_hash("ann"), None, None)]


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_regenerate_id_tells_regenerated_with_the_previous_name(face, told, locking):
    old = face.stored({"n": 1})
    told.clear()
    store = face.store(old, locking=locking)
    store.get_session(False)
    new = store.regenerate_id()
    store.close()
    assert told == [("regenerated", stored_name(new), None, stored_name(old), None)]


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_expire_session_tells_deleted_once_and_only_for_a_session_that_was_there(face, told, locking):
    sid = log_in(face)
    told.clear()
    store = face.store(sid, locking=locking)
    store.get_session(False)
    store.expire_session()
    store.close()
    assert told == [("deleted", stored_name(sid), user_hash("ann"), None, "logout")]
    told.clear()
    unread_id = face.stored({"n": 1})
    unread = face.store(unread_id, locking=locking)  # the cookie's session, never read
    unread.expire_session()
    unread.close()
    assert told[1:] == [("deleted", stored_name(unread_id), None, None, "logout")]
    told.clear()
    fresh = face.store(locking=locking)  # made and expired in one request: never stored, never told
    fresh.get_session(True)["n"] = 1
    fresh.expire_session()
    fresh.close()
    assert told == []
    gone = face.store(sid, locking=locking)  # a cookie whose session is gone already
    gone.expire_session()
    gone.close()
    assert told == []


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_a_session_past_max_lifetime_tells_expired_lifetime(face, told, locking):
    login = face.store(max_lifetime=0.2)
    login.get_session(True)["n"] = 1
    login.bind_user("ann")
    login.close()
    sid = login.trans.cookies["SID"]
    time.sleep(0.3)
    told.clear()
    store = face.store(sid, max_lifetime=0.2, locking=locking)
    assert store.get_session(False) is None
    store.close()
    assert told == [("expired", stored_name(sid), user_hash("ann"), None, "lifetime")]


@pytest.mark.parametrize("kind", ["files", "files-async"])
def test_a_session_idle_past_max_age_tells_expired_idle_when_a_request_finds_it(kind, tmp_path, redis_url, told):
    from faces import Face

    face = Face(kind, str(tmp_path / "sessions"), redis_url)
    try:
        sid = log_in(face)
        path = os.path.join(face.directory, stored_name(sid)[:2], stored_name(sid))
        os.utime(path, (time.time() - 100, time.time() - 100))
        told.clear()
        store = face.store(sid, max_age=50)
        assert store.get_session(False) is None
        store.close()
        assert told == [("expired", stored_name(sid), user_hash("ann"), None, "idle")]
    finally:
        face.finish()


def test_gc_tells_expired_for_each_session_it_removes(tmp_path, told):
    from faces import Face

    face = Face("files", str(tmp_path / "sessions"), None)
    try:
        old, fresh = log_in(face), face.stored({"n": 1})
        path = os.path.join(face.directory, stored_name(old)[:2], stored_name(old))
        os.utime(path, (time.time() - 100, time.time() - 100))
        told.clear()
        assert collect(face.directory, 50).removed == 1
        assert told == [("expired", stored_name(old), user_hash("ann"), None, "idle")]
        assert face.read(fresh) == {"n": 1}
    finally:
        face.finish()


def test_revoke_revoke_all_and_the_cap_tell_revoked_with_their_reason(face, told):
    first, second, third = log_in(face), log_in(face), log_in(face)
    busy = face.store(third)
    busy.get_session(False)["n"] = 1  # held by a request: revoked all the same
    told.clear()
    store = face.store()
    (_newest, middle, oldest) = store.sessions_of("ann")
    assert store.revoke(oldest)
    assert store.revoke_all("ann", keep=middle) == 1
    store.close()
    busy.close()
    ann = user_hash("ann")
    assert told == [
        ("revoked", stored_name(first), ann, None, "revoke"),
        ("revoked", stored_name(third), ann, None, "revoke_all"),
    ]
    told.clear()
    capped = face.store(max_sessions=1)
    capped.get_session(True)["user"] = "ann"
    capped.bind_user("ann")
    capped.close()
    assert told[0] == ("revoked", stored_name(second), ann, None, "max_sessions")
    assert kinds(told) == ["revoked", "created"]
    assert [e.session for e in listed(face)] == [told[1][1]]


def test_revoking_this_requests_own_session_tells_revoked_not_deleted(face, told):
    sid = log_in(face)
    told.clear()
    store = face.store(sid)
    store.get_session(False)
    (own,) = store.sessions_of("ann")
    assert store.revoke(own)
    store.close()
    assert told == [("revoked", stored_name(sid), user_hash("ann"), None, "revoke")]


def test_an_event_names_the_stored_name_never_the_id(face, told):
    sid = log_in(face)
    store = face.store(sid)
    store.get_session(False)
    store.regenerate_id()
    store.close()
    for event in told:
        assert sid not in repr(event) and all(sid not in str(field) for field in event)


def test_a_handler_that_raises_is_logged_and_breaks_no_request_nor_leaves_a_lock(face, told, caplog):
    def broken(event):
        raise RuntimeError("audit log down")

    events.subscribe(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="fastsession.events"):
            sid = log_in(face)
            store = face.store(sid)
            store.get_session(False)
            store.expire_session()
            store.close()
    finally:
        events.unsubscribe(broken)
    assert kinds(told) == ["created", "deleted"]  # the other handler heard of everything
    assert sum("handler raised" in r.getMessage() for r in caplog.records) == 2
    again = face.store(face.stored({"n": 1}), timeout=0)  # no lock left behind: taken at once
    assert again.get_session(False) == {"n": 1}
    again.close()


def test_with_no_handler_no_event_is_built(face, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("an event was built with no handler subscribed")

    monkeypatch.setattr(events, "emit", built)
    assert events.handlers == []
    sid = log_in(face, max_sessions=1)
    log_in(face, max_sessions=1)  # evicts the first
    store = face.store(face.stored({"n": 1}))
    store.get_session(False)
    store.regenerate_id()
    store.expire_session()
    store.close()
    unread = face.store(face.stored({"n": 1}))  # expired by its cookie alone: deleted without a read
    unread.expire_session()
    unread.close()
    logout = face.store(face.stored({"n": 1}))  # a logout of the session in hand
    logout.get_session(False)
    logout.expire_session()
    logout.close()
    assert face.read(sid) is None


def test_subscribe_is_once_and_unsubscribe_of_a_stranger_is_nothing():
    def handler(event):
        pass

    assert events.subscribe(handler) is handler
    events.subscribe(handler)
    assert events.handlers.count(handler) == 1
    events.unsubscribe(handler)
    events.unsubscribe(handler)
    assert handler not in events.handlers
