"""Behaviours that mutation testing found untested: each test here kills a mutant that
passed the whole suite before (see tools/mutation.sh)."""

import errno
import os
import stat
import subprocess
import sys
import time

import pytest

from fastsession import LockTimeout, SerializationError, SessionError, SessionStore, _syscalls
from fastsession._holder import BOOT, HOST, _holder_alive, holder_record, is_stale
from fastsession.bench.contenders import twin_store
from fastsession.files import FileBackend

from conftest import Transaction, session_files, store_session
from helpers import fork_child, kill_and_reap, run_as_nobody, wait_for_byte, wait_ok


def path_of(session_dir, session_id):
    return os.path.join(session_dir, session_id[:2], session_id)


def load(session_dir, session_id):
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=5) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


# -- files are 0600 on every write path, whatever the umask -------------------------------


@pytest.fixture
def open_umask():
    old = os.umask(0)  # a server started with umask 0: only the mode we pass protects the file
    yield
    os.umask(old)


def test_unlocked_writes_create_0600_files_whatever_the_umask(kernels, tmp_path, open_umask):
    path = os.fsencode(tmp_path / "s")
    kernels.io.write_unlocked(path + b".0123.tmp", path, holder_record(), b"{}", False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_concurrent_zero_session_files_are_0600(session_dir, open_umask):
    session_id, _ = store_session(session_dir, {"a": 1}, concurrent=0)
    assert stat.S_IMODE(os.stat(path_of(session_dir, session_id)).st_mode) == 0o600


def test_lockfiles_and_commits_are_0600_whatever_the_umask(session_dir, open_umask):
    session_id, _ = store_session(session_dir, {"a": 1})
    assert stat.S_IMODE(os.stat(path_of(session_dir, session_id)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(session_dir).st_mode) == 0o700


# -- regenerate_id -------------------------------------------------------------------------


def test_failed_commit_after_regenerate_id_keeps_the_old_session(session_dir):
    old_id, _ = store_session(session_dir, {"cart": [1]})
    store = SessionStore(Transaction({"SID": old_id}), session_dir)
    store.get_session(0)["bad"] = object()  # orjson cannot encode it: the commit fails
    store.regenerate_id()
    with pytest.raises(SerializationError):
        store.close()
    assert load(session_dir, old_id) == {"cart": [1]}  # released, not deleted: the user keeps it
    assert [f for f in session_files(session_dir) if f.endswith(".lock")] == []


def test_regenerate_id_of_a_session_never_stored(session_dir):
    trans = Transaction()
    with SessionStore(trans, session_dir) as store:
        first = store.get_session(True).session_id
        store.get_session(True)["user"] = "ann"
        new_id = store.regenerate_id()
    assert new_id != first and trans.cookies["SID"] == new_id
    assert session_files(session_dir) == [os.path.join(new_id[:2], new_id)]  # no lock, no old id left
    assert load(session_dir, new_id) == {"user": "ann"}


# -- the holder check, without /proc and with malformed lines -----------------------------


def test_without_proc_a_dead_holder_is_dead():
    pid, _ = fork_child(lambda _: None)
    wait_ok(pid)  # exited and reaped: its pid names nobody
    assert _holder_alive(pid, b"-") is False


def test_without_proc_a_live_holder_is_alive_and_is_not_signalled():
    def sleeper(ready):
        os.write(ready, b"R")
        time.sleep(60)  # dies of any signal but 0: SIGHUP's default is to terminate

    pid, ready = fork_child(sleeper)
    wait_for_byte(ready)
    try:
        assert _holder_alive(pid, b"-") is True
        time.sleep(0.1)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running: the check sent no real signal
    finally:
        kill_and_reap(pid)


def test_without_proc_another_users_live_holder_is_alive():
    # As nobody, kill(pid, 0) on root's process fails with EPERM: that pid is alive.
    def body(report):
        run_as_nobody()
        os.write(report, b"Y" if _holder_alive(1, b"-") else b"N")

    pid, report = fork_child(body)
    assert wait_for_byte(report) == b"Y"
    wait_ok(pid)


@pytest.mark.parametrize("line", [
    b"FSv1 %s %s notapid 1\n" % (HOST, BOOT),  # pid not a number
    b"FSv1 %s %s 1\n" % (HOST, BOOT),  # a field missing
    b"FSv1 %s %s 1 1 extra\n" % (HOST, BOOT),  # a field too many
    b"FSv2 %s %s 1 1\n" % (HOST, BOOT),  # another format
    b"FSv1 %s %s 1 1" % (HOST, BOOT),  # no end of line: cut short while written
])
def test_a_malformed_holder_line_is_kept_for_one_second_then_broken(line):
    assert is_stale(line, 0.5, 30.0) is False
    assert is_stale(line, 1.5, 30.0) is True


def test_another_hosts_lock_is_judged_by_the_age_given():
    line = b"FSv1 elsewhere/1 boot 1 1\n"
    assert (is_stale(line, 29.0, 30.0), is_stale(line, 31.0, 30.0)) == (False, True)
    assert (is_stale(line, 4.0, 5.0), is_stale(line, 6.0, 5.0)) == (False, True)


# -- options reach the backend -----------------------------------------------------------


def test_stale_after_reaches_the_lock(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})
    lock = path_of(session_dir, session_id) + ".lock"
    with open(lock, "wb") as f:
        f.write(b"FSv1 elsewhere/1 boot 1 1\n")
    then = time.time() - 5
    os.utime(lock, (then, then))
    with pytest.raises(LockTimeout):
        SessionStore(Transaction({"SID": session_id}), session_dir, timeout=0.2).get_session(0)
    store = SessionStore(Transaction({"SID": session_id}), session_dir, timeout=2, stale_after=2)
    assert store.get_session(0) == {"a": 1}  # 5 s old, stale after 2: broken
    store.close()


@pytest.mark.parametrize("delay", [0, -1])
def test_a_delay_that_is_not_positive_is_refused(session_dir, delay):
    with pytest.raises(ValueError, match="delay"):
        SessionStore(Transaction(), session_dir, delay=delay)


def test_a_small_delay_polls_faster_than_one_second(session_dir):
    session_id, _ = store_session(session_dir, {"a": 1})

    def holder(ready):
        store = SessionStore(Transaction({"SID": session_id}), session_dir)
        store.get_session(0)
        os.write(ready, b"L")
        time.sleep(0.3)
        store.close()

    pid, ready = fork_child(holder)
    wait_for_byte(ready)
    started = time.monotonic()
    with SessionStore(Transaction({"SID": session_id}), session_dir, delay=0.001, timeout=5) as store:
        store.get_session(0)
    assert time.monotonic() - started < 0.3 + 0.2
    wait_ok(pid)


# -- symlinked shards are never walked ------------------------------------------------------


def test_keys_and_gc_never_follow_a_shard_symlinked_after_start(session_dir, tmp_path):
    from fastsession.gc import collect

    store_session(session_dir, {"a": 1})
    backend = FileBackend(session_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / ("Zz" + "x" * 41)
    victim.write_bytes(b"{}")
    then = time.time() - 7200
    os.utime(victim, (then, then))
    os.symlink(elsewhere, os.path.join(session_dir, "Zz"))
    assert all(not key.startswith("Zz") for key in backend.keys())
    with pytest.raises(SessionError, match="shard folder .*Zz.* symbolic link"):
        collect(session_dir, 3600, stale_after=30)  # gc refuses a tampered directory outright
    assert victim.exists()  # outside the session directory: never removed
    done = subprocess.run([sys.executable, "-m", "fastsession", "gc", session_dir, "--max-age", "3600"],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 2 and "symbolic link" in done.stderr and "Traceback" not in done.stderr


# -- fsync on the unlocked path, and the errno of a short write -----------------------------


def test_fsync_true_syncs_unlocked_writes_too(session_dir, monkeypatch):
    PureStore = twin_store("py")
    calls = []
    for name in ("fsync", "rename"):
        real = getattr(_syscalls, name)
        monkeypatch.setattr(_syscalls, name, lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    with PureStore(Transaction(), session_dir, concurrent=0, fsync=True) as store:
        store.get_session(True)["a"] = 1
    assert calls == ["fsync", "rename", "fsync"]  # the file before the rename, the folder after


def test_a_short_write_of_the_holder_line_is_enospc_and_leaves_no_lock(tmp_path, monkeypatch):
    from fastsession import _lock_py

    lock = os.fsencode(tmp_path / "s.lock")
    monkeypatch.setattr(_syscalls, "write", lambda fd, data: os.write(fd, data[:3]))
    with pytest.raises(OSError) as info:
        _lock_py.try_lock(lock, holder_record())
    assert info.value.errno == errno.ENOSPC and os.fsdecode(info.value.filename) == os.fsdecode(lock)
    assert not os.path.exists(lock)
