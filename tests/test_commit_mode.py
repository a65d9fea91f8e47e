"""locking="commit": read without a lock, commit under it with a per-key merge; read_only(); early close().

Every test runs on four stores: files and Redis, sync and async (one core).
"""

import orjson
import pytest
from conftest import Transaction
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsession
from fastsession import LockTimeout, SessionError
from fastsession.errors import SessionConflict
from fastsession.merge import ABSENT, merge
from fastsession.names import stored_name


def test_an_unchanged_session_takes_no_lock(face):
    sid = face.stored({"user": "ann"})
    holder = face.store(sid)
    holder.get_session(False)  # request mode: holds the lock
    reader = face.store(sid, locking="commit", timeout=0)  # would raise LockTimeout on any lock
    assert reader.get_session(False) == {"user": "ann"}
    reader.close()
    holder.rollback()


def test_a_changed_session_waits_only_for_the_commit(face):
    sid = face.stored({"n": 1})
    holder = face.store(sid)
    holder.get_session(False)
    writer = face.store(sid, locking="commit", timeout=0)
    writer.get_session(False)["n"] = 2  # read while locked: fine
    with pytest.raises(LockTimeout):
        writer.close()  # the commit needs the lock, and it is held
    holder.rollback()
    assert face.read(sid) == {"n": 1}  # nothing written, nothing left locked
    again = face.store(sid, locking="commit", timeout=0)
    again.get_session(False)["n"] = 3
    again.close()
    assert face.read(sid) == {"n": 3}


def test_disjoint_changes_of_two_overlapping_requests_are_both_kept(face):
    sid = face.stored({"cart": [], "seen": 0, "flash": "saved"})
    a = face.store(sid, locking="commit")
    b = face.store(sid, locking="commit")
    a.get_session(False)["cart"] = ["book"]
    b.get_session(False)["seen"] = 1
    del b.get_session(False)["flash"]  # shown: a deletion is a change too
    a.close()
    b.close()
    assert face.read(sid) == {"cart": ["book"], "seen": 1}


def test_a_key_changed_on_both_sides_raises_and_writes_nothing(face):
    sid = face.stored({"n": 0, "other": "x"})
    a = face.store(sid, locking="commit")
    b = face.store(sid, locking="commit")
    a.get_session(False)["n"] = 1
    session_b = b.get_session(False)
    session_b["n"] = 2
    session_b["other"] = "y"
    a.close()
    with pytest.raises(SessionConflict) as caught:
        b.close()
    assert caught.value.keys == ("n",) and "'n'" in str(caught.value)
    assert isinstance(caught.value, SessionError)
    assert face.read(sid) == {"n": 1, "other": "x"}  # a's commit stands; none of b's changes is written
    c = face.store(sid, locking="commit", timeout=0)  # and b left no lock behind
    c.get_session(False)["n"] = 5
    c.close()
    assert face.read(sid)["n"] == 5


@pytest.mark.parametrize(
    "policy, expected", [("ours", 2), ("theirs", 1), (lambda key, base, ours, theirs: base + ours + theirs, 3)]
)
def test_on_conflict_resolves_a_same_key_change(face, policy, expected):
    sid = face.stored({"n": 0})
    a = face.store(sid, locking="commit")
    b = face.store(sid, locking="commit", on_conflict=policy)
    a.get_session(False)["n"] = 1
    b.get_session(False)["n"] = 2
    a.close()
    b.close()
    assert face.read(sid) == {"n": expected}


def test_the_same_change_on_both_sides_is_a_conflict_never_a_silently_lost_increment(face):
    """Two requests that each raise a counter from 0 to 1 made two updates: the second is refused, not dropped."""
    sid = face.stored({"n": 0})
    a = face.store(sid, locking="commit")
    b = face.store(sid, locking="commit")
    a.get_session(False)["n"] = 1
    b.get_session(False)["n"] = 1
    a.close()
    with pytest.raises(SessionConflict) as caught:
        b.close()
    assert caught.value.keys == ("n",)
    assert face.read(sid) == {"n": 1}  # a's update, acknowledged; b's was refused, not acknowledged


def test_a_session_deleted_meanwhile_is_not_resurrected(face):
    sid = face.stored({"user": "ann"})
    late = face.store(sid, locking="commit")
    late.get_session(False)["cart"] = ["book"]
    logout = face.store(sid)
    logout.get_session(False)
    logout.expire_session()
    logout.close()
    late.close()
    assert face.read(sid) is None


def test_a_new_session_is_stored_and_gets_its_cookie(face):
    s = face.store(locking="commit")
    s.get_session(True)["user"] = "ann"
    s.close()
    sid = s.trans.cookies["SID"]
    assert face.read(sid) == {"user": "ann"}
    empty = face.store(locking="commit")
    empty.get_session(True)
    empty.close()
    assert face.read(empty.trans.cookies["SID"]) is None  # new and empty: not stored


def test_regenerate_id_and_expiry_under_commit_locking(face):
    sid = face.stored({"cart": ["book"]})
    s = face.store(sid, locking="commit")
    s.get_session(False)["user"] = "ann"
    new_id = s.regenerate_id()
    s.close()
    assert face.read(sid) is None and face.read(new_id) == {"cart": ["book"], "user": "ann"}
    e = face.store(new_id, locking="commit")
    e.get_session(False)
    e.expire_session()
    e.close()
    assert face.read(new_id) is None and ("delete", "SID") in e.trans.events


def test_a_value_that_cannot_be_stored_keeps_the_stored_session(face):
    sid = face.stored({"n": 1})
    s = face.store(sid, locking="commit")
    s.get_session(False)["bad"] = object()
    with pytest.raises(fastsession.SerializationError):
        s.close()
    assert face.read(sid) == {"n": 1}


def test_read_only_request_takes_no_lock_and_a_change_is_still_merged(face):
    sid = face.stored({"n": 0, "seen": 0})
    holder = face.store(sid)
    holder.get_session(False)
    reader = face.store(sid, timeout=0)  # request mode, marked read-only for this request
    reader.read_only()
    assert reader.get_session(False) == {"n": 0, "seen": 0}
    holder.get_session(False)["n"] = 1
    holder.close()
    reader.get_session(False)["seen"] = 1  # changed after all: merged, not lost
    reader.close()
    assert face.read(sid) == {"n": 1, "seen": 1}
    locked = face.store(sid)
    locked.get_session(False)
    with pytest.raises(SessionError, match="before get_session"):
        locked.read_only()
    locked.rollback()


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_early_close_releases_now_and_the_response_still_gets_the_cookie(face, locking):
    s = face.store(locking=locking)
    s.get_session(True)["user"] = "ann"
    s.close()  # the view is done with the session; the response is not
    sid = s.trans.cookies["SID"]
    other = face.store(sid, timeout=0)  # not locked any more
    assert other.get_session(False) == {"user": "ann"}
    other.rollback()
    assert s.response_cookie() == sid  # what the adapter sends as headers go out
    gone = face.store(sid, locking=locking)
    gone.get_session(False)
    gone.expire_session()
    gone.close()
    assert gone.response_cookie() == ""


def test_bad_locking_options_are_refused(face):
    with pytest.raises(ValueError, match="locking"):
        face.store(locking="optimistic")
    with pytest.raises(ValueError, match="on_conflict"):
        face.store(locking="commit", on_conflict="mine")


# -- the merge itself, on every interleaving ------------------------------------

values = st.one_of(
    st.integers(-3, 3), st.booleans(), st.text(max_size=2), st.none(), st.lists(st.integers(0, 2), max_size=2)
)
sessions = st.dictionaries(st.sampled_from("abcdef"), values, max_size=6)


def change(base, edits):
    out = dict(base)
    for key, value in edits.items():
        if value is ABSENT:
            out.pop(key, None)
        else:
            out[key] = value
    return out


edits = st.dictionaries(st.sampled_from("abcdef"), st.one_of(values, st.just(ABSENT)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(base=sessions, ours_edits=edits, theirs_edits=edits)
def test_merge_keeps_every_disjoint_change_and_reports_every_conflict(base, ours_edits, theirs_edits):
    ours, theirs = change(base, ours_edits), change(base, theirs_edits)

    def enc(d, k):
        return orjson.dumps(d[k]) if k in d else None

    changed_ours = {k for k in set(base) | set(ours) if enc(base, k) != enc(ours, k)}
    changed_theirs = {k for k in set(base) | set(theirs) if enc(base, k) != enc(theirs, k)}
    clashing = changed_ours & changed_theirs  # whatever the values: two changes are two updates
    if clashing:
        with pytest.raises(SessionConflict) as caught:
            merge(base, ours, theirs, "raise")
        assert set(caught.value.keys) == clashing
        return
    merged = merge(base, ours, theirs, "raise")
    for key in set(base) | set(ours) | set(theirs):
        want = ours if key in changed_ours else theirs
        assert enc(merged, key) == enc(want, key)


def test_merge_tells_1_and_true_and_1_0_apart():
    assert merge({"a": 1}, {"a": True}, {"a": 1}, "raise") == {"a": True}
    with pytest.raises(SessionConflict):
        merge({"a": 1}, {"a": True}, {"a": 1.0}, "raise")


def test_a_callable_may_delete_the_key():
    assert merge({"a": 1, "b": 0}, {"a": 2, "b": 0}, {"a": 3, "b": 0}, lambda *_: ABSENT) == {"b": 0}


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(["read a", "read b", "close a", "close b"]))
def test_any_interleaving_of_two_requests_on_disjoint_keys_loses_nothing(tmp_path_factory, order):
    if order.index("close a") < order.index("read a") or order.index("close b") < order.index("read b"):
        return  # a request closes after it read
    directory = str(tmp_path_factory.mktemp("interleave"))
    sid = None
    trans = Transaction()
    with fastsession.SessionStore(trans, directory) as first:
        first.get_session(True)["base"] = 0
    sid = trans.cookies["SID"]
    stores = {name: fastsession.SessionStore(Transaction({"SID": sid}), directory, locking="commit") for name in "ab"}
    for step in order:
        verb, name = step.split()
        if verb == "read":
            stores[name].get_session(False)[name] = name.upper()
        else:
            stores[name].close()
    with fastsession.SessionStore(Transaction({"SID": sid}), directory) as check:
        assert dict(check.get_session(False)) == {"base": 0, "a": "A", "b": "B"}


def test_a_merge_keeps_a_user_binding_made_meanwhile(face):
    """A page view read before a login commits after it: the login's binding stays, so revoke_all finds it."""
    sid = face.stored({"cart": []})
    late = face.store(sid, locking="commit")
    late.get_session(False)["cart"] = ["book"]
    login = face.store(sid)
    login.get_session(False)["user"] = "ann"
    login.bind_user("ann")
    login.close()
    late.close()  # merged: its cart, the login's user and binding
    assert face.read(sid) == {"cart": ["book"], "user": "ann"}
    lister = face.store()
    assert [e.session for e in lister.sessions_of("ann")] == [stored_name(sid)]
    assert lister.revoke_all("ann") == 1
    lister.close()
    assert face.read(sid) is None


def test_rollback_then_a_normal_response_keeps_the_users_cookie(face):
    sid = face.stored({"user": "ann"})
    store = face.store(sid)
    store.get_session(False)
    store.rollback()  # the view failed over something else; the response still goes out
    assert store.response_cookie() is None  # the cookie stays as it is: nobody logged out
    assert face.read(sid) == {"user": "ann"}


# -- mutants a mutation run of store.py left (tools/mutation-survivors.md) --------------------------


def overlapping(face, sid, **options):
    """Two commit-mode requests of one session, both read before either commits."""
    a = face.store(sid, locking="commit", **options)
    b = face.store(sid, locking="commit", **options)
    a.get_session(False)
    b.get_session(False)
    return a, b


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "sealed"])
def test_a_binding_made_while_another_request_changed_the_session_is_kept_by_the_merge(face, encrypt):
    sid = face.stored({"n": 0}, encrypt=encrypt)
    a, b = overlapping(face, sid, encrypt=encrypt)
    b.get_session(False)["seen"] = 1
    b.close()  # lands first: a's commit merges with it
    a.bind_user("ann", user_agent="phone")
    a.get_session(False)["cart"] = ["book"]
    a.close()
    reader = face.store(sid, encrypt=encrypt)
    try:
        assert dict(reader.get_session(False)) == {"n": 0, "seen": 1, "cart": ["book"]}
        (entry,) = reader.sessions_of("ann")
    finally:
        reader.close()
    assert entry.session == stored_name(sid) and entry.metadata == {"user_agent": "phone"}


def test_a_merged_commit_still_keeps_to_max_size(face):
    sid = face.stored({"n": 0})
    a, b = overlapping(face, sid, max_size=60)
    b.get_session(False)["b"] = "x" * 30
    b.close()
    a.get_session(False)["a"] = "y" * 30  # fits alone; with b's change merged in, it does not
    with pytest.raises(fastsession.SessionTooLarge):
        a.close()
    assert face.read(sid) == {"n": 0, "b": "x" * 30}  # what was stored stays


def test_a_change_to_a_session_deleted_meanwhile_is_logged_and_it_stays_deleted(face, caplog):
    import logging

    sid = face.stored({"n": 0})
    a, b = overlapping(face, sid)
    b.expire_session()
    b.close()
    a.get_session(False)["n"] = 1
    with caplog.at_level(logging.INFO, "fastsession"):
        a.close()
    assert a.response_cookie() is None  # nothing stored: no cookie to send
    assert face.read(sid) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"session {stored_name(sid)[:8]}… (stored name) was deleted while a request changed it; it stays deleted"
    ]


def test_commit_mode_sends_no_cookie_for_an_unchanged_or_a_new_empty_session(face):
    sid = face.stored({"n": 1})
    unchanged = face.store(sid, locking="commit")
    unchanged.get_session(False)
    unchanged.close()
    assert unchanged.response_cookie() is None  # what an adapter sends: nothing
    empty = face.store(locking="commit")
    empty.get_session(True)
    empty.close()
    assert empty.response_cookie() is None


def test_commit_mode_login_binds_the_session(face):
    sid = face.stored({"n": 1})
    store = face.store(sid, locking="commit")
    store.get_session(False)["user"] = "ann"
    store.bind_user("ann", user_agent="phone")
    store.close()
    reader = face.store()
    try:
        (entry,) = reader.sessions_of("ann")
    finally:
        reader.close()
    assert entry.session == stored_name(sid) and entry.metadata == {"user_agent": "phone"}


def test_a_rolled_back_commit_mode_store_leaves_another_requests_lock_alone(face):
    sid = face.stored({"n": 1})
    reader = face.store(sid, locking="commit")
    reader.get_session(False)  # read without a lock
    holder = face.store(sid, timeout=5)
    holder.get_session(False)["n"] = 2  # another request holds the lock
    reader.rollback()
    blocked = face.store(sid, timeout=0)
    with pytest.raises(LockTimeout):  # still held: the rollback released nothing of the holder's
        blocked.get_session(False)
    blocked.rollback()
    holder.close()
    assert face.read(sid) == {"n": 2}


def test_the_binding_another_request_changed_wins_over_an_unchanged_one_in_a_merge(face):
    sid = face.stored({"n": 0})
    first = face.store(sid)
    first.get_session(False)
    first.bind_user("ann")
    first.close()
    a, b = overlapping(face, sid)
    b.bind_user("bob")  # b logs another user in
    b.get_session(False)["user"] = "bob"
    b.close()
    a.get_session(False)["n"] = 1  # a changes data only: its (ann's) binding is what it read, not a change
    a.close()
    reader = face.store()
    try:
        assert [e.session for e in reader.sessions_of("bob")] == [stored_name(sid)]
        assert reader.sessions_of("ann") == []
    finally:
        reader.close()
    assert face.read(sid) == {"n": 1, "user": "bob"}
