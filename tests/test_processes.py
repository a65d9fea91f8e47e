"""Concurrency and crashes with real processes: forked workers, SIGKILL."""

import os
import random
import signal
import struct
import time

import pytest
from conftest import Transaction, session_files, store_session
from helpers import (
    fork_child,
    hold_until_killed,
    kill_and_reap,
    run_in_processes,
    stored_relpath,
    wait_for_byte,
    wait_ok,
)

from fastsession import SessionStore


def increment(session_dir, session_id, times, **options):
    for _ in range(times):
        with SessionStore(Transaction({"SID": session_id}), session_dir, **options) as store:
            session = store.get_session(0)
            session["n"] += 1
            session["log"] = [*session["log"][-20:], os.getpid()]


def read_n(session_dir, session_id, **options):
    with SessionStore(Transaction({"SID": session_id}), session_dir, timeout=5, **options) as store:
        session = store.get_session(0)
        return None if session is None else session["n"]


@pytest.mark.parametrize("workers, times", [(4, 150)])
def test_four_processes_incrementing_one_session_lose_no_update(session_dir, workers, times):
    session_id, _ = store_session(session_dir, {"n": 0, "log": []})
    run_in_processes(lambda: increment(session_dir, session_id, times, delay=0.01), workers)
    assert read_n(session_dir, session_id) == workers * times
    assert session_files(session_dir) == [stored_relpath(session_id)]


def test_killed_holder_blocks_others_well_under_a_second(session_dir):
    session_id, _ = store_session(session_dir, {"n": 7, "log": []})

    def hold():
        store = SessionStore(Transaction({"SID": session_id}), session_dir)
        store.get_session(0)["n"] = 1000  # never committed
        return store

    kill_and_reap(hold_until_killed(hold))
    started = time.monotonic()
    assert read_n(session_dir, session_id) == 7
    assert time.monotonic() - started < 0.5
    assert session_files(session_dir) == [stored_relpath(session_id)]


def _count_forever(session_dir, session_id, confirmations, options):
    while True:
        with SessionStore(Transaction({"SID": session_id}), session_dir, **options) as store:
            session = store.get_session(0)
            session["n"] += 1
            session["pad"] = "x" * random.randint(0, 40000)  # sometimes more than one write
            value = session["n"]
        os.write(confirmations, struct.pack("<q", value))


@pytest.mark.parametrize("concurrent", [1, 0])
def test_writer_killed_at_random_moments_never_tears_or_loses_a_session(session_dir, concurrent):
    options = {"concurrent": concurrent}
    session_id, _ = store_session(session_dir, {"n": 0, "pad": ""}, **options)
    rng = random.Random(1234)
    stored = 0
    for _ in range(25):
        pid, confirmations = fork_child(lambda fd: _count_forever(session_dir, session_id, fd, options))
        time.sleep(rng.uniform(0.0, 0.03))
        kill_and_reap(pid)
        confirmed = stored  # a child killed before its first commit confirms nothing
        while chunk := os.read(confirmations, 8 * 1024):
            for (value,) in struct.iter_unpack("<q", chunk[: len(chunk) // 8 * 8]):
                confirmed = value
        os.close(confirmations)
        stored = read_n(session_dir, session_id, **options)
        assert stored is not None, "the session was torn or lost"
        # Every confirmed commit survived; at most the one in flight landed too.
        assert confirmed <= stored <= confirmed + 1
    leftovers = [f for f in session_files(session_dir) if f.endswith(".lock")]
    assert leftovers == []


def test_sigterm_while_waiting_for_a_lock_does_not_leave_a_lock(session_dir):
    session_id, _ = store_session(session_dir, {"n": 0, "log": []})

    def holder(ready):
        with SessionStore(Transaction({"SID": session_id}), session_dir) as store:
            store.get_session(0)
            os.write(ready, b"L")
            time.sleep(1.0)

    def waiter(ready):
        os.write(ready, b"W")
        increment(session_dir, session_id, 1)

    hpid, hready = fork_child(holder)
    wait_for_byte(hready)
    wpid, wready = fork_child(waiter)
    wait_for_byte(wready)
    time.sleep(0.2)
    os.kill(wpid, signal.SIGTERM)
    os.waitpid(wpid, 0)
    wait_ok(hpid)
    assert read_n(session_dir, session_id) == 0
    assert session_files(session_dir) == [stored_relpath(session_id)]


def test_threads_of_one_process_lose_no_update(session_dir):
    import threading

    session_id, _ = store_session(session_dir, {"n": 0, "log": []})
    errors = []

    def work():
        try:
            increment(session_dir, session_id, 100, delay=0.01)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert read_n(session_dir, session_id) == 400


INCREMENTS = """
import sys, time
from fastsession import SessionStore

class Cookie:
    def __init__(self, value): self.value = value

class Trans:
    def get_cookie(self, name): return Cookie({session_id!r})
    def set_cookie_value(self, name, value): raise AssertionError("the session was lost")
    def delete_cookie(self, name): pass

failed = 0
for _ in range({times}):
    try:
        with SessionStore(Trans(), {directory!r}, timeout=10) as store:
            session = store.get_session(0)
            if session is None:
                raise AssertionError("the session was lost")
            value = session["n"]
            time.sleep(0.005)  # a request's work, with the lock held
            session["n"] = value + 1
    except Exception as exc:
        failed += 1
print(failed)
"""


def test_two_containers_sharing_a_volume_lose_no_update(session_dir):
    # Two workers, one in a PID namespace of its own (a second container of one
    # pod: same hostname and boot id, other pids), incrementing one session.
    import subprocess
    import sys

    session_id, _ = store_session(session_dir, {"n": 0})
    script = INCREMENTS.format(session_id=session_id, times=100, directory=session_dir)
    commands = [
        [sys.executable, "-c", script],
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script],
    ]
    workers = [subprocess.Popen(c, cwd="/", stdout=subprocess.PIPE, text=True) for c in commands]
    failed = [int(w.communicate(timeout=120)[0]) for w in workers]
    assert failed == [0, 0]
    assert read_n(session_dir, session_id) == 200
