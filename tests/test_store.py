import json
import logging
import os
import re
import stat
import time

import pytest
from conftest import Transaction, session_files, store_session
from helpers import fork_child, raises_at_once_as_nobody, session_path, stored_relpath, wait_for_byte, wait_ok

import fastsession
from fastsession import LockTimeout, SerializationError, Session, SessionError, SessionStore

ID = re.compile(r"[A-Za-z0-9_-]{43}")


def load(session_dir, session_id):
    """The stored data of a session, read through a fresh store (None when absent)."""
    with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


# -- construction ---------------------------------------------------------


def test_session_directory_is_created_private(tmp_path):
    directory = tmp_path / "a" / "b"
    SessionStore(Transaction(), str(directory)).close()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_documented_defaults_and_attributes(session_dir):
    store = SessionStore(Transaction(), session_dir)
    assert (store.session_cookie_name, store.concurrent, store.delay) == ("SID", 1, 1)
    assert store.session_directory == session_dir


def test_positional_arguments_as_in_2005(session_dir):
    trans = Transaction()
    with SessionStore(trans, session_dir, "WSID", 0, 0.5) as store:
        store.get_session(1)["a"] = 1
    assert "WSID" in trans.cookies
    assert load_named(session_dir, "WSID", trans.cookies["WSID"]) == {"a": 1}


def load_named(session_dir, name, session_id):
    with SessionStore(Transaction({name: session_id}), session_dir, name) as store:
        return dict(store.get_session(0))


# -- get_session ----------------------------------------------------------


def test_no_cookie_and_no_create_gives_none_and_sets_no_cookie(make_store):
    trans = Transaction()
    assert make_store(trans).get_session(0) is None
    assert make_store(trans).get_session(False) is None
    assert trans.events == []


@pytest.mark.parametrize("create", [1, True])
def test_create_issues_a_fresh_id_through_set_cookie_value(make_store, create):
    trans = Transaction()
    session = make_store(trans).get_session(create)
    assert isinstance(session, Session)
    assert ID.fullmatch(session.session_id)
    assert trans.events == [("set", "SID", session.session_id)]


def test_repeated_get_session_returns_the_same_object(make_store):
    store = make_store()
    first = store.get_session(1)
    assert store.get_session(1) is first
    assert store.get_session(0) is first


def test_cookie_of_a_stored_session_gives_that_session(session_dir, make_store):
    session_id, _trans = store_session(session_dir, {"user": "ann"})
    session = make_store(Transaction({"SID": session_id})).get_session(0)
    assert session.session_id == session_id
    assert session == {"user": "ann"}


@pytest.mark.parametrize(
    "cookie",
    [
        "A" * 43,  # well formed, never issued
        "../../../../etc/passwd",
        "",
        "x" * 5000,
        "A" * 42 + "\n",
        "A" * 42 + "\x00",
        "é" * 43,
    ],
)
def test_unknown_or_malformed_cookie_is_never_adopted(make_store, cookie):
    assert make_store(Transaction({"SID": cookie})).get_session(0) is None
    trans = Transaction({"SID": cookie})
    session = make_store(trans).get_session(1)
    assert session.session_id != cookie
    assert ID.fullmatch(session.session_id)
    assert trans.events == [("set", "SID", session.session_id)]


HOSTILE = [
    "../outside",
    "../../../../../../tmp/outside",
    "/tmp/outside",
    "A" * 40 + "/..",
    "..",
    ".",
    "A" * 42 + "\x00",
    "A" * 43 + "\x00/../../outside",
    "",
    "A" * 100000,
    "ÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅ",
    "A" * 42 + "\n",
    "A" * 42 + "\udcff",
]


@pytest.mark.parametrize("cookie", HOSTILE)
def test_hostile_cookies_never_reach_a_path_outside_the_directory(tmp_path, cookie):
    session_dir = str(tmp_path / "sessions")
    for create in (0, 1):
        with SessionStore(Transaction({"SID": cookie}), session_dir) as store:
            session = store.get_session(create)
            if session is not None:
                session["n"] = 1
                store.expire_session()
                store.get_session(1)["m"] = 2
    everything = session_files(str(tmp_path))
    assert everything, "the request stored a session"
    for name in everything:
        assert re.fullmatch(r"sessions/([A-Za-z0-9_-]{2})/\1[A-Za-z0-9_-]{41}", name), name


def test_session_is_a_mutable_mapping_with_its_id():
    from collections.abc import MutableMapping

    assert issubclass(Session, MutableMapping)


# -- close: write back only on change --------------------------------------


def test_changes_are_stored_at_close(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1, "cart": [1, 2], "who": {"name": "é"}})
    assert load(session_dir, session_id) == {"n": 1, "cart": [1, 2], "who": {"name": "é"}}


def test_unchanged_session_is_not_rewritten(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    before = os.stat(session_path(session_dir, session_id))
    with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
        session = store.get_session(0)
        session["n"] = 1  # same value: same bytes
        _ = session.get("n")
    after = os.stat(session_path(session_dir, session_id))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_nested_changes_count(session_dir):
    session_id, _ = store_session(session_dir, {"cart": {"items": [1]}})
    with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
        store.get_session(0)["cart"]["items"].append(2)
    assert load(session_dir, session_id) == {"cart": {"items": [1, 2]}}


def test_new_empty_session_is_not_stored(session_dir, make_store):
    store = make_store()
    store.get_session(1)
    store.close()
    assert session_files(session_dir) == []


def test_emptied_stored_session_is_stored_empty(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
        store.get_session(0).clear()
    assert load(session_dir, session_id) == {}


def test_close_twice_is_safe(session_dir, make_store):
    store = make_store()
    store.get_session(1)["a"] = 1
    store.close()
    store.close()
    assert len(session_files(session_dir)) == 1


def test_closed_store_refuses_get_session(make_store):
    store = make_store()
    store.close()
    with pytest.raises(SessionError):
        store.get_session(1)


def test_close_releases_the_lock(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    for _ in range(3):
        with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=1) as store:
            store.get_session(0)["n"] += 1
    assert load(session_dir, session_id) == {"n": 4}
    assert not any(name.endswith(".lock") for name in session_files(session_dir))


# -- expiry -----------------------------------------------------------------


def test_expire_session_deletes_at_close_and_deletes_the_cookie(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    trans = Transaction({"SID": session_id})
    store = SessionStore(trans, session_dir)
    store.expire_session()
    assert os.path.exists(session_path(session_dir, session_id))  # only at close
    store.close()
    assert session_files(session_dir) == []
    assert trans.events == [("delete", "SID")]


def test_expiring_the_session_this_store_holds_does_not_deadlock(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    trans = Transaction({"SID": session_id})
    store = SessionStore(trans, session_dir, timeout=2)
    store.get_session(0)["n"] = 2
    store.expire_session()
    store.close()  # a LockTimeout here would be the self-deadlock
    assert session_files(session_dir) == []
    assert ("delete", "SID") in trans.events


def test_expire_session_now_while_holding_it(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    store = SessionStore(Transaction({"SID": session_id}), session_dir, timeout=2)
    store.get_session(0)
    store._expire_session(session_id)
    assert session_files(session_dir) == []
    store.close()
    assert session_files(session_dir) == []


def test_after_expiry_create_gives_a_fresh_session(session_dir):
    session_id, _ = store_session(session_dir, {"user": "ann"})
    trans = Transaction({"SID": session_id})
    with SessionStore(trans, session_dir) as store:
        store.get_session(0)
        store.expire_session()
        fresh = store.get_session(1)
        assert fresh.session_id != session_id and fresh == {}
        fresh["flash"] = "bye"
    assert load(session_dir, session_id) is None
    assert load(session_dir, fresh.session_id) == {"flash": "bye"}
    assert trans.cookies["SID"] == fresh.session_id  # the new cookie, not a deletion


def test_expire_without_cookie_is_harmless(make_store):
    trans = Transaction()
    store = make_store(trans)
    store.expire_session()
    store.close()
    assert trans.events == [("delete", "SID")]


def _hold_session(session_dir, session_id, seconds, value):
    def body(ready):
        with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
            store.get_session(0)["n"] = value
            os.write(ready, b"L")
            time.sleep(seconds)

    return fork_child(body)


def test_underscore_expire_session_waits_for_the_editor(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    pid, ready = _hold_session(session_dir, session_id, 0.5, 2)
    wait_for_byte(ready)
    store = SessionStore(Transaction(), session_dir, timeout=10)
    started = time.monotonic()
    store._expire_session(session_id)
    assert time.monotonic() - started > 0.3  # it waited for the holder's commit
    assert session_files(session_dir) == []  # and then deleted what the holder wrote
    wait_ok(pid)


def test_timeout_raises_lock_timeout_while_another_process_edits(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    pid, ready = _hold_session(session_dir, session_id, 1.0, 2)
    wait_for_byte(ready)
    store = SessionStore(Transaction({"SID": session_id}), session_dir, timeout=0.2)
    with pytest.raises(LockTimeout):
        store.get_session(0)
    assert isinstance(LockTimeout("x"), SessionError)
    wait_ok(pid)
    assert load(session_dir, session_id) == {"n": 2}


# -- _get_session and ids -----------------------------------------------------


def test_underscore_get_session_loads_locks_and_creates(session_dir, make_store):
    session_id, _ = store_session(session_dir, {"a": 1})
    store = make_store()
    assert store._get_session(session_id, 0) == {"a": 1}
    assert os.path.exists(session_path(session_dir, session_id) + ".lock")
    other = make_store()
    new_id = fastsession.new_session_id()
    assert other._get_session(new_id, 0) is None
    assert other._get_session(new_id, 1) == {}


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a" * 42, "a" * 42 + "\n", ""])
def test_underscore_get_session_rejects_invalid_ids(make_store, bad, session_dir):
    with pytest.raises(ValueError):
        make_store()._get_session(bad, 1)
    assert session_files(session_dir) == []


def test_get_session_identifier_is_43_base64url_characters(make_store):
    ids = {make_store()._get_session_identifier() for _ in range(100)}
    assert len(ids) == 100 and all(ID.fullmatch(i) for i in ids)


# -- regenerate_id --------------------------------------------------------------


def test_regenerate_id_moves_the_data_and_deletes_the_old_id(session_dir):
    old_id, _ = store_session(session_dir, {"cart": [1]})
    trans = Transaction({"SID": old_id})
    with SessionStore(trans, session_dir) as store:
        session = store.get_session(0)
        session["user"] = "ann"
        new_id = store.regenerate_id()
        assert session.session_id == new_id != old_id and ID.fullmatch(new_id)
    assert trans.events == [("set", "SID", new_id)]
    assert load(session_dir, old_id) is None
    assert load(session_dir, new_id) == {"cart": [1], "user": "ann"}


def test_regenerate_id_of_an_unchanged_session_still_stores_it(session_dir):
    old_id, _ = store_session(session_dir, {"cart": [1]})
    with SessionStore(Transaction({"SID": old_id}), session_dir) as store:
        new_id = store.regenerate_id()
    assert load(session_dir, new_id) == {"cart": [1]}
    assert session_files(session_dir) == [stored_relpath(new_id)]


def test_regenerate_id_rolled_back_keeps_the_old_session(session_dir):
    old_id, _ = store_session(session_dir, {"cart": [1]})
    with pytest.raises(RuntimeError):
        with SessionStore(Transaction({"SID": old_id}), session_dir) as store:
            store.regenerate_id()
            raise RuntimeError("login failed")
    assert load(session_dir, old_id) == {"cart": [1]}
    assert session_files(session_dir) == [stored_relpath(old_id)]


# -- context manager ------------------------------------------------------------


def test_exception_in_with_rolls_back_and_releases(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    with pytest.raises(ZeroDivisionError):
        with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
            store.get_session(0)["n"] = 99
            raise ZeroDivisionError("the view fails")
    assert not os.path.exists(session_path(session_dir, session_id) + ".lock")
    assert load(session_dir, session_id) == {"n": 1}


def test_exception_in_with_does_not_expire(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1})
    trans = Transaction({"SID": session_id})
    with pytest.raises(KeyError):
        with SessionStore(trans, session_dir) as store:
            store.expire_session()
            raise KeyError("boom")
    assert load(session_dir, session_id) == {"n": 1}
    assert trans.events == []


# -- values orjson cannot encode ------------------------------------------------


@pytest.mark.parametrize(
    "value, words",
    [(object(), "object"), (2**70, "cart"), ({1: "x"}, "cart"), ({1, 2}, "set")],
)
def test_unencodable_value_raises_at_close_keeps_data_and_releases(session_dir, value, words):
    session_id, _ = store_session(session_dir, {"cart": [1]})
    store = SessionStore(Transaction({"SID": session_id}), session_dir)
    store.get_session(0)["cart"] = value
    with pytest.raises(SerializationError, match="cart") as info:
        store.close()
    assert words in str(info.value)
    assert isinstance(info.value, TypeError)
    assert load(session_dir, session_id) == {"cart": [1]}  # what was stored is kept
    assert not os.path.exists(session_path(session_dir, session_id) + ".lock")


def test_non_str_top_level_key_is_named(session_dir, make_store):
    store = make_store()
    store.get_session(1)[7] = "x"
    with pytest.raises(SerializationError, match="7"):
        store.close()
    assert session_files(session_dir) == []


def test_serialization_error_in_with_block_exit(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    with pytest.raises(SerializationError):
        with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
            store.get_session(0)["a"] = object()
    assert load(session_dir, session_id) == {"a": 1}


# -- corrupt files ---------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"garbage", b'FSv1 h b 1 1\n{"a":', b"FSv1 h b 1 1\n[1]"])
def test_corrupt_session_counts_as_absent_and_is_logged(session_dir, caplog, content):
    session_id, _ = store_session(session_dir, {"a": 1})
    with open(session_path(session_dir, session_id), "wb") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert load(session_dir, session_id) is None
    assert any(r.name == "fastsession.files" and r.levelno == logging.WARNING for r in caplog.records)
    trans = Transaction({"SID": session_id})
    with SessionStore(trans, session_dir) as store:
        assert store.get_session(1).session_id != session_id


# -- max_age ----------------------------------------------------------------------


def age_file(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_session_older_than_max_age_counts_as_absent(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    age_file(session_path(session_dir, session_id), 120)
    trans = Transaction({"SID": session_id})
    with SessionStore(trans, session_dir, max_age=60) as store:
        assert store.get_session(0) is None
    with SessionStore(trans, session_dir, max_age=60) as store:
        assert store.get_session(1).session_id != session_id
    assert not os.path.exists(session_path(session_dir, session_id))


def test_session_within_max_age_is_kept(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    age_file(session_path(session_dir, session_id), 30)
    with SessionStore(Transaction({"SID": session_id}), session_dir, max_age=60) as store:
        assert store.get_session(0) == {"a": 1}


def test_unchanged_read_touches_only_after_a_quarter_of_max_age(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    path = session_path(session_dir, session_id)
    age_file(path, 10)  # less than 100 / 4
    before = os.stat(path).st_mtime
    with SessionStore(Transaction({"SID": session_id}), session_dir, max_age=100) as store:
        store.get_session(0)
    assert os.stat(path).st_mtime == before
    age_file(path, 30)  # more than 100 / 4
    with SessionStore(Transaction({"SID": session_id}), session_dir, max_age=100) as store:
        store.get_session(0)
    assert time.time() - os.stat(path).st_mtime < 5


def test_an_unchanged_read_touches_after_a_quarter_of_max_age_with_max_lifetime_set_too(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1}, max_lifetime=3600)
    path = session_path(session_dir, session_id)
    age_file(path, 30)  # more than 100 / 4
    with SessionStore(Transaction({"SID": session_id}), session_dir, max_age=100, max_lifetime=3600) as store:
        store.get_session(0)
    assert time.time() - os.stat(path).st_mtime < 5


# -- files on disk --------------------------------------------------------------


def test_files_are_private_and_sharded(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    path = session_path(session_dir, session_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert session_files(session_dir) == [stored_relpath(session_id)]


def test_symlink_planted_as_a_session_is_never_followed(session_dir, tmp_path, caplog):
    session_id, _ = store_session(session_dir, {"a": 1})
    target = tmp_path / "secret"
    target.write_bytes(b'FSv1 h b 1 1\n{"secret":1}')
    os.unlink(session_path(session_dir, session_id))
    os.symlink(target, session_path(session_dir, session_id))
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert load(session_dir, session_id) is None  # absent, like any unusable session file
    assert "symbolic link" in caplog.text
    trans = Transaction({"SID": session_id})
    with SessionStore(trans, session_dir) as store:
        fresh = store.get_session(1)
        fresh["mine"] = 1
    assert fresh.session_id != session_id
    assert target.read_bytes() == b'FSv1 h b 1 1\n{"secret":1}'  # never read, never written


def test_concurrent_zero_takes_no_lock_and_commits_atomically(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1}, concurrent=0)
    with SessionStore(Transaction({"SID": session_id}), session_dir, concurrent=0) as store:
        store.get_session(0)["n"] = 2
        assert session_files(session_dir) == [stored_relpath(session_id)]  # no lockfile
    assert load(session_dir, session_id) == {"n": 2}
    assert session_files(session_dir) == [stored_relpath(session_id)]  # no temp file left


def test_fsync_store_round_trips(session_dir):
    session_id, _ = store_session(session_dir, {"n": 1}, fsync=True)
    assert load(session_dir, session_id) == {"n": 1}


def test_permission_denied_on_the_directory_raises_at_once(traversable_tmp):
    directory = os.path.join(traversable_tmp, "sessions")
    os.mkdir(directory, 0o555)

    def write_a_session():
        with SessionStore(Transaction(), directory) as store:
            store.get_session(1)["a"] = 1

    assert raises_at_once_as_nobody(
        write_a_session, PermissionError, lambda exc: directory in os.fsdecode(exc.filename)
    )
    assert os.listdir(directory) == []


def test_session_directory_removed_while_serving_is_made_again(session_dir):
    import shutil

    store_session(session_dir, {"a": 1})
    shutil.rmtree(session_dir)
    session_id, _ = store_session(session_dir, {"b": 2})
    assert load(session_dir, session_id) == {"b": 2}
    assert stat.S_IMODE(os.stat(session_dir).st_mode) == 0o700


def test_store_holds_one_session_at_a_time(session_dir, make_store):
    a, _ = store_session(session_dir, {"a": 1})
    b, _ = store_session(session_dir, {"b": 1})
    store = make_store()
    store._get_session(a, 0)
    with pytest.raises(SessionError):
        store._get_session(b, 0)


def test_backend_names_lists_the_stored_names_of_stored_sessions_only(session_dir):
    a, _ = store_session(session_dir, {"a": 1})
    b, _ = store_session(session_dir, {"b": 1})
    store = SessionStore(Transaction({"SID": a}), session_dir)
    store.get_session(0)  # a lockfile now sits beside a
    open(session_path(session_dir, b) + ".0123456789abcdef.tmp", "wb").close()
    assert sorted(store.backend.names()) == sorted(os.path.basename(stored_relpath(i)).encode() for i in (a, b))
    store.close()


# -- a holder that outlived its lock (broken after stale_after by another host) ------


def break_and_retake(session_dir, session_id):
    lock = session_path(session_dir, session_id) + ".lock"
    os.unlink(lock)
    with open(lock, "wb") as f:
        f.write(b"FSv1 the-new-holder\n")
    return lock


def stored_data(session_dir, session_id):
    """The session file's data, read without a store (which would wait for the lock)."""
    with open(session_path(session_dir, session_id), "rb") as f:
        return json.loads(f.read().partition(b"\n")[2])


def test_late_holder_commit_raises_and_leaves_the_new_holders_lock_and_data(session_dir):
    session_id, trans = store_session(session_dir, {"n": 1})
    store = SessionStore(trans, session_dir)
    store.get_session(False)["n"] = 99
    lock = break_and_retake(session_dir, session_id)
    with pytest.raises(SessionError, match="broken"):
        store.close()
    assert stored_data(session_dir, session_id)["n"] == 1  # nothing written
    assert open(lock, "rb").read() == b"FSv1 the-new-holder\n"


def test_late_holder_expiry_deletes_nothing(session_dir):
    session_id, trans = store_session(session_dir, {"n": 1})
    store = SessionStore(trans, session_dir)
    store.get_session(False)
    store.expire_session()
    lock = break_and_retake(session_dir, session_id)
    with pytest.raises(SessionError, match="broken"):
        store.close()
    assert stored_data(session_dir, session_id)["n"] == 1  # the new holder's session survives
    assert open(lock, "rb").read() == b"FSv1 the-new-holder\n"


def test_late_holder_rollback_leaves_the_new_holders_lock(session_dir):
    session_id, trans = store_session(session_dir, {"n": 1})
    store = SessionStore(trans, session_dir)
    store.get_session(False)
    lock = break_and_retake(session_dir, session_id)
    store.rollback()
    assert open(lock, "rb").read() == b"FSv1 the-new-holder\n"


@pytest.mark.parametrize("plant", ["fifo", "directory"])
def test_what_is_not_a_regular_file_counts_as_absent_and_is_logged(session_dir, caplog, plant):
    session_id, _ = store_session(session_dir, {"a": 1})
    path = session_path(session_dir, session_id)
    os.unlink(path)
    os.mkfifo(path) if plant == "fifo" else os.mkdir(path)
    # A folder is the mark revoke_held leaves (files.py): logged at INFO, a FIFO as a warning.
    with caplog.at_level(logging.WARNING if plant == "fifo" else logging.INFO, logger="fastsession"):
        assert load(session_dir, session_id) is None  # never blocks, never raises
    said = "not a regular file" if plant == "fifo" else f"{path} is a folder, the mark of a revoked session"
    assert said in caplog.text


def test_stores_of_one_directory_and_options_share_one_backend_and_the_table_stays_bounded(
    session_dir, tmp_path, monkeypatch
):
    from fastsession import store as store_module

    monkeypatch.setattr(store_module, "_backends", {})  # not the one earlier tests filled
    first = SessionStore(Transaction(), session_dir).backend
    assert SessionStore(Transaction(), session_dir).backend is first  # made once, not per request
    slower = SessionStore(Transaction(), session_dir, delay=0.5).backend
    assert slower is not first and slower.delay == 0.5  # other options: another backend
    assert SessionStore(Transaction(), session_dir).backend is first
    monkeypatch.chdir(tmp_path)
    assert (
        SessionStore(Transaction(), "here").backend is not SessionStore(Transaction(), "here").backend
    )  # after a chdir
    sizes = []
    for i in range(100):
        SessionStore(Transaction(), str(tmp_path / f"app{i}"))
        sizes.append(len(store_module._backends))
    assert max(sizes) == 64  # never more, and it is used up to there before it starts over
    per_directory = []
    for i in range(20):
        SessionStore(Transaction(), session_dir, delay=i + 1)
        per_directory.append(len(store_module._backends[session_dir]))
    assert max(per_directory) == 8  # at most 8 option sets for one directory, used up before starting over
    assert SessionStore(Transaction(), session_dir, delay=20).backend.delay == 20


def test_a_transaction_whose_get_cookie_returns_a_string_is_a_clear_error(session_dir):
    class StringCookies:  # the mistake: the value itself instead of an object with .value
        def get_cookie(self, name):
            return "A" * 43

        def set_cookie_value(self, name, value):
            raise AssertionError("no new session may be made for it")

        def delete_cookie(self, name):
            pass

    store = fastsession.SessionStore(StringCookies(), session_dir)
    with pytest.raises(TypeError, match=r"get_cookie\(\) must return None or an object with \.value.*not str$") as info:
        store.get_session(True)
    assert str(info.value) == (
        "trans.get_cookie() must return None or an object with .value (WebStack's Cookie; "
        "fastsession.wsgi.Cookie), not str"
    )
    store.rollback()


# -- mutants a mutation run of store.py left (tools/mutation-survivors.md) --------------------------


def test_get_session_by_id_with_create_makes_that_id_not_a_fresh_one(session_dir):
    # WebStack's _get_session(id, create): an absent id is created under that very id (get_session, by
    # cookie, never adopts one: a fresh id instead).
    wanted = fastsession.new_session_id()
    with fastsession.SessionStore(Transaction(), session_dir) as store:
        session = store._get_session(wanted, True)
        assert session.session_id == wanted
        session["n"] = 1
    with fastsession.SessionStore(Transaction({"SID": wanted}), session_dir) as store:
        assert store.get_session(False) == {"n": 1}


def test_get_session_by_id_on_a_store_that_holds_another_says_so(session_dir):
    with fastsession.SessionStore(Transaction(), session_dir) as store:
        store.get_session(True)
        with pytest.raises(
            fastsession.SessionError,
            match=r"^this store already holds another session; close\(\) it before opening one more$",
        ):
            store._get_session(fastsession.new_session_id(), True)


def test_expire_session_by_id_deletes_it_under_its_lock(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    with fastsession.SessionStore(Transaction(), session_dir) as store:
        store._expire_session(sid)
    assert session_files(session_dir) == []
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        assert store.get_session(False) is None


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_a_store_says_which_locking_it_was_made_with(session_dir, locking):
    with SessionStore(Transaction(), session_dir, locking=locking) as store:
        assert store.locking == locking


@pytest.mark.parametrize("locking", ["request", "commit"])
def test_expire_session_by_id_of_the_session_in_hand_deletes_it(session_dir, locking):
    sid, _ = store_session(session_dir, {"n": 1})
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir, locking=locking) as store:
        store.get_session(False)
        store._expire_session(sid)  # its own: never waits on itself (request locking: its lock is held)
    assert session_files(session_dir) == []


def test_read_only_after_the_session_is_locked_says_so(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    with fastsession.SessionStore(Transaction({"SID": sid}), session_dir) as store:
        store.get_session(False)
        with pytest.raises(
            fastsession.SessionError,
            match=r"^read_only\(\) comes before get_session\(\): the session is locked already$",
        ):
            store.read_only()


def test_max_size_of_one_byte_is_allowed_and_refuses_any_session(session_dir):
    with fastsession.SessionStore(Transaction(), session_dir, max_size=1) as store:
        store.get_session(True)["a"] = 1
        with pytest.raises(fastsession.SessionTooLarge):
            store.close()


def test_the_too_large_error_names_the_three_largest_keys(session_dir):
    store = fastsession.SessionStore(Transaction(), session_dir, max_size=40)
    session = store.get_session(True)
    session.update({"small": 1, "big": "x" * 30, "bigger": "y" * 40, "biggest": "z" * 50})
    with pytest.raises(fastsession.SessionTooLarge) as caught:
        store.close()
    assert "largest keys: 'biggest' (52 bytes), 'bigger' (42 bytes), 'big' (32 bytes); nothing was written" in str(
        caught.value
    )


def test_an_unencodable_value_is_named_with_its_type(session_dir):
    store = fastsession.SessionStore(Transaction(), session_dir)
    store.get_session(True)["when"] = {1, 2}
    with pytest.raises(fastsession.SerializationError) as caught:
        store.close()
    assert str(caught.value).startswith("session value for key 'when' (set) cannot be stored: ")


def test_regenerate_id_on_a_request_without_a_session_makes_one(session_dir):
    trans = Transaction()
    with fastsession.SessionStore(trans, session_dir) as store:
        new_id = store.regenerate_id()
        session = store.get_session(False)
        assert session is not None and session.session_id == new_id
        session["n"] = 1
    assert trans.cookies["SID"] == new_id
    with fastsession.SessionStore(Transaction({"SID": new_id}), session_dir) as store:
        assert store.get_session(False) == {"n": 1}


def test_rollback_closes_the_store_and_an_expiry_it_undid_still_drops_the_cookie(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    store = fastsession.SessionStore(Transaction({"SID": sid}), session_dir)
    store.get_session(False)
    store.expire_session()
    store.rollback()
    assert store.closed
    assert store.response_cookie() == ""
    with pytest.raises(fastsession.SessionError, match="closed"):
        store.get_session(True)


def test_a_session_of_exactly_max_size_bytes_is_stored(session_dir):
    size = len(b'{"a":1}')  # its encoding: no metadata to store beside it
    with fastsession.SessionStore(Transaction(), session_dir, max_size=size) as store:
        store.get_session(True)["a"] = 1  # stored: at the limit, not over it
    with fastsession.SessionStore(Transaction(), session_dir, max_size=size - 1) as store:
        store.get_session(True)["a"] = 1
        with pytest.raises(fastsession.SessionTooLarge):
            store.close()
    assert len([f for f in session_files(session_dir) if not f.endswith(".lock")]) == 1


def test_serialization_error_keeps_orjsons_error_as_its_cause(session_dir):
    import orjson

    store = fastsession.SessionStore(Transaction(), session_dir)
    store.get_session(True)["when"] = object()
    with pytest.raises(fastsession.SerializationError) as caught:
        store.close()
    assert isinstance(caught.value.__cause__, orjson.JSONEncodeError)


def test_after_close_a_request_mode_store_says_no_cookie_for_what_it_did_not_store(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    unchanged = fastsession.SessionStore(Transaction({"SID": sid}), session_dir)
    unchanged.get_session(False)
    unchanged.close()
    empty = fastsession.SessionStore(Transaction(), session_dir)
    empty.get_session(True)
    empty.close()
    refused = fastsession.SessionStore(Transaction({"SID": sid}), session_dir)
    refused.get_session(False)["bad"] = object()
    with pytest.raises(fastsession.SerializationError):
        refused.close()
    assert [store.response_cookie() for store in (unchanged, empty, refused)] == [None, None, None]


def test_a_negative_max_lifetime_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^max_lifetime must be a positive number of seconds, not -1$"):
        fastsession.SessionStore(Transaction(), "/nonexistent-is-fine-here", max_lifetime=-1)


def test_a_session_too_deep_as_a_whole_names_orjsons_reason(session_dir):
    """Each value encodes alone, the session does not (orjson's depth limit): the error says what orjson said."""
    deep = []
    for _ in range(254):
        deep = [deep]
    session_id, _ = store_session(session_dir, {"a": 1})
    store = SessionStore(Transaction({"SID": session_id}), session_dir)
    store.get_session(0)["deep"] = deep
    with pytest.raises(SerializationError) as info:
        store.close()
    assert str(info.value).startswith("session cannot be stored: ") and "recursion" in str(info.value).lower()
    assert load(session_dir, session_id) == {"a": 1}


def test_a_rollback_whose_release_fails_says_so(session_dir):
    """Every lock is let go and the first error is raised: here the shard folder became a file under it."""
    sid, _ = store_session(session_dir, {"n": 1})
    shard = os.path.dirname(session_path(session_dir, sid))
    store = SessionStore(Transaction({"SID": sid}), session_dir)
    store.get_session(False)["n"] = 2
    os.rename(shard, shard + ".away")
    with open(shard, "wb") as f:
        f.write(b"a file where the shard was")
    with pytest.raises(NotADirectoryError):
        store.rollback()
    assert store.closed


def test_a_regenerated_session_whose_commit_fails_keeps_the_old_one(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    store = SessionStore(Transaction({"SID": sid}), session_dir)
    store.get_session(False)["bad"] = object()
    store.regenerate_id()
    with pytest.raises(SerializationError):
        store.close()
    assert load(session_dir, sid) == {"n": 1}  # the old id still holds what was stored


def test_commit_mode_regenerate_of_a_session_emptied_deletes_the_old_and_stores_nothing(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    store = SessionStore(Transaction({"SID": sid}), session_dir, locking="commit")
    store.get_session(False).clear()
    new_id = store.regenerate_id()
    store.close()
    assert load(session_dir, sid) is None and load(session_dir, new_id) is None
    assert session_files(session_dir) == []
