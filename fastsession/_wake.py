"""Wake-ups for lock waiters: a waiter sleeps until the lockfile it waits for goes, not until its next poll.

One inotify instance per process watches the shard folders that waiters
wait in; a daemon thread reads its events and wakes the waiters of the
lockfile that was removed (unlink: a release) or renamed away (a commit).
The waiters' polling schedule stays as it was, so a lock released where
inotify cannot see it (another host on a network file system) is still
found. Where inotify is missing or out of watches, waiting is polling only.

Costs nothing on an uncontended lock: only a waiter subscribes. Closing an
inotify instance costs ~10 ms, so the instance lives as long as the process.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import select
import struct
import sys
import threading
from typing import Any, Callable

logger = logging.getLogger(__name__)

IN_MOVED_FROM = 0x00000040
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
MASK = IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
MAX_WATCHES = 64  # shard folders watched at once per process; the least recently used go first


class Subscription:
    """One waiter's interest in one lockfile: ``wait(seconds)`` returns early when it goes."""

    __slots__ = ("callback", "event", "key", "waker")

    def __init__(self, waker: Waker, key: tuple[int, bytes], callback: Callable[[], Any] | None) -> None:
        self.waker, self.key = waker, key
        self.event = threading.Event() if callback is None else None
        self.callback = callback or self.event.set  # type: ignore[union-attr]

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when woken (a release since the last wait counts)."""
        assert self.event is not None
        woken = self.event.wait(seconds)
        self.event.clear()
        return woken

    def close(self) -> None:
        self.waker.unsubscribe(self)


class Waker:
    """This process's inotify instance, its watches, and the thread that wakes waiters."""

    def __init__(self, libc: Any) -> None:
        self.libc = libc
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self.fd = fd
        self.pid = os.getpid()
        self.mutex = threading.Lock()
        self.watches: collections.OrderedDict[int, bytes] = collections.OrderedDict()  # wd -> folder
        self.waiting: dict[tuple[int, bytes], list[Subscription]] = {}
        threading.Thread(target=self._serve, name="fastsession-lock-waker", daemon=True).start()

    def subscribe(self, lock_path: bytes, callback: Callable[[], Any] | None = None) -> Subscription | None:
        """Be woken when ``lock_path`` goes: a Subscription, or None when it cannot be watched."""
        folder, name = os.path.split(lock_path)
        with self.mutex:
            wd = self.libc.inotify_add_watch(self.fd, folder, MASK)
            if wd < 0:  # the folder went, or no watches are left for this user: poll
                return None
            self.watches[wd] = folder
            self.watches.move_to_end(wd)
            subscription = Subscription(self, (wd, name), callback)
            self.waiting.setdefault((wd, name), []).append(subscription)
            if len(self.watches) > MAX_WATCHES:
                self._forget_unused()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self.mutex:
            waiters = self.waiting.get(subscription.key)
            if waiters is not None:
                try:
                    waiters.remove(subscription)
                except ValueError:
                    pass
                if not waiters:
                    del self.waiting[subscription.key]

    def _forget_unused(self) -> None:
        busy = {wd for wd, _ in self.waiting}
        for wd in list(self.watches):
            if len(self.watches) <= MAX_WATCHES:
                break
            if wd not in busy:
                del self.watches[wd]
                self.libc.inotify_rm_watch(self.fd, wd)

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            poller.poll()
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:  # closed (a forked child dropped its parent's instance)
                return
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        woken: list[Subscription] = []
        offset = 0
        with self.mutex:
            while offset + EVENT.size <= len(data):
                wd, mask, _, size = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size : offset + EVENT.size + size].rstrip(b"\0")
                offset += EVENT.size + size
                if mask & (IN_Q_OVERFLOW | IN_IGNORED):  # events lost, or a folder gone: wake them all
                    if mask & IN_IGNORED:
                        self.watches.pop(wd, None)
                    woken += [
                        s for key, subs in self.waiting.items() if mask & IN_Q_OVERFLOW or key[0] == wd for s in subs
                    ]
                else:
                    woken += self.waiting.get((wd, name), ())
        for subscription in woken:
            try:
                subscription.callback()
            except Exception:  # a waiter's loop closed meanwhile: it is gone, nobody to wake
                pass


_waker: Waker | None = None
_unavailable = not sys.platform.startswith("linux")
_creating = threading.Lock()


def subscribe(lock_path: bytes, callback: Callable[[], Any] | None = None) -> Subscription | None:
    """This process's Waker's subscription to ``lock_path``; None where waiting can only poll."""
    global _waker, _unavailable
    waker = _waker
    if waker is None:
        if _unavailable:
            return None
        with _creating:
            if _waker is None:
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    _waker = Waker(libc)
                except (OSError, AttributeError) as exc:  # no inotify (non-Linux libc), or no instance left
                    logger.info("lock waiters poll without wake-ups: %s", exc)
                    _unavailable = True
                    return None
            waker = _waker
    return waker.subscribe(lock_path, callback)


def _forget_after_fork() -> None:
    global _waker
    if _waker is not None:  # the parent's instance and thread: the child makes its own
        fd, _waker = _waker.fd, None
        try:
            os.close(fd)
        except OSError:
            pass


os.register_at_fork(after_in_child=_forget_after_fork)
