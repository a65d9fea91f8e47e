"""gc: what it removes, what it never removes, and running it beside live traffic."""

import os
import pty
import subprocess
import sys

import pytest
from conftest import Transaction, session_files, store_session
from helpers import age, fork_child, hold_in_new_pid_namespace, hold_until_killed, kill_and_reap, stored_relpath
from helpers import plant_lock as plant
from helpers import session_path as path_of

from fastsession import SessionStore
from fastsession._holder import BOOT, HOST, holder_record
from fastsession.gc import collect


def load(session_dir, session_id):
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=5) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


@pytest.fixture
def three(session_dir):
    """Two expired sessions and one fresh one."""
    old1, _ = store_session(session_dir, {"a": 1})
    old2, _ = store_session(session_dir, {"b": 2})
    fresh, _ = store_session(session_dir, {"c": 3})
    for sid in (old1, old2):
        age(path_of(session_dir, sid), 7200)
    return old1, old2, fresh


def test_removes_expired_sessions_and_keeps_fresh_ones(session_dir, three):
    old1, old2, fresh = three
    size = os.path.getsize(path_of(session_dir, old1)) + os.path.getsize(path_of(session_dir, old2))
    counts = collect(session_dir, 3600)
    assert (counts.scanned, counts.removed, counts.kept, counts.bytes_freed) == (3, 2, 1, size)
    assert counts["removed"] == 2
    assert session_files(session_dir) == [stored_relpath(fresh)]
    assert counts.errors == []


def test_dry_run_counts_but_removes_nothing(session_dir, three):
    before = session_files(session_dir)
    counts = collect(session_dir, 3600, dry_run=True)
    assert (counts.removed, counts.kept) == (2, 1)
    assert session_files(session_dir) == before


def test_expired_session_in_use_is_never_removed(session_dir, three):
    old1, _, _ = three

    def hold():
        store = SessionStore(Transaction({"SID": old1}), session_dir)
        store.get_session(0)
        return store

    pid = hold_until_killed(hold)
    try:
        age(path_of(session_dir, old1), 7200)
        counts = collect(session_dir, 3600)
        assert os.path.exists(path_of(session_dir, old1))  # locked by a live request: kept
        assert counts.removed == 1
    finally:
        kill_and_reap(pid)


def test_stale_lockfiles_are_removed_live_ones_kept(session_dir):
    ids = [store_session(session_dir, {"i": i})[0] for i in range(4)]
    dead = plant(session_dir, ids[0], b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))  # pid reused
    live = plant(session_dir, ids[1], holder_record(), 3600)  # this process: alive
    other = plant(session_dir, ids[2], b"FSv1 elsewhere boot 1 1\n", 10)  # another host, fresh
    unreadable = plant(session_dir, ids[3], b"", 5)  # its creator died before writing
    counts = collect(session_dir, 3600, stale_after=30)
    assert counts.locks_removed == 2
    assert not os.path.exists(dead) and not os.path.exists(unreadable)
    assert os.path.exists(live) and os.path.exists(other)
    age(other, 60)
    assert collect(session_dir, stale_locks_only=True, stale_after=30).locks_removed == 1
    assert not os.path.exists(other)


def test_stale_locks_alone_removes_nothing_else(session_dir, three):
    old1, _, _ = three
    lock = plant(session_dir, old1, b"", 5)
    before = [f for f in session_files(session_dir) if not f.endswith(".lock")]
    counts = collect(session_dir, stale_locks_only=True)
    assert counts.locks_removed == 1 and counts.removed == 0
    assert list(session_files(session_dir)) == before
    assert not os.path.exists(lock)


def test_leftover_temp_files_of_dead_writers_are_removed(session_dir):
    sid, _ = store_session(session_dir, {"a": 1})
    old_temp = path_of(session_dir, sid) + ".0123456789abcdef.tmp"
    new_temp = path_of(session_dir, sid) + ".fedcba9876543210.tmp"
    for temp in (old_temp, new_temp):
        open(temp, "wb").close()
    age(old_temp, 120)
    counts = collect(session_dir, 3600, stale_after=30)
    assert counts.temps_removed == 1
    assert not os.path.exists(old_temp) and os.path.exists(new_temp)  # may be a commit in flight


def test_missing_directory_is_an_error_not_a_new_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        collect(str(tmp_path / "absent"), 60)
    assert not (tmp_path / "absent").exists()


def gc_command(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "fastsession", "gc", *args], text=True, capture_output=True, cwd="/", **kwargs
    )


def test_cli_prints_a_summary(session_dir, three):
    done = gc_command(session_dir, "--max-age", "3600", "--quiet")
    assert done.returncode == 0
    assert "scanned 3 sessions" in done.stdout and "removed 2 expired" in done.stdout
    assert "kept 1" in done.stdout and "0 errors" in done.stdout
    assert done.stderr == ""  # no progress bar: not a terminal (and --quiet)


def test_cli_dry_run_and_usage_errors(session_dir, three, tmp_path):
    done = gc_command(session_dir, "--max-age", "3600", "--dry-run")
    assert "would remove 2 expired" in done.stdout
    assert "would free" in done.stdout and "bytes freed" not in done.stdout
    assert len(session_files(session_dir)) == 3
    assert gc_command(session_dir).returncode == 2  # no --max-age
    assert gc_command(str(tmp_path / "absent"), "--max-age", "1").returncode == 2


@pytest.mark.parametrize("age", ["-5", "0", "nan"])
def test_cli_refuses_a_max_age_that_is_not_positive(session_dir, three, age):
    done = gc_command(session_dir, "--max-age", age)
    assert done.returncode == 2 and "positive" in done.stderr
    assert len(session_files(session_dir)) == 3  # nothing wiped
    with pytest.raises(ValueError, match="positive"):
        collect(session_dir, float(age))


def test_dry_run_removes_no_stale_lockfile(session_dir, three):
    old1, _, _ = three
    lock = plant(session_dir, old1, b"", 5)  # stale: its creator died before writing
    for stale_locks_only in (False, True):
        counts = collect(
            session_dir, None if stale_locks_only else 3600, dry_run=True, stale_locks_only=stale_locks_only
        )
        assert counts.locks_removed == 1  # counted...
        assert os.path.exists(lock)  # ...never removed


def test_cli_shows_progress_with_rate_and_eta_on_a_terminal(session_dir, three):
    main, child = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "fastsession", "gc", session_dir, "--max-age", "3600"],
        stdout=subprocess.PIPE,
        stderr=child,
        cwd="/",
        text=True,
    )
    os.close(child)
    shown = os.read(main, 65536).decode()
    os.close(main)
    assert done.returncode == 0
    assert "shards" in shown and "/s" in shown and "ETA" in shown


def _increment(session_dir, ids, rounds):
    for _ in range(rounds):
        for sid in ids:
            with SessionStore(Transaction({"SID": sid}), session_dir, delay=0.005) as store:
                session = store.get_session(0)
                assert session is not None, "a live session disappeared"
                session["n"] += 1


def test_gc_in_a_loop_beside_four_writers_loses_nothing(session_dir):
    live = [store_session(session_dir, {"n": 0})[0] for _ in range(6)]
    expired = [store_session(session_dir, {"old": True})[0] for _ in range(20)]
    for sid in expired:
        age(path_of(session_dir, sid), 120)
    writers = [fork_child(lambda _: _increment(session_dir, live, 40)) for _ in range(4)]
    removed, running = 0, {pid for pid, _ in writers}
    while running:  # gc over and over while the writers work
        removed += collect(session_dir, 5).removed
        for pid in list(running):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                assert os.waitstatus_to_exitcode(status) == 0, "a writer failed"
                running.discard(pid)
    assert removed == len(expired)
    assert [load(session_dir, sid) for sid in live] == [{"n": 160}] * len(live)
    assert all(load(session_dir, sid) is None for sid in expired)


def test_session_written_after_gc_decided_is_kept(session_dir, monkeypatch):
    import fastsession.gc as gc_module

    session_id, _ = store_session(session_dir, {"a": 1})
    path = path_of(session_dir, session_id)
    age(path, 7200)

    class WrittenMeanwhile(gc_module.FileBackend):
        """A request commits between gc's look at the mtime and gc taking the lock."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            real = self.kernels

            class Kernels:
                def __getattr__(self, name):
                    return getattr(real, name)

                def acquire(self, *args):
                    store_write = SessionStore(Transaction({"SID": session_id}), session_dir)
                    store_write.get_session(0)["a"] = 2
                    store_write.close()
                    return real.acquire(*args)

            self.kernels = Kernels()

    monkeypatch.setattr(gc_module, "FileBackend", WrittenMeanwhile)
    counts = collect(session_dir, 3600)
    assert (counts.removed, counts.kept) == (0, 1)
    assert load(session_dir, session_id) == {"a": 2}


def test_expired_session_under_a_dead_holders_lock_goes_in_one_run(session_dir, three):
    old1, old2, fresh = three
    for sid in (old1, old2):
        plant(session_dir, sid, b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))  # pid reused: dead
    counts = collect(session_dir, 3600)
    assert counts.removed == 2  # gc waits for nobody (timeout=0), yet breaks a dead holder's lock
    assert not os.path.exists(path_of(session_dir, old1)) and not os.path.exists(path_of(session_dir, old2))
    assert load(session_dir, fresh) == {"c": 3}


def test_gc_never_removes_a_live_lock_held_in_another_pid_namespace(session_dir):
    sid, _ = store_session(session_dir, {"a": 1})
    lock = path_of(session_dir, sid) + ".lock"
    child = hold_in_new_pid_namespace("py", os.fsencode(lock))
    try:
        assert collect(session_dir, stale_locks_only=True).locks_removed == 0
        assert os.path.exists(lock)
    finally:
        child.kill()
        child.wait()
