"""A cap on a user's sessions: bind_user(..., max_sessions=N), evicting the least recently used or refusing.

On the four stores (files and Redis, sync and async), with real processes for racing logins; the
adapters' settings are in test_framework_extensions.py and test_django.py.
"""

import multiprocessing
import time

import pytest
from faces import Face
from test_users import listed

from fastsession import SessionStore, TooManySessions
from fastsession.names import stored_name
from fastsession.users import cap_lock_name, user_hash

HOUR = 3600  # max_age: Redis knows a session's last use from its TTL only when it has one


def log_in(face, user="ann", **options):
    """A new device of ``user`` bound under the cap in ``options``: its id."""
    store = face.store(max_age=HOUR, **options)
    store.get_session(True)["user"] = user
    store.bind_user(user, device=len(face.opened))
    store.close()
    time.sleep(0.02)  # logins and uses land in a clear order (Redis knows last use to the millisecond)
    return store.trans.cookies["SID"]


def use(face, sid):
    """A request of device ``sid`` that changes its session: its last use is now."""
    store = face.store(sid, max_age=HOUR)
    store.get_session(False)["seen"] = time.time()
    store.close()
    time.sleep(0.02)


def test_beyond_the_cap_the_least_recently_used_session_goes_not_the_oldest_login(face):
    first, second = log_in(face, max_sessions=2), log_in(face, max_sessions=2)
    use(face, first)  # logged in first, but used since: the second is the least recently used
    third = log_in(face, max_sessions=2)
    assert face.read(second) is None
    assert face.read(first)["user"] == "ann" and face.read(third)["user"] == "ann"
    assert {e.session for e in listed(face)} == {stored_name(first), stored_name(third)}


def test_a_cap_of_one_keeps_only_the_newest_login_and_other_users_are_untouched(face):
    bob = log_in(face, "bob", max_sessions=1)
    devices = [log_in(face, max_sessions=1) for _ in range(3)]
    assert [face.read(d) is None for d in devices] == [True, True, False]
    assert [e.session for e in listed(face)] == [stored_name(devices[-1])]
    assert face.read(bob) == {"user": "bob"}


def test_refuse_raises_too_many_sessions_and_binds_nothing(face):
    kept = [log_in(face, max_sessions=2, when_full="refuse") for _ in range(2)]
    store = face.store(max_age=HOUR, max_sessions=2, when_full="refuse")
    store.get_session(True)["cart"] = ["book"]
    with pytest.raises(TooManySessions) as refused:
        store.bind_user("ann")
    assert refused.value.user == user_hash("ann") and refused.value.max_sessions == 2
    assert "2 sessions already" in str(refused.value) and "ann" not in str(refused.value)
    store.close()  # the request goes on, not logged in: what it stored is kept, bound to no one
    assert face.read(store.trans.cookies["SID"]) == {"cart": ["book"]}
    assert {e.session for e in listed(face)} == {stored_name(sid) for sid in kept}
    assert [face.read(sid)["user"] for sid in kept] == ["ann", "ann"]


def test_binding_again_to_the_same_user_counts_the_session_once(face):
    sid = log_in(face, max_sessions=1, when_full="refuse")
    store = face.store(sid, max_age=HOUR, max_sessions=1, when_full="refuse")
    store.get_session(False)
    store.bind_user("ann", device="renamed")  # its own entry is not another session
    store.close()
    assert [e.metadata for e in listed(face)] == [{"device": "renamed"}]


def test_bind_user_arguments_override_the_stores_cap(face):
    devices = [log_in(face) for _ in range(3)]  # no cap
    store = face.store(max_age=HOUR, max_sessions=1, when_full="refuse")
    store.get_session(True)["user"] = "ann"
    store.bind_user("ann", max_sessions=None)  # no cap for this binding
    store.close()
    assert len(listed(face)) == 4
    store = face.store(max_age=HOUR, max_sessions=1, when_full="refuse")
    store.get_session(True)["user"] = "ann"
    store.bind_user("ann", max_sessions=3, when_full="evict")
    store.close()
    assert len(listed(face)) == 3
    assert [face.read(d) is None for d in devices] == [True, True, False]
    store = face.store(max_age=HOUR, max_sessions=2)
    store.get_session(True)
    with pytest.raises(TooManySessions):
        store.bind_user("ann", when_full="refuse")  # the store's max_sessions, this call's policy
    store.rollback()


def test_unbinding_is_never_capped(face):
    sid = log_in(face, max_sessions=1)
    store = face.store(sid, max_age=HOUR, max_sessions=1, when_full="refuse")
    store.get_session(False)
    store.bind_user(None)
    store.close()
    assert listed(face) == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_sessions": 0}, ValueError),
        ({"max_sessions": -1}, ValueError),
        ({"max_sessions": 1.5}, TypeError),
        ({"max_sessions": True}, TypeError),
        ({"max_sessions": 2, "when_full": "drop"}, ValueError),
        ({"when_full": None}, ValueError),
    ],
)
def test_a_cap_no_binding_could_keep_is_refused_when_the_store_is_made_and_at_bind_user(tmp_path, options, error):
    with pytest.raises(error):
        SessionStore(None, str(tmp_path), **options)
    store = SessionStore(None, str(tmp_path))
    with pytest.raises(error):
        store.bind_user("ann", **options)
    store.rollback()


def test_the_evicted_sessions_request_in_flight_cannot_bring_it_back(face):
    stolen = log_in(face, max_sessions=1)
    thief = face.store(stolen, max_age=HOUR)
    thief.get_session(False)["loot"] = 1  # mid-request: holds its session (request locking)
    owner = log_in(face, max_sessions=1)  # the owner logs in again: the cap evicts the busy one at once
    thief.close()  # its commit writes nothing, and its cookie goes
    assert thief.trans.events[-1] == ("delete", "SID")
    assert face.read(stolen) is None
    assert [e.session for e in listed(face)] == [stored_name(owner)]


def test_the_cap_lock_is_no_session_and_is_let_go(face):
    """The lock a binding takes to count is named apart from every session, and is released: the next
    binding does not wait for it."""
    log_in(face, max_sessions=1)
    name = cap_lock_name(user_hash("ann"))
    assert name not in {e.session for e in listed(face)}
    log_in(face, max_sessions=1, timeout=0)  # would raise LockTimeout if the first had kept it
    assert len(listed(face)) == 1


# -- N+1 logins at once, from N+1 processes ------------------------------------------------------------


USERS = ("ann", "bob", "cid", "dee", "eve", "fay")  # one race per user, run at once: a lost race shows in one


def _race(spec, max_sessions, when_full, start, report, locking="request"):
    face = Face.twin(spec)
    start.wait(10)
    for user in USERS:
        store = face.store(max_age=HOUR, max_sessions=max_sessions, when_full=when_full, timeout=30, locking=locking)
        session = store.get_session(True)
        session["visits"] = 1
        try:
            store.bind_user(user)
            session["user"] = user  # logged in, as an app marks it once the binding is done
            if locking == "commit":
                time.sleep(0.05)  # the login's view goes on: its commit lands well after its binding
            outcome = "in"
        except TooManySessions:
            outcome = "refused"
        store.close()
        report.put((user, store.trans.cookies.get("SID"), outcome))
    face.finish()


@pytest.mark.parametrize("when_full", ["evict", "refuse"])
def test_n_plus_one_logins_at_once_leave_exactly_n(sync_face, when_full):
    race(sync_face, when_full, "request")


def test_on_files_n_plus_one_commit_mode_logins_leave_exactly_n_too(tmp_path, redis_url):
    """A commit-mode login holds no lock until its commit: one evicted before that finds the mark of its
    revocation in its place and stores nothing. (On Redis it may still land: docs/users.md.)"""
    face = Face("files", str(tmp_path / "sessions"), redis_url)
    try:
        race(face, "evict", "commit")
    finally:
        face.finish()


def race(face, when_full, locking):
    n = 3
    context = multiprocessing.get_context("fork")
    start, report = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_race,
            args=(face.spec(), n, when_full, start, report, locking),
        )
        for _ in range(n + 1)
    ]
    for worker in workers:
        worker.start()
    start.set()
    results = [report.get(timeout=60) for _ in range(len(workers) * len(USERS))]
    for worker in workers:
        worker.join(10)
    for user in USERS:
        logins = [(sid, outcome) for who, sid, outcome in results if who == user]
        alive = [sid for sid, _ in logins if (face.read(sid) or {}).get("user") == user]
        assert len(alive) == n, user
        assert {e.session for e in listed(face, user)} == {stored_name(sid) for sid in alive}
        outcomes = sorted(outcome for _, outcome in logins)
        assert outcomes == (["in"] * (n + 1) if when_full == "evict" else ["in"] * n + ["refused"])
