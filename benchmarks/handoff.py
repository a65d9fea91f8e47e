"""Hand-off latency: from a holder's release to the next waiter holding the lock, wake-ups on and off.

    python benchmarks/handoff.py [--seconds 3] [--dir /dev/shm/handoff] [--redis redis://...]

N+1 processes contend for one session's lock; each holds it 5 ms (a short
request), notes the release time (CLOCK_MONOTONIC, shared by all processes)
in shared memory, releases, and tries again. A process that was already
waiting when the lock was released records release -> held. Printed per
backend and waiter count: hand-off p50/p99, the longest whole wait, and how
many times the lock changed hands (throughput), with wake-ups on (inotify /
BLPOP) and off (polling only: the back-off schedule alone), side by side in
one run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time

import redis

from fastsession import _wake
from fastsession.files import FileBackend
from fastsession.redis import RedisBackend

HOLD = 0.005


def worker(kind: str, where: str, wake: bool, release_at, start, seconds: float, out) -> None:
    if kind == "files":
        if not wake:
            _wake._unavailable, _wake._waker = True, None
        backend = FileBackend(where)
        key = "h" * 43
    else:
        backend = RedisBackend(redis.Redis.from_url(where))
        if not wake:
            backend.wait = lambda key, seconds: time.sleep(seconds)
        key = "r" * 43
    start.wait()  # every process ready: the clock starts for all at once
    deadline = time.monotonic() + seconds
    handoffs, waits, held = [], [], 0
    while time.monotonic() < deadline:
        asked = time.monotonic()
        handle = backend.open(key)
        got = time.monotonic()
        released = release_at.value
        if released > asked:  # waited through a release: that one was handed to us
            handoffs.append(got - released)
        waits.append(got - asked)
        held += 1
        time.sleep(HOLD)
        release_at.value = time.monotonic()
        backend.release(handle)
    out.put((handoffs, max(waits), held))


def measure(kind: str, where: str, waiters: int, wake: bool, seconds: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    release_at = ctx.Value("d", 0.0, lock=False)
    out = ctx.Queue()
    start = ctx.Barrier(waiters + 1)
    procs = [
        ctx.Process(target=worker, args=(kind, where, wake, release_at, start, seconds, out))
        for _ in range(waiters + 1)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    handoffs = sorted(h for r in results for h in r[0])
    p99 = handoffs[min(len(handoffs) - 1, int(len(handoffs) * 0.99))] if handoffs else float("nan")
    return {
        "p50": statistics.median(handoffs) if handoffs else float("nan"),
        "p99": p99,
        "worst_wait": max(r[1] for r in results),
        "held": sum(r[2] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", default=None, help="session folder (default: a new one on /dev/shm)")
    parser.add_argument("--redis", default=os.environ.get("FASTSESSION_REDIS_URL"))
    parser.add_argument("--waiters", default="2,4,16")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="handoff-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    kinds = [("files", folder)] + ([("redis", args.redis)] if args.redis else [])
    print(f"hold {HOLD * 1000:.0f} ms, {args.seconds:.0f} s per row; ms; wake-ups on | off (polling only)")
    print(
        f"{'backend':8} {'waiters':>7} | {'p50':>6} {'p99':>6} {'worst':>7} {'held':>5} | "
        f"{'p50':>6} {'p99':>6} {'worst':>7} {'held':>5}"
    )
    for kind, where in kinds:
        for waiters in [int(w) for w in args.waiters.split(",")]:
            on = measure(kind, where, waiters, True, args.seconds)
            off = measure(kind, where, waiters, False, args.seconds)
            cells = " | ".join(
                f"{r['p50'] * 1e3:6.2f} {r['p99'] * 1e3:6.2f} {r['worst_wait'] * 1e3:7.1f} {r['held']:5d}"
                for r in (on, off)
            )
            print(f"{kind:8} {waiters:7d} | {cells}")
    if args.redis:
        backend = RedisBackend(redis.Redis.from_url(args.redis))
        trips = []
        for _ in range(300):
            began = time.perf_counter()
            backend.script("read", ["fastsession:rtt"], [])
            trips.append(time.perf_counter() - began)
        print(f"one Redis script round trip (redis-py, this run): median {statistics.median(trips) * 1e3:.3f} ms")
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
