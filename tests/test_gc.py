"""gc: what it removes, what it never removes, and running it beside live traffic."""

import os
import pty
import subprocess
import sys
import time

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


# -- edges a mutation run found no test for ---------------------------------------------------------------


def test_a_dry_run_judges_an_expired_sessions_lock_by_the_stale_after_it_was_given(session_dir, three):
    """Another host's lock, 10 s old, on an expired session: stale after 5 s, held under the default 30 s."""
    old1, old2, _ = three
    for sid in (old1, old2):
        plant(session_dir, sid, b"FSv1 web-9/1 boot 42 7\n", 10)
    assert collect(session_dir, 3600, dry_run=True).removed == 0  # held by the default rule
    counts = collect(session_dir, 3600, dry_run=True, stale_after=5)
    assert (counts.removed, counts.kept) == (2, 1)
    assert os.path.exists(path_of(session_dir, old1)) and os.path.exists(path_of(session_dir, old2))


def test_sessions_written_after_gc_decided_are_each_counted_kept(session_dir, monkeypatch):
    import fastsession.gc as gc_module

    ids = [store_session(session_dir, {"a": 1})[0] for _ in range(2)]
    for sid in ids:
        age(path_of(session_dir, sid), 7200)
    real_acquire = None

    class WrittenMeanwhile(gc_module.FileBackend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            nonlocal real_acquire
            real = self.kernels
            real_acquire = real.acquire

            class Kernels:
                def __getattr__(self, name):
                    return getattr(real, name)

                def acquire(self, lock_path, *args):
                    os.utime(lock_path[: -len(b".lock")])  # a request wrote it meanwhile
                    return real.acquire(lock_path, *args)

            self.kernels = Kernels()

    monkeypatch.setattr(gc_module, "FileBackend", WrittenMeanwhile)
    counts = collect(session_dir, 3600)
    assert (counts.removed, counts.kept) == (0, 2)


def test_a_symlink_in_a_shard_is_judged_by_itself_and_its_target_is_never_touched(session_dir, tmp_path):
    sid, _ = store_session(session_dir, {"a": 1})
    target = tmp_path / "outside"
    target.write_bytes(b"x" * 5000)
    old = time.time() - 7200
    os.utime(target, (old, old))
    link = path_of(session_dir, sid)
    os.unlink(link)
    os.symlink(target, link)  # a planted link, fresh itself, to an old file
    assert collect(session_dir, 3600, dry_run=True).removed == 0
    os.utime(link, (old, old), follow_symlinks=False)  # now the link is old, its target fresh
    os.utime(target)
    counts = collect(session_dir, 3600, dry_run=True)
    assert counts.removed == 1 and counts.bytes_freed == len(os.fsencode(str(target)))  # the link's own size
    counts = collect(session_dir, 3600)
    assert counts.removed == 1 and counts.bytes_freed == len(os.fsencode(str(target)))
    assert not os.path.lexists(link) and target.read_bytes() == b"x" * 5000


def test_the_index_sweep_counts_every_entry_of_every_user_and_keeps_young_ones(session_dir):
    from fastsession.users import GRACE, user_hash

    index = os.path.join(session_dir, ".users")
    gone = []
    for user in ("ann", "bob"):
        folder = os.path.join(index, user_hash(user))
        os.makedirs(folder, mode=0o700)
        for number in range(2):
            entry = os.path.join(folder, stored_relpath(f"{user}-{number}-" + "x" * 30)[3:])
            with open(entry, "wb") as f:
                f.write(holder_record() + b"{}")
            os.utime(entry, (time.time() - GRACE - 5, time.time() - GRACE - 5))
            gone.append(entry)
        young = os.path.join(folder, stored_relpath(f"{user}-young-" + "y" * 30)[3:])
        with open(young, "wb") as f:
            f.write(holder_record() + b"{}")
        os.utime(young, (time.time() - GRACE + 5, time.time() - GRACE + 5))  # a commit about to land
        with open(os.path.join(folder, "not-a-name"), "wb") as f:
            f.write(b"")
    counts = collect(session_dir, 3600, dry_run=True)
    assert counts.index_entries_removed == 4 and all(os.path.exists(e) for e in gone)
    counts = collect(session_dir, 3600)
    assert counts.index_entries_removed == 4 and not any(os.path.exists(e) for e in gone)
    assert sorted(len(os.listdir(os.path.join(index, user_hash(u)))) for u in ("ann", "bob")) == [2, 2]


def test_the_summary_says_what_was_done_or_would_be():
    from fastsession.gc import Collected, summary

    counts = Collected(
        scanned=5, removed=2, kept=3, bytes_freed=10, locks_removed=1, temps_removed=1, index_entries_removed=2
    )
    counts.errors.append("x: boom")
    assert summary(counts, 1.25, False) == (
        "scanned 5 sessions in 1.2 s: removed 2 expired, kept 3; removed 1 stale locks and 1 leftover temp files; "
        "freed 10 bytes; 1 errors; removed 2 user index entries of sessions gone\n  error: x: boom"
    )
    assert summary(Collected(), 0.0, True) == (
        "scanned 0 sessions in 0.0 s: would remove 0 expired, kept 0; would remove 0 stale locks and 0 "
        "leftover temp files; would free 0 bytes; 0 errors"
    )


def test_the_progress_bar_shows_rate_and_an_eta_from_the_shards_left():
    import io

    from fastsession.gc import Collected, ProgressBar

    out = io.StringIO()
    bar = ProgressBar(out)
    bar.started -= 10.0  # ten seconds in
    bar(2, 4, Collected(scanned=500))
    line = out.getvalue()
    assert "2/4 shards" in line and "500 sessions" in line and "ETA 10 s" in line and "50/s" in line
    fresh = ProgressBar(io.StringIO())
    fresh(1, 2, Collected())  # a moment in: no time measured yet, an ETA of nothing
    assert "ETA 0 s" in fresh.stream.getvalue()
    bar(4, 4, Collected(scanned=2000))
    assert out.getvalue().endswith("\n")


def test_stale_locks_only_removes_nothing_else_even_given_a_max_age(session_dir, three):
    old1, old2, fresh = three
    counts = collect(session_dir, 3600, stale_locks_only=True)
    assert (counts.removed, counts.scanned) == (0, 0)
    assert [load(session_dir, sid) for sid in (old1, old2, fresh)] == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_with_no_event_handler_gc_reads_no_session(session_dir, three, monkeypatch):
    import fastsession.gc as gc_module

    def read(*args):
        raise AssertionError("gc read a session for an event nobody listens to")

    monkeypatch.setattr(gc_module, "_user_of", read)
    assert collect(session_dir, 3600).removed == 2


def test_what_gc_cannot_read_is_reported_by_path_and_the_rest_is_done(tmp_path):
    """As an unprivileged user (root reads anything): a shard and a user's index folder it may not list."""
    import json

    from helpers import fork_child, run_as_nobody, wait_ok

    def child(report):
        run_as_nobody()
        import tempfile

        directory = os.path.join(tempfile.mkdtemp(), "sessions")
        ids = [store_session(directory, {"n": n})[0] for n in range(6)]
        for sid in ids:
            age(path_of(directory, sid), 7200)
        with SessionStore(Transaction(), directory) as store:
            store.get_session(True)["n"] = 1
            store.bind_user("ann")
        shut = os.path.dirname(path_of(directory, ids[0]))
        unsearchable = next(  # listable, but what is in it cannot be looked at
            os.path.dirname(path_of(directory, sid)) for sid in ids[1:] if not path_of(directory, sid).startswith(shut)
        )
        users = os.path.join(directory, ".users")
        user = os.path.join(users, os.listdir(users)[0])
        os.chmod(shut, 0)
        os.chmod(unsearchable, 0o400)
        os.chmod(user, 0)
        first = collect(directory, 3600)
        os.chmod(unsearchable, 0o700)
        os.chmod(user, 0o700)
        os.chmod(users, 0)
        second = collect(directory, 3600)
        os.chmod(users, 0o700)
        os.chmod(shut, 0o700)
        found = {"shut": shut, "user": user, "users": users, "first": first.errors, "second": second.errors}
        found["unsearchable"] = unsearchable
        found["blocked"] = sum(os.path.dirname(path_of(directory, sid)) in (shut, unsearchable) for sid in ids)
        found["removed"] = first.removed
        found["left"] = sum(os.path.exists(path_of(directory, sid)) for sid in ids)
        os.write(report, json.dumps(found).encode())

    pid, report = fork_child(child)
    wait_ok(pid)
    found = json.loads(os.read(report, 65536))
    first = sorted(found["first"])  # each error names what could not be read, then why
    inside = [e for e in first if e.startswith(found["unsearchable"] + "/")]  # each entry it could not look at
    assert inside and all(e.partition(": ")[0].startswith(found["unsearchable"] + "/") for e in inside)
    rest = [e.partition(": ")[0] for e in first if e not in inside]
    assert rest == sorted([found["shut"], found["user"]])
    assert all("Permission denied" in e for e in first)
    assert found["second"][-1].startswith(found["users"] + ": ") and "Permission denied" in found["second"][-1]
    assert found["removed"] == 6 - found["blocked"]  # every expired session but those it could not read


def test_the_mark_of_a_revoked_session_is_removed_once_old_and_reported_as_no_error(session_dir):
    from fastsession.files import FileBackend
    from fastsession.names import stored_name
    from fastsession.users import user_hash

    with SessionStore(Transaction(), session_dir) as store:
        store.get_session(True)["user"] = "ann"
        store.bind_user("ann")
        sid = store.get_session(True).session_id
    backend = FileBackend(session_dir)
    handle = backend.open(sid)  # a request holds it...
    assert backend.revoke_held(stored_name(sid), user_hash("ann"))  # ...when it is revoked: a mark
    backend.release(handle)  # that request ends; nobody comes back for the name
    mark = path_of(session_dir, sid)
    assert os.path.isdir(mark)
    assert (collect(session_dir, 3600).removed, os.path.isdir(mark)) == (0, True)  # young: kept
    age(mark, 7200)
    counts = collect(session_dir, 3600, dry_run=True)
    assert (counts.removed, counts.bytes_freed, counts.errors, os.path.isdir(mark)) == (1, 0, [], True)
    counts = collect(session_dir, 3600)
    assert (counts.removed, counts.bytes_freed, counts.errors) == (1, 0, [])
    assert not os.path.lexists(mark)


def test_the_index_sweep_never_follows_a_symlink_out_of_the_index(session_dir, tmp_path):
    """A storage writer's link in .users/ to another folder: gc never removes what lies there."""
    from fastsession.names import stored_name
    from fastsession.users import GRACE

    store_session(session_dir, {"a": 1})
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / stored_name("x" * 43)  # named like an entry whose session is gone
    victim.write_bytes(b"precious")
    os.utime(victim, (time.time() - GRACE - 60, time.time() - GRACE - 60))
    os.makedirs(os.path.join(session_dir, ".users"), mode=0o700, exist_ok=True)
    os.symlink(outside, os.path.join(session_dir, ".users", stored_name("y" * 43)))
    assert collect(session_dir, 3600).index_entries_removed == 0
    assert victim.read_bytes() == b"precious"


def test_a_symlink_named_like_a_temp_file_is_judged_by_its_own_age(session_dir, tmp_path):
    sid, _ = store_session(session_dir, {"a": 1})
    target = tmp_path / "old"
    target.write_bytes(b"x")
    os.utime(target, (time.time() - 7200, time.time() - 7200))
    link = path_of(session_dir, sid) + ".1234.tmp"
    os.symlink(target, link)  # the link itself was just made
    assert collect(session_dir, 3600).temps_removed == 0 and os.path.lexists(link)
    age(link, 7200)
    assert collect(session_dir, 3600).temps_removed == 1 and not os.path.lexists(link) and target.exists()
