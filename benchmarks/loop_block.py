"""How long a session operation blocks the event loop, inline, against a hop to a thread.

    python benchmarks/loop_block.py [DIRECTORY ...]     (default: /dev/shm and the temp directory)

For each directory: 2000 locked read-modify-write requests through
AsyncSessionStore, timing every backend call the async face makes inline on
the loop (lock, read, commit, release), then the same number of no-op hops
to the loop's default thread pool. Prints the median, p99 and maximum of each.
This is what chose inline calls with a move to threads after a slow streak
(fastsession/aio.py, README "Async").
"""

import asyncio
import statistics
import sys
import tempfile
import time

from fastsession.aio import AsyncSessionStore, async_files
from fastsession.files import FileBackend
from fastsession.store import shared_backend

REQUESTS = 2000


class Jar:
    def __init__(self):
        self.cookies = {}

    def get_cookie(self, name):
        value = self.cookies.get(name)
        return None if value is None else type("Cookie", (), {"value": value})()

    def set_cookie_value(self, name, value):
        self.cookies[name] = value

    def delete_cookie(self, name):
        self.cookies.pop(name, None)


def summary(samples):
    samples = sorted(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    return (
        f"median {statistics.median(samples) * 1e6:7.1f} µs  p99 {p99 * 1e6:7.1f} µs  max {samples[-1] * 1e6:8.1f} µs"
    )


async def measure(directory):
    jar = Jar()
    io = async_files(shared_backend(FileBackend, directory, 1, 1, None, 30.0, None, False))
    timings = {}
    real_now = io.now_inline

    def timed_now(step):
        started = time.perf_counter()
        try:
            return real_now(step)
        finally:
            timings.setdefault(step[0], []).append(time.perf_counter() - started)

    io.now_inline = timed_now
    io.now = timed_now  # always inline here: what a call costs the loop
    for _ in range(REQUESTS):
        async with AsyncSessionStore(jar, directory) as store:
            session = await store.get_session(True)
            session["visits"] = session.get("visits", 0) + 1
            session["cart"] = list(range(20))
    loop = asyncio.get_running_loop()
    hops = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        await loop.run_in_executor(None, int)
        hops.append(time.perf_counter() - started)
    return timings, hops


def main(places):
    for place in places:
        directory = tempfile.mkdtemp(prefix="loop-block-", dir=place)
        timings, hops = asyncio.run(measure(directory))
        print(f"{place}: {REQUESTS} locked read-modify-write requests, each call inline on the loop")
        for name, samples in timings.items():
            print(f"  {name:8s} {summary(samples)}")
        every = [t for samples in timings.values() for t in samples]
        print(f"  {'any call':8s} {summary(every)}")
        print(f"  {'thread hop':8s} {summary(hops)}  (a no-op in the loop's default executor)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["/dev/shm", tempfile.gettempdir()])
