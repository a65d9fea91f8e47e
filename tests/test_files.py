"""fastsession.files.FileBackend's own rules, called directly: revocation marks, reads without a lock,
opening by stored name, and what it logs."""

import logging
import os
import stat

import pytest
from conftest import Transaction, store_session
from helpers import age, plant_lock
from helpers import session_path as path_of

from fastsession import LockTimeout, SessionStore
from fastsession.errors import SessionRevoked
from fastsession.files import FileBackend
from fastsession.names import stored_name
from fastsession.record import bound_to
from fastsession.users import user_hash


def bound_session(session_dir, user="ann"):
    """A stored session bound to ``user``: its id."""
    trans = Transaction()
    with SessionStore(trans, session_dir) as store:
        store.get_session(True)["user"] = user
        store.bind_user(user)
    return trans.cookies["SID"]


def test_revoking_a_held_session_marks_it_once_and_again_says_it_is_revoked(session_dir):
    sid = bound_session(session_dir)
    backend = FileBackend(session_dir)
    holder = SessionStore(Transaction({"SID": sid}), session_dir)
    holder.get_session(False)["n"] = 1  # held by a request
    name = stored_name(sid)
    assert backend.revoke_held(name, user_hash("ann"))
    mark = path_of(session_dir, sid)
    assert stat.S_ISDIR(os.lstat(mark).st_mode) and stat.S_IMODE(os.lstat(mark).st_mode) == 0o700
    assert backend.revoke_held(name, user_hash("ann"))  # marked already: revoked
    holder.close()  # its commit writes nothing
    assert holder.trans.events[-1] == ("delete", "SID")


def test_revoke_held_leaves_another_users_corrupt_or_missing_session_alone(session_dir):
    backend = FileBackend(session_dir)
    bob = bound_session(session_dir, "bob")
    assert not backend.revoke_held(stored_name(bob), user_hash("ann"))
    assert bound_to(backend.kernels.read_session(path_of(session_dir, bob).encode(), False)[0]) == user_hash("bob")
    corrupt, _ = store_session(session_dir, {"a": 1})
    with open(path_of(session_dir, corrupt), "wb") as f:
        f.write(b"junk")
    assert not backend.revoke_held(stored_name(corrupt), user_hash("ann"))
    assert open(path_of(session_dir, corrupt), "rb").read() == b"junk"
    assert not backend.revoke_held(stored_name("never-stored-" + "x" * 30), user_hash("ann"))
    with pytest.raises(ValueError, match="^invalid stored name$"):
        backend.revoke_held("../../etc", user_hash("ann"))


def test_a_revoked_sessions_name_stays_marked_and_no_later_commit_brings_it_back(session_dir):
    sid = bound_session(session_dir)
    holder = SessionStore(Transaction({"SID": sid}), session_dir)
    holder.get_session(False)["n"] = 1
    assert FileBackend(session_dir).revoke_held(stored_name(sid), user_hash("ann"))
    holder.close()
    assert os.path.isdir(path_of(session_dir, sid))
    with SessionStore(Transaction({"SID": sid}), session_dir) as store:  # the thief's stale cookie, again
        assert store.get_session(False) is None
    for locking in ("request", "commit"):  # a write under that very id (WebStack's _get_session) fails
        store = SessionStore(Transaction(), session_dir, locking=locking)
        store._get_session(sid, True)["loot"] = 1
        store.close()
        assert store.trans.events[-1] == ("delete", "SID")
    assert os.path.isdir(path_of(session_dir, sid))  # still the mark: gc removes it once old


def test_a_read_without_the_lock_never_removes_an_expired_session(session_dir):
    """The holder of its lock may be writing it right now: only a holder removes an expired session."""
    sid, _ = store_session(session_dir, {"a": 1})
    age(path_of(session_dir, sid), 100)
    backend = FileBackend(session_dir, True, 1.0, None, 30.0, 50)
    assert backend.load(backend.unlocked(sid)) is None  # expired: reads as absent
    assert os.path.exists(path_of(session_dir, sid))
    handle = backend.open(sid)
    assert backend.load(handle) is None
    assert not os.path.exists(path_of(session_dir, sid))  # removed by a holder of its lock
    backend.release(handle)


def test_open_stored_takes_str_or_bytes_and_refuses_what_no_id_could_be(session_dir):
    sid, _ = store_session(session_dir, {"a": 1})
    backend = FileBackend(session_dir)
    for name in (stored_name(sid), stored_name(sid).encode("ascii")):
        handle = backend.open_stored(name)
        assert backend.load(handle)[0] == {"a": 1}
        backend.release(handle)
    with pytest.raises(ValueError, match="^invalid stored name$"):
        backend.open_stored("../x")
    with pytest.raises(ValueError, match="^invalid user hash$"):
        backend.index_list("../x")


def test_open_stored_waits_by_the_backends_timeout_and_judges_the_holder_by_stale_after(session_dir):
    sid, _ = store_session(session_dir, {"a": 1})
    backend = FileBackend(session_dir, True, 0.01, 0.05, 5.0)
    plant_lock(session_dir, sid, b"FSv1 web-9/1 boot 42 7\n", 2)  # another host's, 2 s old
    with pytest.raises(LockTimeout):  # held (stale only after 5 s): given up after the backend's 0.05 s
        backend.open_stored(stored_name(sid))
    plant_lock(session_dir, sid, b"FSv1 web-9/1 boot 42 7\n", 10)  # now past stale_after
    handle = backend.open_stored(stored_name(sid), 0)
    backend.release(handle)


def test_a_corrupt_file_and_a_revocation_mark_are_logged_as_what_they_are(session_dir, caplog):
    sid, _ = store_session(session_dir, {"a": 1})
    path = path_of(session_dir, sid)
    with open(path, "wb") as f:
        f.write(b"junk")
    backend = FileBackend(session_dir)
    with caplog.at_level(logging.INFO, logger="fastsession.files"):
        assert backend.load(backend.unlocked(sid)) is None
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == f"ignoring corrupt session file: {path}: no holder line"
    os.unlink(path)
    os.mkdir(path, 0o700)  # a revocation mark
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fastsession.files"):
        assert backend.load(backend.unlocked(sid)) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} is a folder, the mark of a revoked session: read as absent"
    ]


def test_a_commit_over_a_revocation_mark_writes_nothing_and_says_why(session_dir, caplog):
    sid = bound_session(session_dir)
    path = path_of(session_dir, sid)
    for concurrent in (True, False):  # a locked commit, and an unlocked write (concurrent=0)
        backend = FileBackend(session_dir, concurrent)
        handle = backend.open(sid) if concurrent else backend.unlocked(sid)
        if not os.path.isdir(path):
            assert backend.revoke_held(stored_name(sid), user_hash("ann"), True)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="fastsession.files"):
            with pytest.raises(SessionRevoked) as revoked:
                backend.save(handle, b'{"n":1}') if concurrent else backend.write(handle, b'{"n":1}')
        assert str(revoked.value) == f"{path}: revoked while this request held it; nothing was written"
        assert [r.getMessage() for r in caplog.records] == [
            f"session {stored_name(sid)[:8]}… was revoked while this request held it: not written"
        ]
        assert os.path.isdir(path)


def test_a_listing_passes_over_what_is_no_entry_and_lists_every_live_session(session_dir):
    live = [bound_session(session_dir) for _ in range(3)]
    backend = FileBackend(session_dir, True, 1.0, None, 30.0, 3600)
    folder = os.path.join(session_dir, ".users", user_hash("ann"))
    for number in range(4):  # among the entries, in whatever order the folder lists them:
        with open(os.path.join(folder, f"{stored_name(str(number) * 43)}.1234.tmp"), "wb") as f:
            f.write(b"")  # a write in flight
        with open(os.path.join(folder, stored_name("c" * 40 + str(number))), "wb") as f:
            f.write(b"junk")  # a corrupt entry
        idle = bound_session(session_dir)  # a session idle past max_age
        age(path_of(session_dir, idle), 7200)
    found = backend.index_list(user_hash("ann"))
    assert sorted(name for name, _, _, there in found if there) == sorted(stored_name(sid) for sid in live)


def test_revoking_a_login_whose_commit_has_not_landed_marks_its_name_even_in_a_new_shard(session_dir):
    """A commit-mode login holds no lock and has no file until its commit; its shard folder may not exist."""
    store_session(session_dir, {"a": 1})  # the directory exists
    backend = FileBackend(session_dir)
    names = (stored_name(f"a login not stored yet {n:020d}") for n in range(100))
    name = next(n for n in names if not os.path.exists(os.path.join(session_dir, n[:2])))
    shard = os.path.join(session_dir, name[:2])
    assert backend.revoke_held(name, user_hash("ann"), True)
    assert os.path.isdir(os.path.join(shard, name)) and stat.S_IMODE(os.stat(shard).st_mode) == 0o700
