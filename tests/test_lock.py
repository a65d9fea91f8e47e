import errno
import os
import stat
import time

import pytest
from helpers import (
    fork_child,
    hold_in_new_pid_namespace,
    hold_until_killed,
    kill_and_reap,
    kill_leave_zombie,
    raises_at_once_as_nobody,
    wait_for_byte,
    wait_ok,
)

from fastsession import LockTimeout
from fastsession._holder import BOOT, HOST, holder_record


@pytest.fixture
def lock_path(tmp_path):
    return os.fsencode(tmp_path / "session.lock")


def acquire(kernels, lock_path, timeout=None, stale_after=30.0, delay=1.0):
    return kernels.lock.acquire(lock_path, holder_record(), delay, timeout, stale_after)


def plant_lock(lock_path, record, age=0.0):
    with open(lock_path, "wb") as f:
        f.write(record)
    if age:
        then = time.time() - age
        os.utime(lock_path, (then, then))


def test_try_lock_creates_0600_lockfile_holding_the_holder_line(kernels, lock_path):
    fd = kernels.lock.try_lock(lock_path, holder_record())
    assert fd >= 0
    os.close(fd)
    with open(lock_path, "rb") as f:
        assert f.read() == holder_record()
    assert stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600


def test_try_lock_on_a_held_lock_returns_minus_one_and_keeps_it(kernels, lock_path):
    plant_lock(lock_path, holder_record())
    assert kernels.lock.try_lock(lock_path, holder_record()) == -1
    assert open(lock_path, "rb").read() == holder_record()


def test_unlock_removes_the_lockfile(kernels, lock_path):
    fd = acquire(kernels, lock_path)
    kernels.lock.unlock(fd, lock_path)
    assert not os.path.exists(lock_path)


def test_live_holder_on_this_host_is_never_broken(kernels, lock_path):
    plant_lock(lock_path, holder_record(), age=3600)  # old, but this process is alive
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        acquire(kernels, lock_path, timeout=0.3, stale_after=0.01)
    assert time.monotonic() - started >= 0.3
    assert open(lock_path, "rb").read() == holder_record()


def test_timeout_zero_fails_at_once_on_a_held_lock(kernels, lock_path):
    plant_lock(lock_path, holder_record())
    with pytest.raises(LockTimeout, match="session.lock"):
        acquire(kernels, lock_path, timeout=0)


def _hold_lock_forever(kernels, lock_path):
    return hold_until_killed(lambda: kernels.lock.acquire(lock_path, holder_record(), 1.0, None, 30.0))


def test_lock_of_a_killed_holder_is_broken_within_a_fraction_of_a_second(kernels, lock_path):
    pid = _hold_lock_forever(kernels, lock_path)
    kill_and_reap(pid)
    started = time.monotonic()
    fd = acquire(kernels, lock_path, timeout=5)
    assert time.monotonic() - started < 0.5
    kernels.lock.unlock(fd, lock_path)


def test_lock_of_a_killed_holder_not_yet_reaped_is_broken(kernels, lock_path):
    pid = _hold_lock_forever(kernels, lock_path)
    kill_leave_zombie(pid)
    try:
        fd = acquire(kernels, lock_path, timeout=2)
        kernels.lock.unlock(fd, lock_path)
    finally:
        os.waitpid(pid, 0)


def test_waiter_blocked_by_a_holder_gets_the_lock_once_the_holder_is_killed(kernels, lock_path):
    pid = _hold_lock_forever(kernels, lock_path)

    def waiter(ready):
        fd = kernels.lock.acquire(lock_path, holder_record(), 1.0, 10.0, 30.0)
        os.write(ready, b"W")
        kernels.lock.unlock(fd, lock_path)

    wpid, wready = fork_child(waiter)
    time.sleep(0.3)  # the waiter is polling now
    kill_and_reap(pid)
    assert wait_for_byte(wready, timeout=5) == b"W"
    wait_ok(wpid)


def test_reused_pid_is_not_mistaken_for_the_holder(kernels, lock_path):
    # This process is alive, but it did not start at tick 1: the holder was another process.
    plant_lock(lock_path, b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))
    fd = acquire(kernels, lock_path, timeout=2)
    kernels.lock.unlock(fd, lock_path)


def test_holder_from_before_a_reboot_is_dead(kernels, lock_path):
    plant_lock(lock_path, b"FSv1 %s other-boot-id %d 1\n" % (HOST, os.getpid()))
    fd = acquire(kernels, lock_path, timeout=2)
    kernels.lock.unlock(fd, lock_path)


def test_lock_from_another_host_waits_for_stale_after(kernels, lock_path):
    plant_lock(lock_path, b"FSv1 other-host some-boot 1 1\n")
    with pytest.raises(LockTimeout):
        acquire(kernels, lock_path, timeout=0.2, stale_after=30)
    plant_lock(lock_path, b"FSv1 other-host some-boot 1 1\n", age=31)
    fd = acquire(kernels, lock_path, timeout=2, stale_after=30)
    kernels.lock.unlock(fd, lock_path)


@pytest.mark.parametrize("content", [b"", b"FSv1 half-written", b"garbage\n"])
def test_lock_without_a_readable_holder_is_kept_for_one_second(kernels, lock_path, content):
    plant_lock(lock_path, content)
    with pytest.raises(LockTimeout):
        acquire(kernels, lock_path, timeout=0.2)
    plant_lock(lock_path, content, age=1.5)
    fd = acquire(kernels, lock_path, timeout=2)
    kernels.lock.unlock(fd, lock_path)


def test_holder_line_survives_while_the_next_version_is_written_into_the_lockfile(kernels, tmp_path):
    path = os.fsencode(tmp_path / "s")
    fd = kernels.lock.try_lock(path + b".lock", holder_record())
    os.write(fd, b'{"partial":')  # what a commit in progress leaves readable
    with open(path + b".lock", "rb") as f:
        assert f.readline() == holder_record()
    kernels.lock.unlock(fd, path + b".lock")


def test_symlink_at_the_lock_path_is_never_followed(kernels, tmp_path, lock_path):
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    os.symlink(target, lock_path)
    with pytest.raises(OSError) as info:
        acquire(kernels, lock_path, timeout=2)
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b"precious"


def test_permission_error_raises_at_once_with_the_path(kernels, traversable_tmp):
    locked_dir = os.path.join(traversable_tmp, "ro")
    os.mkdir(locked_dir, 0o555)
    lock_path = os.fsencode(os.path.join(locked_dir, "s.lock"))
    assert raises_at_once_as_nobody(
        lambda: kernels.lock.acquire(lock_path, holder_record(), 1.0, None, 30.0),
        PermissionError,
        lambda exc: os.fsdecode(exc.filename) == os.fsdecode(lock_path),
    )


def test_missing_directory_is_reported_not_waited_for(kernels, tmp_path):
    with pytest.raises(FileNotFoundError):
        acquire(kernels, os.fsencode(tmp_path / "absent" / "s.lock"))


def test_waiter_polls_at_least_every_delay(kernels, lock_path):
    def holder(ready):
        fd = kernels.lock.acquire(lock_path, holder_record(), 1.0, None, 30.0)
        os.write(ready, b"L")
        time.sleep(1.0)
        kernels.lock.unlock(fd, lock_path)

    pid, ready = fork_child(holder)
    wait_for_byte(ready)
    started = time.monotonic()
    fd = acquire(kernels, lock_path, delay=0.2, timeout=10)
    # Released at ~1.0 s; a waiter that slept longer than `delay` would be late.
    assert time.monotonic() - started < 1.0 + 0.2 + 0.5
    kernels.lock.unlock(fd, lock_path)
    wait_ok(pid)


def _contend_and_leave_stale_locks(kernels, lock_path, counter, rounds, report):
    dead_record = b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid())  # wrong start time: dead
    temp = lock_path + b".%d" % os.getpid()
    violations = 0
    for _ in range(rounds):
        fd = kernels.lock.acquire(lock_path, holder_record(), 0.01, 30.0, 30.0)
        mine = os.fstat(fd).st_ino
        violations += os.stat(lock_path).st_ino != mine
        with open(counter, "r+") as f:
            value = int(f.read() or 0)
            f.seek(0)
            f.write(str(value + 1))
        violations += os.stat(lock_path).st_ino != mine
        # Die as a holder would: leave a lock whose holder is gone.
        with open(temp, "wb") as f:
            f.write(dead_record)
        os.close(fd)
        os.rename(temp, lock_path)
    os.write(report, b"%d" % violations)


def test_breaking_stale_locks_is_race_free(kernels, lock_path, tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    children = [
        fork_child(lambda report: _contend_and_leave_stale_locks(kernels, lock_path, counter, 40, report))
        for _ in range(4)
    ]
    for pid, report in children:
        assert wait_for_byte(report, timeout=60) == b"0"  # no fresh lock was ever removed
        wait_ok(pid)
    assert counter.read_text() == "160"  # mutual exclusion held throughout


# -- PID namespaces, broken locks, timeout=0 ---------------------------------------


def test_live_holder_in_another_pid_namespace_is_never_broken(kernels, lock_path):
    child = hold_in_new_pid_namespace(kernels.name, lock_path)
    try:
        record = open(lock_path, "rb").read()
        assert record.split(b" ")[3] == b"1"  # pid 1 in its namespace: no such holder in ours
        with pytest.raises(LockTimeout):
            acquire(kernels, lock_path, timeout=0.5, stale_after=30)
        assert open(lock_path, "rb").read() == record  # the live holder keeps its lock
    finally:
        child.kill()
        child.wait()


def test_holder_in_another_pid_namespace_is_judged_by_stale_after(kernels, lock_path):
    other_namespace = HOST.split(b"/")[0] + b"/1"
    plant_lock(lock_path, b"FSv1 %s %s %d 1\n" % (other_namespace, BOOT, os.getpid()))
    with pytest.raises(LockTimeout):  # its pid means nothing here: never "dead at once"
        acquire(kernels, lock_path, timeout=0.2, stale_after=30)
    plant_lock(lock_path, b"FSv1 %s %s %d 1\n" % (other_namespace, BOOT, os.getpid()), age=31)
    kernels.lock.unlock(acquire(kernels, lock_path, timeout=2, stale_after=30), lock_path)


def test_holder_record_names_this_process_pid_namespace():
    from fastsession._holder import holder_record as record

    namespace = os.readlink("/proc/self/ns/pid")[len("pid:[") : -1].encode()
    assert record().split(b" ")[1].endswith(b"/" + namespace)


def test_timeout_zero_breaks_a_dead_holders_lock(kernels, lock_path):
    plant_lock(lock_path, b"FSv1 %s %s %d 1\n" % (HOST, BOOT, os.getpid()))  # start time differs: dead
    fd = acquire(kernels, lock_path, timeout=0)
    kernels.lock.unlock(fd, lock_path)


def break_and_retake(lock_path):
    """What a waiter does to a lock it judged stale: remove it and take its own."""
    os.unlink(lock_path)
    with open(lock_path, "wb") as f:
        f.write(b"FSv1 the-new-holder\n")


def test_unlock_of_a_broken_lock_leaves_the_new_holders_lock(kernels, lock_path):
    fd = acquire(kernels, lock_path)
    break_and_retake(lock_path)
    kernels.lock.unlock(fd, lock_path)
    assert open(lock_path, "rb").read() == b"FSv1 the-new-holder\n"


def test_unlock_after_the_lock_was_broken_and_not_retaken_is_quiet(kernels, lock_path):
    fd = acquire(kernels, lock_path)
    os.unlink(lock_path)
    kernels.lock.unlock(fd, lock_path)
    assert not os.path.exists(lock_path)


def test_commit_of_a_broken_lock_raises_and_writes_nothing(kernels, tmp_path):
    from fastsession import SessionError

    path = os.fsencode(tmp_path / "s")
    with open(path, "wb") as f:
        f.write(b'{"theirs":1}')
    fd = acquire(kernels, path + b".lock")
    break_and_retake(path + b".lock")
    with pytest.raises(SessionError, match="broken"):
        kernels.io.commit_locked(fd, path + b".lock", path, b'{"late":1}', False)
    assert open(path, "rb").read() == b'{"theirs":1}'  # the session as it was
    assert open(path + b".lock", "rb").read() == b"FSv1 the-new-holder\n"  # the new holder's lock stays


# -- the waiting schedule (lock_waits), read as the values it yields: no clock is judged -------------------


def test_the_pauses_start_at_50_us_and_double_up_to_the_cap(lock_path):
    from fastsession._lock_py import FIRST_PAUSE, MAX_PAUSE, lock_waits

    plant_lock(lock_path, holder_record())  # held by this (live) process
    waits = lock_waits(lock_path, 1.0, None, 30.0)
    assert [next(waits) for _ in range(4)] == [FIRST_PAUSE, 2 * FIRST_PAUSE, 4 * FIRST_PAUSE, 8 * FIRST_PAUSE]
    capped = lock_waits(lock_path, 0.0003, None, 30.0)  # delay below MAX_PAUSE: the cap is the delay
    assert max(next(capped) for _ in range(20)) == 0.0003 < MAX_PAUSE


def test_no_pause_outlasts_the_time_left_before_the_timeout(lock_path):
    from fastsession._lock_py import lock_waits

    plant_lock(lock_path, holder_record())
    waits = lock_waits(lock_path, 1.0, 0.0003, 30.0)
    pauses = []
    with pytest.raises(LockTimeout):
        for pause in waits:
            assert pause <= 0.0003
            pauses.append(pause)
            time.sleep(pause)
    assert pauses and sum(pauses) <= 0.0006


def test_a_broken_dead_holders_lock_is_tried_again_at_once(lock_path):
    import itertools

    from fastsession._lock_py import lock_waits

    pid, _ = fork_child(lambda _: None)
    wait_ok(pid)  # gone: its pid names no process
    plant_lock(lock_path, b"FSv1 %s %s %d 1\n" % (HOST, BOOT, pid))
    # (a bounded number of pauses, not a clock: the holder is judged after a few of them)
    for pause in itertools.islice(lock_waits(lock_path, 1.0, None, 30.0), 10_000):
        if not os.path.exists(lock_path):
            assert pause == 0.0  # broken just now: try again without a pause
            break
        time.sleep(pause)
    else:
        pytest.fail("the dead holder's lock was never broken")


def test_a_timeout_names_the_holder_in_words(lock_path):
    from fastsession._lock_py import lock_waits

    plant_lock(lock_path, holder_record())
    with pytest.raises(LockTimeout) as timed_out:
        for pause in lock_waits(lock_path, 1.0, 0.0, 30.0):
            time.sleep(pause)
    assert f"(pid {os.getpid()} on " in str(timed_out.value) and ", alive, locked " in str(timed_out.value)
    assert timed_out.value.holder["pid"] == os.getpid()
