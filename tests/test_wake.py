"""Wake-ups: a waiter is woken by the release itself (another process's too), not by its next poll."""

import os
import uuid

import pytest
import redis
from conftest import Transaction
from helpers import fork_child, wait_ok

from fastsession import LockTimeout, _wake
from fastsession.files import FileBackend
from fastsession.redis import RedisBackend, RedisSessionStore, lock_keys

KEY = "w" * 43


@pytest.mark.parametrize("how", ["unlink", "rename"])
def test_a_lockfile_removed_by_another_process_wakes_its_waiter(tmp_path, how):
    backend = FileBackend(str(tmp_path))
    handle = backend.open(KEY)  # makes the shard folder; the lock is ours
    lock_path = handle[1]
    subscription = _wake.subscribe(lock_path)
    assert subscription is not None
    try:
        assert not subscription.wait(0.05)  # nothing happened: the pause runs out

        def release(_):
            if how == "unlink":
                os.unlink(lock_path)
            else:  # a commit renames the lockfile over the session file
                os.rename(lock_path, handle[0])

        pid, fd = fork_child(release)
        wait_ok(pid)
        os.close(fd)
        assert subscription.wait(5)  # woken, long before the 5 s pause
    finally:
        subscription.close()
        os.close(handle[2])


def test_another_file_going_wakes_nobody(tmp_path):
    backend = FileBackend(str(tmp_path))
    handle = backend.open(KEY)
    other = backend.open(KEY[:2] + "x" * 41)
    subscription = _wake.subscribe(handle[1])
    try:
        backend.release(other)
        assert not subscription.wait(0.1)
        backend.release(handle)
        assert subscription.wait(5)
    finally:
        subscription.close()


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_a_redis_release_pushes_a_wake_up_only_while_someone_waits(client):
    backend = RedisBackend(client, True, 1.0, None, 30.0, None, f"test-wake-{uuid.uuid4().hex[:8]}:")
    lock_key, data_key, waiting, wake = lock_keys(backend._keys(KEY)[1])
    handle = backend.open(KEY)
    backend.release(handle)
    assert client.exists(waiting, wake) == 0  # nobody waited: nothing written
    handle = backend.open(KEY)
    assert backend.script("acquire", [lock_key, data_key, waiting], ["other", 1000]) == [0]  # a waiter failed
    assert 0 < client.pttl(waiting) <= 1000
    backend.release(handle)
    assert client.lrange(wake, 0, -1) == [b"1"] and 0 < client.pttl(wake) <= 1000
    assert client.blpop([wake], timeout=1) is not None  # what the waiter's BLPOP returns at once


def test_a_redis_lock_timeout_names_the_holder(client):
    prefix = f"test-wake-{uuid.uuid4().hex[:8]}:"
    trans = Transaction()
    with RedisSessionStore(trans, client, prefix=prefix) as store:
        store.get_session(True)["n"] = 1
    holder = RedisSessionStore(Transaction(trans.cookies), client, prefix=prefix)
    holder.get_session(False)
    try:
        with pytest.raises(LockTimeout) as caught:
            RedisSessionStore(Transaction(trans.cookies), client, prefix=prefix, timeout=0.05).get_session(False)
    finally:
        holder.rollback()
    assert caught.value.holder["pid"] == os.getpid() and caught.value.holder["alive"] is True
    assert f"pid {os.getpid()}" in str(caught.value)


def test_a_file_lock_timeout_names_the_holder(tmp_path):
    backend = FileBackend(str(tmp_path), timeout=0.05)
    handle = backend.open(KEY)
    try:
        with pytest.raises(LockTimeout) as caught:
            backend.open(KEY)
    finally:
        backend.release(handle)
    assert caught.value.holder["pid"] == os.getpid() and caught.value.holder["alive"] is True


def held_then_released(kernels_lock, lock_path, after):
    """A thread of this process that holds ``lock_path`` and releases it ``after`` seconds later."""
    import threading

    from fastsession._holder import holder_record

    fd = kernels_lock.try_lock(lock_path, holder_record())
    assert fd >= 0
    releaser = threading.Timer(after, kernels_lock.unlock, (fd, lock_path))
    releaser.start()
    return releaser


def test_a_waiter_is_woken_by_the_release_not_by_its_next_poll(tmp_path, kernels, monkeypatch):
    """With polls 30 s apart, only the wake-up can hand the lock over within the 20 s timeout."""
    from fastsession import _lock_py
    from fastsession._holder import holder_record

    monkeypatch.setattr(_lock_py, "FIRST_PAUSE", 30.0)
    monkeypatch.setattr(_lock_py, "MAX_PAUSE", 30.0)
    woken = []
    real_wait = _wake.Subscription.wait

    def noting_wait(self, seconds):
        woken.append(real_wait(self, seconds))
        return woken[-1]

    monkeypatch.setattr(_wake.Subscription, "wait", noting_wait)
    lock_path = str(tmp_path / "s.lock").encode()
    releaser = held_then_released(kernels.lock, lock_path, 0.05)
    fd = kernels.lock.acquire(lock_path, holder_record(), 60.0, 20.0, 30.0)
    releaser.join()
    kernels.lock.unlock(fd, lock_path)
    assert woken == [True]  # one pause, ended by the release (a poll would have slept out its 20 s)


def test_without_inotify_a_contended_lock_is_had_by_polling(tmp_path, kernels, monkeypatch):
    from fastsession._holder import holder_record

    monkeypatch.setattr(_wake, "subscribe", lambda *args, **kwargs: None)  # a libc without inotify
    lock_path = str(tmp_path / "s.lock").encode()
    releaser = held_then_released(kernels.lock, lock_path, 0.05)
    fd = kernels.lock.acquire(lock_path, holder_record(), 0.01, 20.0, 30.0)
    releaser.join()
    kernels.lock.unlock(fd, lock_path)
