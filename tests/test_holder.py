"""fastsession._holder on its own: what a holder line says (describe, summary), how a lockfile is read
(holder_of, break_if_stale: never following a symlink, never hanging on a FIFO), and the stale rules'
edges, with ages given exactly rather than read from a clock."""

import os
import socket
import subprocess
import sys
import time

from helpers import fork_child, wait_for_byte, wait_ok

from fastsession import _holder
from fastsession._holder import BOOT, HELD, HOST, MAGIC, break_if_stale, describe, holder_of, holder_record, is_stale

OUR_NAME = HOST.rpartition(b"/")[0].decode()


def line(host=HOST, boot=BOOT, pid=None, start=None):
    """A holder line; by default this process's own."""
    own = holder_record().split(b" ")
    pid = own[3] if pid is None else pid
    start = own[4].strip() if start is None else start
    return b"%s%s %s %s %s\n" % (MAGIC, host, boot, pid, start)


def test_describe_names_this_process_as_alive_with_its_age_to_the_millisecond():
    assert describe(holder_record(), 1.23456) == {"host": OUR_NAME, "pid": os.getpid(), "age": 1.235, "alive": True}
    assert describe(holder_record(), 2.0)["age"] == 2.0


def test_describe_reads_a_line_cut_before_its_newline():
    """holder_of reads at most 512 bytes: a line that long has no newline in what was read."""
    assert describe(holder_record().rstrip(b"\n"), 0.5) == describe(holder_record(), 0.5)
    assert describe(holder_record().rstrip(b"\n"), 0.5)["alive"] is True


def test_describe_of_no_holder_line_knows_only_the_age():
    for head in (b"", b"garbage", b"FSv1 too few fields\n", line(pid=b"12x")):
        assert describe(head, 3.0) == {"host": None, "pid": None, "age": 3.0, "alive": None}
    assert describe(b"garbage", 1.23456)["age"] == 1.235  # to the millisecond, as for a holder line


def test_describe_of_another_host_namespace_or_boot_cannot_tell_liveness():
    assert describe(line(host=b"web-1/4026531836", pid=b"42"), 1.0) == {
        "host": "web-1",
        "pid": 42,
        "age": 1.0,
        "alive": None,
    }
    assert describe(line(boot=b"another-boot-id"), 1.0)["alive"] is None  # this host, rebooted since
    assert describe(line(host=HOST.rpartition(b"/")[0] + b"/1"), 1.0)["alive"] is None  # another namespace


def test_describe_names_the_host_before_the_namespace_and_survives_odd_bytes():
    assert describe(line(host=b"we/b/1234", pid=b"7"), 0.0)["host"] == "we/b"  # a planted line: all but the last
    assert describe(line(host=b"w\xffb/1234", pid=b"7"), 0.0)["host"] == "w\ufffdb"


def test_a_pid_of_ten_digits_is_read_and_eleven_is_no_holder_line():
    assert describe(line(host=b"h/1", pid=b"1234567890"), 0.0)["pid"] == 1234567890
    assert describe(line(host=b"h/1", pid=b"12345678901"), 0.0)["pid"] is None


def test_summary_in_words():
    summary = _holder.summary
    assert (
        summary({"host": "web-1", "pid": 42, "age": 3.21, "alive": True}) == "pid 42 on web-1, alive, locked 3.2 s ago"
    )
    assert (
        summary({"host": "web-1", "pid": 42, "age": 3.0, "alive": False}) == "pid 42 on web-1, dead, locked 3.0 s ago"
    )
    assert summary({"host": "web-1", "pid": 42, "age": 0.04, "alive": None}) == (
        "pid 42 on web-1, liveness unknown, locked 0.0 s ago"
    )
    assert summary({"host": None, "pid": None, "age": 1.25, "alive": None}) == "holder unknown, locked 1.2 s ago"


def test_holder_of_reads_the_lockfile_and_its_age(tmp_path):
    lock = tmp_path / "s.lock"
    lock.write_bytes(holder_record())
    os.utime(lock, (time.time() - 5, time.time() - 5))
    found = holder_of(os.fsencode(lock))
    assert found["pid"] == os.getpid() and found["alive"] is True and 4 < found["age"] < 60
    assert holder_of(os.fsencode(tmp_path / "gone.lock")) is None


def test_holder_of_and_break_if_stale_never_follow_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"garbage")  # a stale-looking lock, were it followed
    os.utime(target, (time.time() - 100, time.time() - 100))
    lock = tmp_path / "s.lock"
    lock.symlink_to(target)
    assert holder_of(os.fsencode(lock)) is None
    try:
        break_if_stale(os.fsencode(lock), 30.0)
    except OSError:
        pass  # refused (ELOOP): the point is that the target is never judged nor removed
    assert target.exists()


def test_a_fifo_in_place_of_a_lockfile_never_hangs_the_reader(tmp_path):
    fifo = tmp_path / "s.lock"
    os.mkfifo(fifo)
    found = holder_of(os.fsencode(fifo))
    assert (found["host"], found["pid"], found["alive"]) == (None, None, None)
    assert break_if_stale(os.fsencode(fifo), 30.0) == HELD  # no holder line, just made: within its grace


def test_the_stale_rules_at_their_edges_with_exact_ages():
    garbage, other = b"garbage", line(host=b"web-1/1", pid=b"42")
    assert not is_stale(garbage, _holder.UNREADABLE_GRACE, 30.0)  # at the grace: not yet
    assert is_stale(garbage, _holder.UNREADABLE_GRACE + 0.001, 30.0)
    assert not is_stale(other, 30.0, 30.0) and is_stale(other, 30.001, 30.0)
    assert is_stale(other, -31.0, 30.0)  # dated in the future counts as much as the past
    assert not is_stale(holder_record(), 10_000.0, 30.0)  # this process is alive, however old its lock
    assert is_stale(line(boot=b"another-boot-id"), 0.0, 30.0)  # this host rebooted: its holder is gone


def test_a_holder_line_without_a_start_time_is_judged_by_asking_the_kernel_and_signals_nothing():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        head = line(pid=str(sleeper.pid).encode(), start=b"-")
        assert describe(head, 0.0)["alive"] is True
        assert sleeper.poll() is None  # asked with signal 0: nothing was sent to it
    finally:
        sleeper.kill()
        sleeper.wait()
    assert describe(head, 0.0)["alive"] is False


def test_a_forked_child_writes_its_own_pid_under_the_same_host():
    parent = holder_record()

    def child(report):
        os.write(report, holder_record())

    pid, report = fork_child(child)
    assert wait_for_byte(report) == b"F"  # (the magic's first byte)
    rest = os.read(report, 512)
    wait_ok(pid)
    fields = (b"F" + rest).split(b" ")
    assert fields[1] == HOST == parent.split(b" ")[1] and fields[3] == str(pid).encode()
    assert fields[1].startswith(socket.gethostname().encode("ascii", "replace").replace(b" ", b"_").replace(b"/", b"_"))
