"""Behaviours that mutation testing found untested: each test here kills a mutant that
passed the whole suite before (see tools/mutation.sh)."""

import errno
import os
import re
import stat
import subprocess
import sys
import time

import pytest
from conftest import Transaction, session_files, store_session
from helpers import age, fork_child, kill_and_reap, plant_lock, run_as_nobody, stored_relpath, wait_for_byte, wait_ok
from helpers import session_path as path_of

from fastsession import LockTimeout, SerializationError, SessionError, SessionStore, _syscalls
from fastsession._holder import BOOT, HOST, _holder_alive, holder_record, is_stale
from fastsession.bench.contenders import twin_store
from fastsession.files import FileBackend


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
    assert session_files(session_dir) == [stored_relpath(new_id)]  # no lock, no old id left
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


@pytest.mark.parametrize(
    "line",
    [
        b"FSv1 %s %s notapid 1\n" % (HOST, BOOT),  # pid not a number
        b"FSv1 %s %s 1\n" % (HOST, BOOT),  # a field missing
        b"FSv1 %s %s 1 1 extra\n" % (HOST, BOOT),  # a field too many
        b"FSv2 %s %s 1 1\n" % (HOST, BOOT),  # another format
        b"FSv1 %s %s 1 1" % (HOST, BOOT),  # no end of line: cut short while written
    ],
)
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
    assert all(not name.startswith(b"Zz") for name in backend.names())
    with pytest.raises(SessionError, match="shard folder .*Zz.* symbolic link"):
        collect(session_dir, 3600, stale_after=30)  # gc refuses a tampered directory outright
    assert victim.exists()  # outside the session directory: never removed
    done = subprocess.run(
        [sys.executable, "-m", "fastsession", "gc", session_dir, "--max-age", "3600"],
        capture_output=True,
        text=True,
        cwd="/",
    )
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


# -- the holder line's fields ----------------------------------------------------------------


def test_host_field_is_one_token_with_the_namespace_after_the_only_slash():
    from fastsession._holder import host_field

    assert host_field("web 1/a", b"4026531836") == b"web_1_a/4026531836"
    assert host_field("héte", b"7") == b"h?te/7"
    assert host_field("", b"7") == b"-/7"


def test_this_host_names_the_hostname_namespace_and_boot_id():
    import socket

    from fastsession._holder import _this_host

    namespace = os.stat("/proc/self/ns/pid").st_ino
    boot = open("/proc/sys/kernel/random/boot_id", "rb").read().strip()
    assert _this_host() == (b"%s/%d" % (socket.gethostname().encode(), namespace), boot)
    assert (HOST, BOOT) == _this_host()


NO_PROC = """
import os, sys
from fastsession._holder import _pid_namespace, _proc_stat, _read_small, _this_host, holder_record
assert not os.path.exists("/proc/self"), "/proc is still mounted"
line = holder_record()
print(line.decode().strip())
print(_pid_namespace().decode(), _this_host()[1].decode(), _proc_stat(os.getpid()), _read_small("/proc/1/stat"))
"""


def test_without_proc_the_holder_line_says_so():
    # A container without /proc: namespace, boot id and start time are unknown ("-").
    script = f"umount -l /proc && exec {sys.executable} -c '{NO_PROC}'"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd="/", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line, probes = done.stdout.splitlines()
    magic, host, boot, pid, start = line.split(" ")
    assert (magic, host.endswith("/-"), boot, pid.isdigit(), start) == ("FSv1", True, "-", True, "-")
    assert probes == "- - (b'', b'') b''"


def test_proc_stat_reads_a_command_name_with_parentheses_and_spaces():
    from fastsession._holder import _proc_stat

    def renamed(ready):
        with open("/proc/self/comm", "w") as f:
            f.write("a) b (c")  # what the kernel shows between the parentheses
        os.write(ready, b"R")
        time.sleep(60)

    pid, ready = fork_child(renamed)
    wait_for_byte(ready)
    try:
        fields = open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1].split()
        assert _proc_stat(pid) == (fields[0], fields[19])
        assert _holder_alive(pid, fields[19]) is True
    finally:
        kill_and_reap(pid)


def test_holder_line_is_computed_again_in_a_forked_child():
    from fastsession import _holder

    holder_record()  # the parent's, cached

    def child(report):
        os.write(report, holder_record() + _holder.HOST + b"\n")
        time.sleep(60)

    pid, report = fork_child(child)
    try:
        record, host = os.read(report, 512).split(b"\n")[:2]
        start = open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1].split()[19]
    finally:
        kill_and_reap(pid)
    assert record.split(b" ") == [b"FSv1", HOST, BOOT, b"%d" % pid, start]  # the child's own
    assert host == HOST


def test_a_zombie_or_dying_holder_is_dead():
    pid, _ = fork_child(lambda _: None)
    time.sleep(0.2)  # exited, not reaped: a zombie
    try:
        start = open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1].split()[19]
        assert _holder_alive(pid, start) is False
    finally:
        os.waitpid(pid, 0)


def test_is_stale_reads_only_the_first_line():
    line = b"FSv1 %s %s %d %s\n" % (HOST, BOOT, os.getpid(), holder_record().split(b" ")[4].strip())
    assert is_stale(line + b'{"a":1}\nmore\n', 3600, 30) is False  # this process: alive
    assert is_stale(b"FSv1  %s %s 1 1\n" % (HOST, BOOT), 0.5, 30) is False  # two spaces: malformed


@pytest.mark.parametrize("age, stale", [(0.9, False), (1.1, True)])
def test_unreadable_grace_is_one_second(age, stale):
    assert is_stale(b"", age, 30) is stale


# -- break_if_stale ------------------------------------------------------------------------


def test_break_if_stale_says_what_it_found(tmp_path):
    from fastsession._holder import BROKEN, GONE, HELD, break_if_stale

    lock = os.fsencode(tmp_path / "s.lock")
    assert break_if_stale(lock, 30) == GONE  # nothing there: lock again
    with open(lock, "wb") as f:
        f.write(holder_record())
    assert break_if_stale(lock, 30) == HELD and os.path.exists(lock)
    with open(lock, "wb") as f:
        f.write(b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))  # dead
    assert break_if_stale(lock, 30, dry_run=True) == BROKEN and os.path.exists(lock)
    assert break_if_stale(lock, 30) == BROKEN and not os.path.exists(lock)


def test_break_if_stale_never_follows_a_symlinked_lock(tmp_path):
    from fastsession._holder import break_if_stale

    target = tmp_path / "target"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / "s.lock")
    with pytest.raises(OSError) as info:
        break_if_stale(os.fsencode(tmp_path / "s.lock"), 30)
    assert info.value.errno == errno.ELOOP and target.exists()


def test_a_fifo_in_place_of_a_lockfile_does_not_hang_the_waiter(kernels, tmp_path):
    lock = os.fsencode(tmp_path / "s.lock")
    os.mkfifo(lock)
    then = time.time() - 5
    os.utime(lock, (then, then))

    def body(report):
        kernels.lock.acquire(lock, holder_record(), 0.01, 5.0, 30.0)  # the FIFO was broken: locked
        os.write(report, b"L")

    pid, report = fork_child(body)
    import select

    ready, _, _ = select.select([report], [], [], 5)
    if not ready:
        kill_and_reap(pid)
        raise AssertionError("the waiter hung on the FIFO")
    wait_ok(pid)


# -- gc, counted exactly -------------------------------------------------------------------


@pytest.fixture
def four(session_dir):
    """Four sessions: fresh; expired; expired under a live lock; expired under a dead holder's."""
    ids = [store_session(session_dir, {"i": i})[0] for i in range(4)]
    for sid in ids[1:]:
        age(path_of(session_dir, sid), 7200)
    plant_lock(session_dir, ids[2], holder_record())  # this process: alive
    plant_lock(session_dir, ids[3], b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))  # dead
    return ids


@pytest.mark.parametrize("dry_run", [False, True])
def test_gc_counts_exactly(session_dir, four, dry_run):
    from fastsession.gc import collect

    size = os.path.getsize(path_of(session_dir, four[1]))
    calls = []
    started = time.monotonic()
    counts = collect(session_dir, 3600, dry_run=dry_run, progress=lambda *a: calls.append(a))
    assert time.monotonic() - started < 0.9  # a busy session is passed over, not waited for
    assert (counts.scanned, counts.removed, counts.kept) == (4, 2, 2)
    assert counts.bytes_freed == 2 * size
    assert counts.errors == []
    if dry_run:
        assert counts.locks_removed == 1  # the dead holder's, counted, left in place
    shards = len([e for e in os.scandir(session_dir) if e.is_dir()])
    assert [(a[0], a[1]) for a in calls] == [(n, shards) for n in range(1, shards + 1)]
    assert all(a[2] is counts for a in calls)
    left = [os.path.exists(path_of(session_dir, sid)) for sid in four]
    assert left == ([True] * 4 if dry_run else [True, False, True, False])


def test_gc_stale_after_reaches_the_lock_it_takes(session_dir, four):
    from fastsession.gc import collect

    plant_lock(session_dir, four[2], b"FSv1 elsewhere/1 boot 1 1\n", 10)  # another host's, 10 s old
    assert collect(session_dir, 3600, stale_after=30).kept == 2
    assert collect(session_dir, 3600, stale_after=5).removed == 1  # now stale: broken, session removed
    assert not os.path.exists(path_of(session_dir, four[2]))


def test_gc_default_stale_after_is_thirty_seconds(session_dir, four):
    from fastsession.gc import collect

    lock = plant_lock(session_dir, four[2], b"FSv1 elsewhere/1 boot 1 1\n", 30.5)
    collect(session_dir, stale_locks_only=True)
    assert not os.path.exists(lock)


def test_gc_temp_files_count_their_bytes(session_dir):
    from fastsession.gc import collect

    sid, _ = store_session(session_dir, {"a": 1})
    temp = path_of(session_dir, sid) + ".0123456789abcdef.tmp"
    with open(temp, "wb") as f:
        f.write(b"x" * 100)
    age(temp, 120)
    counts = collect(session_dir, 3600)
    assert (counts.temps_removed, counts.bytes_freed) == (1, 100)


def test_gc_removes_an_expired_symlink_never_its_target(session_dir, tmp_path):
    from fastsession.gc import collect

    sid, _ = store_session(session_dir, {"a": 1})
    target = tmp_path / "fresh-target"
    target.write_bytes(b"{}")
    os.unlink(path_of(session_dir, sid))
    os.symlink(target, path_of(session_dir, sid))
    age(path_of(session_dir, sid), 7200)  # the link is old, its target is fresh
    counts = collect(session_dir, 3600)
    assert counts.removed == 1 and counts.bytes_freed == len(os.fsencode(str(target)))  # the link's own size
    assert not os.path.lexists(path_of(session_dir, sid)) and target.exists()


def test_gc_usage_errors_say_what_is_wrong(tmp_path, session_dir):
    from fastsession.gc import collect

    os.makedirs(session_dir, 0o700)
    with pytest.raises(ValueError) as info:
        collect(session_dir)
    assert str(info.value) == "max_age is required unless stale_locks_only"
    with pytest.raises(ValueError, match="^max_age must be positive, not 0: "):
        collect(session_dir, 0)
    assert collect(session_dir, 0.5).errors == []  # a fraction of a second is a positive age
    with pytest.raises(FileNotFoundError) as info:
        collect(str(tmp_path / "absent"), 60)
    assert (info.value.errno, info.value.filename) == (errno.ENOENT, str(tmp_path / "absent"))
    assert info.value.strerror == "no such session directory"


def test_gc_reports_an_unreadable_shard_and_goes_on(traversable_tmp):
    from fastsession.gc import collect

    directory = os.path.join(traversable_tmp, "sessions")
    os.chmod(traversable_tmp, 0o1777)

    def body(report):
        run_as_nobody()
        names = [stored_relpath(store_session(directory, {"i": i})[0]) for i in range(3)]
        shard = os.path.join(directory, names[0][:2])
        os.chmod(shard, 0)
        counts = collect(directory, 3600)
        ok = counts.errors and counts.errors[0].startswith(shard + ": ") and "Permission denied" in counts.errors[0]
        ok = ok and counts.scanned == len([n for n in names if n[:2] != names[0][:2]])
        os.write(report, b"Y" if ok else b"N")

    pid, report = fork_child(body)
    assert wait_for_byte(report) == b"Y"
    wait_ok(pid)


def test_progress_bar_and_summary_text():
    import io

    from fastsession.gc import Collected, ProgressBar, summary

    out = io.StringIO()
    bar = ProgressBar(out)
    counts = Collected(scanned=10)
    bar(1, 2, counts)
    bar(2, 2, counts)
    shown = out.getvalue()
    assert shown.startswith("\r[" + "#" * 15 + "." * 15 + "] 1/2 shards, 10 sessions, ")
    assert "\r[" + "#" * 30 + "] 2/2 shards, 10 sessions, " in shown and shown.endswith("   \n")
    assert re.search(r"10 sessions, [\d,]+/s, ETA \d+ s", shown)
    counts = Collected(
        scanned=3, removed=1, kept=2, bytes_freed=50, locks_removed=4, temps_removed=5, errors=["x: boom"]
    )
    assert summary(counts, 1.25, False) == (
        "scanned 3 sessions in 1.2 s: removed 1 expired, kept 2; removed 4 stale locks and 5 "
        "leftover temp files; freed 50 bytes; 1 errors\n  error: x: boom"
    )
    assert summary(counts, 1.25, True).startswith("scanned 3 sessions in 1.2 s: would remove 1 expired")
    assert "would free 50 bytes" in summary(counts, 1.25, True)


# -- the facade ----------------------------------------------------------------------------


def test_a_store_holding_one_session_refuses_another_by_name(session_dir):
    a, _ = store_session(session_dir, {"a": 1})
    b, _ = store_session(session_dir, {"b": 1})
    with SessionStore(Transaction({"SID": a}), session_dir) as store:
        store.get_session(0)
        with pytest.raises(SessionError) as info:
            store._get_session(b, False)
        assert str(info.value) == "this store already holds another session; close() it before opening one more"


def test_rollback_closes_the_store_for_good(session_dir):
    sid, _ = store_session(session_dir, {"n": 1})
    store = SessionStore(Transaction({"SID": sid}), session_dir)
    store.get_session(0)["n"] = 2
    store.rollback()
    assert store.closed
    store.close()  # nothing left to commit
    assert load(session_dir, sid) == {"n": 1}
    with pytest.raises(SessionError, match="closed"):
        store.get_session(0)


def test_regenerate_id_without_a_cookie_starts_a_session(session_dir):
    trans = Transaction()
    with SessionStore(trans, session_dir) as store:
        new_id = store.regenerate_id()
        store.get_session(0)["user"] = "ann"
    assert trans.cookies["SID"] == new_id and load(session_dir, new_id) == {"user": "ann"}


def test_expiry_with_a_failed_commit_still_deletes_the_cookie(session_dir):
    sid, trans = store_session(session_dir, {"n": 1})
    store = SessionStore(trans, session_dir)
    store.expire_session()
    store.get_session(True)["bad"] = object()  # the fresh session cannot be stored
    with pytest.raises(SerializationError):
        store.close()
    assert ("delete", "SID") in trans.events and load(session_dir, sid) is None


def test_expiry_then_an_empty_new_session_deletes_the_cookie(session_dir):
    _sid, trans = store_session(session_dir, {"n": 1})
    with SessionStore(trans, session_dir) as store:
        store.expire_session()
        store.get_session(True)  # nothing put in it: not stored
    assert trans.events[-1] == ("delete", "SID")


def test_default_store_waits_thirty_seconds_for_another_hosts_lock_and_does_not_fsync(session_dir, monkeypatch):
    sid, _ = store_session(session_dir, {"n": 1})
    lock = path_of(session_dir, sid) + ".lock"
    with open(lock, "wb") as f:
        f.write(b"FSv1 elsewhere/1 boot 1 1\n")
    age(lock, 30.5)
    PureStore = twin_store("py")
    synced = []
    monkeypatch.setattr(_syscalls, "fsync", lambda fd: synced.append(fd))
    with PureStore(Transaction({"SID": sid}), session_dir, timeout=2) as store:
        store.get_session(0)["n"] = 2  # the lock was stale after the default 30 s
    assert load(session_dir, sid) == {"n": 2} and synced == []


def test_a_broken_lock_says_why_and_what_was_kept(tmp_path):
    from fastsession._lock_py import lock_lost

    message = str(lock_lost(b"/s/x.lock"))
    assert "'/s/x.lock' was broken" in message
    assert message.endswith("(this holder outlived stale_after): nothing was written")


def test_progress_bar_rate_and_eta_from_the_clock(monkeypatch):
    import io

    from fastsession import gc as gc_module
    from fastsession.gc import Collected, ProgressBar

    clock = iter([100.0, 102.0, 104.0])
    monkeypatch.setattr(gc_module.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = ProgressBar(out)  # started at 100 s
    bar(1, 4, Collected(scanned=500))  # 2 s for 1 of 4 shards: 250/s, 6 s to go
    assert out.getvalue() == "\r[#######.......................] 1/4 shards, 500 sessions, 250/s, ETA 6 s   "
    bar(1, 1, Collected(scanned=0))  # 4 s; a single shard
    assert out.getvalue().endswith("\r[##############################] 1/1 shards, 0 sessions, 0/s, ETA 0 s   \n")


def test_gc_counts_add_up_over_many_sessions_temps_and_busy_ones(session_dir):
    from fastsession.gc import collect

    ids = [store_session(session_dir, {"i": i})[0] for i in range(6)]
    for sid in ids:
        age(path_of(session_dir, sid), 7200)
    for sid in ids[:3]:
        plant_lock(session_dir, sid, holder_record())  # busy: kept
    for n, sid in enumerate(ids[3:5]):
        temp = path_of(session_dir, sid) + f".{n:016x}.tmp"
        with open(temp, "wb") as f:
            f.write(b"t" * 10)
        age(temp, 120)
    size = os.path.getsize(path_of(session_dir, ids[5]))
    for dry_run in (True, False):
        counts = collect(session_dir, 3600, dry_run=dry_run)
        assert (counts.kept, counts.removed, counts.temps_removed) == (3, 3, 2)
        assert counts.bytes_freed == 3 * size + 20
