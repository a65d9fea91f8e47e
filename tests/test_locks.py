"""``fastsession locks``: the live table of held locks, on files and on Redis, with real holders."""

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
import redis
from conftest import Transaction
from helpers import hold_in_new_pid_namespace, hold_until_killed, kill_and_reap, kill_leave_zombie, session_path

from fastsession import SessionStore
from fastsession._holder import HOST
from fastsession.names import stored_name
from fastsession.redis import RedisSessionStore

OUR_PIDNS = HOST.rpartition(b"/")[2].decode()


def locks(*args):
    """Run the installed console script; its JSON rows."""
    done = subprocess.run(["fastsession", "locks", *args, "--json"], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def new_session(session_dir):
    trans = Transaction()
    with SessionStore(trans, session_dir) as store:
        store.get_session(True)["n"] = 1
    return trans.cookies["SID"]


def hold_files(session_dir, session_id):
    def hold():
        store = SessionStore(Transaction({"SID": session_id}), session_dir)
        store.get_session(False)
        return store

    return hold_until_killed(hold)


def test_files_a_live_holder_then_the_same_holder_dead(session_dir):
    session_id = new_session(session_dir)
    assert locks(session_dir) == []
    pid = hold_files(session_dir, session_id)
    try:
        (row,) = locks(session_dir)
        assert row["session"] == stored_name(session_id)[:8] + "…" and session_id not in json.dumps(row)
        assert (row["host"], row["pid"], row["pidns"], row["alive"], row["breakable"]) == (
            socket.gethostname(),
            pid,
            OUR_PIDNS,
            True,
            False,
        )
        assert 0 <= row["age"] < 30
        kill_leave_zombie(pid)  # killed, not yet reaped: dead all the same
        (row,) = locks(session_dir)
        assert (row["pid"], row["alive"], row["breakable"]) == (pid, False, True)
    finally:
        kill_and_reap(pid)  # a zombie takes the signal too, and is reaped


def test_files_a_holder_in_another_pid_namespace_is_neither_alive_nor_dead(session_dir, kernels):
    session_id = new_session(session_dir)
    child = hold_in_new_pid_namespace(kernels.name, os.fsencode(session_path(session_dir, session_id) + ".lock"))
    try:
        (row,) = locks(session_dir)
        assert row["pid"] == 1 and row["pidns"] != OUR_PIDNS
        assert row["alive"] is None and row["breakable"] is False  # young: judged by age, like another host
    finally:
        child.kill()
        child.wait()


def test_text_table_and_errors(session_dir):
    session_id = new_session(session_dir)
    pid = hold_files(session_dir, session_id)
    try:
        done = subprocess.run(["fastsession", "locks", session_dir], capture_output=True, text=True, cwd="/")
        header, line, footer = done.stdout.splitlines()
        assert header.split() == ["session", "host", "pidns", "pid", "age", "alive", "breakable"]
        assert (
            line.split()[0] == stored_name(session_id)[:8] + "…"
            and session_id not in done.stdout
            and str(pid) in line.split()
            and footer == "1 lock held"
        )
    finally:
        kill_and_reap(pid)
    missing = subprocess.run(["fastsession", "locks", session_dir + "/nope"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such session directory" in missing.stderr
    both = subprocess.run(["fastsession", "locks"], capture_output=True, text=True)
    assert both.returncode == 2 and "--redis" in both.stderr


HOLD_ON_REDIS = """
import sys, time, redis
sys.path.insert(0, {tests!r})
from conftest import Transaction
from fastsession.redis import RedisSessionStore
store = RedisSessionStore(Transaction({{"SID": {sid!r}}}), redis.Redis.from_url({url!r}), prefix={prefix!r}, lock_ttl=60)
store.get_session(False)
sys.stdout.write("L"); sys.stdout.flush()
time.sleep(600)
"""


def test_redis_live_dead_and_other_namespace_holders(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    ids = []
    for _ in range(3):
        trans = Transaction()
        with RedisSessionStore(trans, client, prefix=prefix) as store:
            store.get_session(True)["n"] = 1
        ids.append(trans.cookies["SID"])
    tests = os.path.dirname(os.path.abspath(__file__))

    def holder(session_id, *wrap):
        child = subprocess.Popen(
            [
                *wrap,
                sys.executable,
                "-c",
                HOLD_ON_REDIS.format(tests=tests, sid=session_id, url=redis_url, prefix=prefix),
            ],
            stdout=subprocess.PIPE,
            cwd="/",
        )
        assert child.stdout.read(1) == b"L"
        return child

    alive, dead = holder(ids[0]), holder(ids[1])
    elsewhere = holder(ids[2], "unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
    dead.kill()
    dead.wait()
    try:
        rows = {row["session"]: row for row in locks("--redis", redis_url, "--prefix", prefix, "--lock-ttl", "60")}
        assert set(rows) == {stored_name(i)[:8] + "…" for i in ids}
        live_row, dead_row, other_row = (rows[stored_name(i)[:8] + "…"] for i in ids)
        assert (live_row["pid"], live_row["alive"], live_row["host"], live_row["pidns"]) == (
            alive.pid,
            True,
            socket.gethostname(),
            OUR_PIDNS,
        )
        assert (dead_row["pid"], dead_row["alive"]) == (dead.pid, False)  # held until its TTL all the same
        assert other_row["pid"] == 1 and other_row["alive"] is None and other_row["pidns"] != OUR_PIDNS
        for row in rows.values():
            assert 0 <= row["age"] < 10 and 50 < row["expires_in"] <= 60 and row["breakable"] is None
            assert not any(i in json.dumps(row) for i in ids)
    finally:
        for child in (alive, elsewhere):
            child.kill()
            child.wait()
        client.close()


@pytest.fixture
def session_dir(tmp_path):
    path = str(tmp_path / "sessions")
    os.mkdir(path, 0o700)
    return path
