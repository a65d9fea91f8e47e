"""fastsession.aio.AsyncSessionStore: the sync store's contract, awaited, on the same files."""

import asyncio
import os
import threading
import time
import types

import pytest
from conftest import Transaction, session_files, store_session
from helpers import fork_child, hold_until_killed, kill_and_reap, session_path, wait_for_byte, wait_ok

import fastsession
from fastsession import LockTimeout, SerializationError, SessionError
from fastsession import store as store_module
from fastsession.aio import AsyncSessionStore, async_files
from fastsession.files import FileBackend
from fastsession.store import shared_backend


def run(coroutine, timeout=30):
    """Run ``coroutine`` on a new event loop; a hang fails the test instead of stalling the suite."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def locks(directory):
    return [f for f in session_files(directory) if f.endswith(".lock")]


def backend_of(session_dir):
    return async_files(shared_backend(FileBackend, session_dir, 1, 1, None, 30.0, None, False))


@pytest.fixture(autouse=True)
def shared_backends_from_scratch():
    """Each test starts with no shared backend made: the bounded cache (store.shared_backend) is never cleared
    between a test's backend_of and its stores, which would give them another backend than the one it set up
    (it happened when earlier tests had made many backends)."""
    store_module._backends.clear()


def test_round_trip_and_a_sync_store_reads_what_the_async_one_wrote(session_dir):
    trans = Transaction()

    async def write():
        async with AsyncSessionStore(trans, session_dir) as store:
            session = await store.get_session(True)
            session["cart"] = [1, 2]
            return session.session_id

    sid = run(write())
    assert trans.cookies["SID"] == sid
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False) == {"cart": [1, 2]}
        store.get_session(False)["cart"].append(3)

    async def read():
        async with AsyncSessionStore(Transaction(trans.cookies), session_dir) as store:
            return dict(await store.get_session(False))

    assert run(read()) == {"cart": [1, 2, 3]}
    assert locks(session_dir) == []


def test_no_cookie_without_create_is_none_and_an_unknown_id_is_never_adopted(session_dir):
    planted = "A" * 43

    async def go():
        store = AsyncSessionStore(Transaction({"SID": planted}), session_dir)
        assert await store.get_session(False) is None
        session = await store.get_session(True)
        assert session.session_id != planted
        session["x"] = 1
        await store.close()
        return store.trans

    trans = run(go())
    assert trans.cookies["SID"] != planted
    assert not os.path.exists(session_path(session_dir, planted))


def test_an_empty_new_session_is_not_stored(session_dir):
    async def go():
        async with AsyncSessionStore(Transaction(), session_dir) as store:
            await store.get_session(True)
            return await store.response_cookie()

    assert run(go()) is None
    assert session_files(session_dir) == []


def test_expire_regenerate_and_rollback(session_dir):
    sid, trans = store_session(session_dir, {"user": "ann"})

    async def regenerate():
        async with AsyncSessionStore(trans, session_dir) as store:
            await store.get_session(False)
            return await store.regenerate_id()

    new_id = run(regenerate())
    assert new_id != sid and trans.cookies["SID"] == new_id
    assert not os.path.exists(session_path(session_dir, sid))

    async def change_then_fail():
        async with AsyncSessionStore(trans, session_dir) as store:
            (await store.get_session(False))["user"] = "mallory"
            raise RuntimeError("view failed")

    with pytest.raises(RuntimeError):
        run(change_then_fail())
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False) == {"user": "ann"}  # rolled back

    async def expire():
        async with AsyncSessionStore(trans, session_dir) as store:
            await store.expire_session()

    run(expire())
    assert ("delete", "SID") in trans.events
    assert session_files(session_dir) == []


def test_an_unencodable_value_raises_at_close_keeps_the_data_and_releases(session_dir):
    _sid, trans = store_session(session_dir, {"n": 1})

    async def go():
        store = AsyncSessionStore(trans, session_dir)
        (await store.get_session(False))["n"] = object()
        await store.close()

    with pytest.raises(SerializationError, match="'n'"):
        run(go())
    assert locks(session_dir) == []
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False) == {"n": 1}


async def increment(session_dir, cookies, pause):
    async with AsyncSessionStore(Transaction(cookies), session_dir) as store:
        session = await store.get_session(False)
        seen = session["n"]
        await asyncio.sleep(pause)  # the view awaits something (a query) with the lock held
        session["n"] = seen + 1


def test_a_hundred_concurrent_increments_in_one_event_loop_lose_nothing(session_dir):
    # Waiters wait on the loop: if one blocked it, the holder could never finish (timeout).
    _sid, trans = store_session(session_dir, {"n": 0})

    async def go():
        await asyncio.gather(*(increment(session_dir, trans.cookies, 0.001) for _ in range(100)))

    run(go())
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 100
    assert locks(session_dir) == []


def test_a_waiter_lets_the_rest_of_the_loop_run(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def go():
        stop = asyncio.Event()
        tick = asyncio.ensure_future(ticker(stop))
        holder = AsyncSessionStore(Transaction(trans.cookies), session_dir)
        await holder.get_session(False)
        waiter = asyncio.ensure_future(increment(session_dir, trans.cookies, 0))
        await asyncio.sleep(0.3)
        assert not waiter.done()  # still waiting for the holder...
        count = len(ticks)
        await holder.close()  # ...which ran meanwhile, as did the ticker
        await waiter
        stop.set()
        await tick
        return count

    assert run(go()) >= 20  # the ticker went on while the waiter waited (0.3 s / 5 ms = 60)


def test_sync_and_async_processes_exclude_each_other(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    def sync_worker():
        for _ in range(50):
            with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
                session = store.get_session(False)
                seen = session["n"]
                time.sleep(0.001)
                session["n"] = seen + 1

    def async_worker():
        async def go():
            await asyncio.gather(*(increment(session_dir, trans.cookies, 0.001) for _ in range(50)))

        run(go(), timeout=60)

    children = [fork_child(lambda _: sync_worker()), fork_child(lambda _: async_worker())]
    for pid, _ in children:
        wait_ok(pid)
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 100


def test_a_lock_held_by_a_dead_process_is_broken(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    def hold():
        store = fastsession.SessionStore(Transaction(trans.cookies), session_dir)
        store.get_session(False)
        return store

    kill_and_reap(hold_until_killed(hold))
    assert locks(session_dir)
    run(increment(session_dir, trans.cookies, 0), timeout=5)
    assert locks(session_dir) == []


def test_timeout_raises_lock_timeout_and_leaves_the_holders_lock(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    async def go():
        holder = AsyncSessionStore(Transaction(trans.cookies), session_dir)
        await holder.get_session(False)
        try:
            with pytest.raises(LockTimeout):
                await AsyncSessionStore(Transaction(trans.cookies), session_dir, timeout=0.05).get_session(False)
            assert len(locks(session_dir)) == 1
        finally:
            await holder.rollback()

    run(go())
    assert locks(session_dir) == []


def test_cancelled_while_waiting_takes_no_lock(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    async def go():
        holder = AsyncSessionStore(Transaction(trans.cookies), session_dir)
        await holder.get_session(False)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(increment(session_dir, trans.cookies, 0), 0.1)
        await holder.close()

    run(go())
    assert locks(session_dir) == []
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 0


def test_cancelled_request_releases_its_lock_and_writes_nothing(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    async def view():
        async with AsyncSessionStore(Transaction(trans.cookies), session_dir) as store:
            (await store.get_session(False))["n"] = 99
            await asyncio.sleep(30)  # the client disconnects meanwhile

    async def go():
        task = asyncio.ensure_future(view())
        await asyncio.sleep(0.05)
        assert locks(session_dir)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    assert locks(session_dir) == []
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 0


# The threads the slow calls ran on, in order (each (name, thread ident)).
slow_calls = []


def slowly(real, seconds=0.02):
    def call(*args, **kwargs):
        slow_calls.append((real.__name__, threading.get_ident()))
        time.sleep(seconds)
        return real(*args, **kwargs)

    return call


@pytest.fixture
def slow_disk(monkeypatch):
    """Every lock, read, commit and release of the files backend takes 20 ms (a network disk, say).

    The common request's own path makes them through the kernels (compiled: not through these methods): it is
    slowed as a whole, as a slow disk would slow it.
    """
    slow_calls.clear()
    for name in ("try_open", "open_load", "load", "save", "release"):
        monkeypatch.setattr(FileBackend, name, slowly(getattr(FileBackend, name)))
    kernels = types.SimpleNamespace(**vars(FileBackend.kernels))
    kernels.open_request, kernels.close_request = slowly(kernels.open_request), slowly(kernels.close_request)
    monkeypatch.setattr(FileBackend, "kernels", kernels)


def test_a_slow_disk_moves_calls_off_the_event_loop(session_dir, slow_disk):
    """After a streak of slow inline calls, the calls run in worker threads, never on the loop's thread.

    (What that buys in loop latency is measured by benchmarks/loop_block.py, not timed here: a wall-clock
    bound fails on a loaded machine.)
    """
    _sid, trans = store_session(session_dir, {"n": 0})
    slow_calls.clear()  # (the sync store's: on the compiled request path, its commit is no backend call)
    io = backend_of(session_dir)
    io.offloaded_until = 0.0
    loop_thread = threading.get_ident()

    async def go():
        for _ in range(2):  # lock+read and commit: slow calls in a row, inline until the streak is seen
            await increment(session_dir, trans.cookies, 0)
        assert io.offloaded()
        before = list(slow_calls)
        slow_calls.clear()
        await asyncio.gather(*(increment(session_dir, trans.cookies, 0) for _ in range(3)))
        return before

    try:
        before = run(go())
    finally:
        io.offloaded_until = 0.0
    assert before[0] == ("open_request", loop_thread)  # the first request's calls ran inline, on the loop
    assert len(slow_calls) >= 6 and all(thread != loop_thread for _, thread in slow_calls), slow_calls
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 5


@pytest.fixture
def tmpfs_dir():
    """A session folder on tmpfs, where every other call takes microseconds (this ext4's can take ms)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(dir="/dev/shm")
    yield os.path.join(path, "sessions")
    shutil.rmtree(path, ignore_errors=True)


def test_one_slow_call_among_fast_ones_keeps_calls_inline(tmpfs_dir, monkeypatch):
    session_dir = tmpfs_dir
    _sid, trans = store_session(session_dir, {"n": 0})
    io = backend_of(session_dir)
    io.offloaded_until = 0.0
    monkeypatch.setattr(FileBackend, "save", slowly(FileBackend.save))  # one slow call per request

    async def go():
        for _ in range(3):
            await increment(session_dir, trans.cookies, 0)
        return io.offloaded()

    assert run(go()) is False  # a preempted process is no slow disk


def test_close_in_a_thread_finishes_through_two_cancellations(session_dir, slow_disk):
    _sid, trans = store_session(session_dir, {"n": 0})
    io = backend_of(session_dir)

    async def go():
        store = AsyncSessionStore(Transaction(trans.cookies), session_dir)
        (await store.get_session(False))["n"] = 1
        io.offloaded_until = time.monotonic() + 60  # calls go to a thread
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.005)
        closing.cancel()
        await asyncio.sleep(0.001)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert locks(session_dir) == []  # the cancellation came out only once the cleanup was done

    try:
        run(go())
    finally:
        io.offloaded_until = 0.0
    assert locks(session_dir) == []
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 1  # the commit was under way: it completed


def test_a_lock_taken_in_a_thread_after_cancellation_is_released(session_dir, monkeypatch):
    _sid, trans = store_session(session_dir, {"n": 0})
    io = backend_of(session_dir)
    try_open = FileBackend.try_open

    def slow_try_open(self, key):
        time.sleep(0.05)
        return try_open(self, key)

    monkeypatch.setattr(FileBackend, "try_open", slow_try_open)

    async def go():
        io.offloaded_until = time.monotonic() + 60
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(AsyncSessionStore(Transaction(trans.cookies), session_dir).get_session(False), 0.01)
        await asyncio.sleep(0.2)  # the thread took the lock after the cancellation...

    try:
        run(go())
    finally:
        io.offloaded_until = 0.0
    assert locks(session_dir) == []  # ...and let it go


def test_cancelled_while_its_session_is_read_in_a_thread_releases_the_lock(session_dir, monkeypatch):
    _sid, trans = store_session(session_dir, {"n": 0})
    io = backend_of(session_dir)
    monkeypatch.setattr(FileBackend, "load", slowly(FileBackend.load, 0.1))

    async def go():
        io.offloaded_until = time.monotonic() + 60
        with pytest.raises(asyncio.TimeoutError):  # cancelled with the lock taken, mid-read
            await asyncio.wait_for(AsyncSessionStore(Transaction(trans.cookies), session_dir).get_session(False), 0.05)
        await asyncio.sleep(0.3)

    try:
        run(go())
    finally:
        io.offloaded_until = 0.0
    assert locks(session_dir) == []


def test_a_store_holds_one_session(session_dir):
    sid, trans = store_session(session_dir, {"n": 0})

    async def go():
        async with AsyncSessionStore(trans, session_dir) as store:
            await store.get_session(False)
            assert await store._get_session(sid, False) is await store.get_session(False)
            with pytest.raises(SessionError, match="another session"):
                await store._get_session("B" * 43, True)

    run(go())


def test_holder_in_another_process_is_waited_for(session_dir):
    _sid, trans = store_session(session_dir, {"n": 0})

    def body(ready):
        with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
            store.get_session(False)["n"] = 1
            os.write(ready, b"L")
            time.sleep(0.3)

    pid, ready = fork_child(body)
    wait_for_byte(ready)
    run(increment(session_dir, trans.cookies, 0))
    wait_ok(pid)
    with fastsession.SessionStore(Transaction(trans.cookies), session_dir) as store:
        assert store.get_session(False)["n"] == 2


def busily(real, seconds=0.004):
    """``real`` after a 4 ms busy loop: slow on the wall clock, but never blocked (a preempted process, say)."""

    def call(*args, **kwargs):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return real(*args, **kwargs)

    return call


@pytest.mark.skipif(fastsession.aio.voluntary_switches is None, reason="no per-thread context switch counts here")
def test_calls_slow_only_on_the_cpu_stay_inline(tmpfs_dir, monkeypatch):
    # A slow disk makes a call wait (the thread blocks); CPU contention only preempts it. Every call here
    # takes 4 ms without ever blocking: it is never taken for a slow disk.
    session_dir = tmpfs_dir
    _sid, trans = store_session(session_dir, {"n": 0})
    io = backend_of(session_dir)
    io.offloaded_until = 0.0
    for name in ("try_open", "open_load", "load", "save", "release"):
        monkeypatch.setattr(FileBackend, name, busily(getattr(FileBackend, name)))

    async def go():
        for _ in range(4):
            await increment(session_dir, trans.cookies, 0)
        return io.offloaded()

    assert run(go()) is False
