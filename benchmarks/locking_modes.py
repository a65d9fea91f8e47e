"""Round-trip cost of each locking mode, side by side in one run (tmpfs and disk, both twins).

    python benchmarks/locking_modes.py [--rounds 30] [--dir DIR]...

Rows: a request that reads and changes nothing, and one that changes one
key, with locking="request" (the lock held for the request), "commit"
(optimistic: no lock for an unchanged session, the lock for microseconds at
a changed one), and a read-only request (``store.read_only()``). Medians of
interleaved rounds (fastsession.bench.measure), µs, and each commit row as a
ratio of the request row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from fastsession import _kernels
from fastsession.bench.measure import interleaved_medians
from fastsession.files import FileBackend
from fastsession.store import SessionStore


class Trans:
    def __init__(self, sid):
        self.sid = sid

    def get_cookie(self, name):
        return self

    @property
    def value(self):
        return self.sid

    def set_cookie_value(self, name, value):
        self.sid = value

    def delete_cookie(self, name):
        pass


def runner(directory, kernels, locking, change, read_only=False):
    class Store(SessionStore):
        __slots__ = ()
        backend_class = type("Backend", (FileBackend,), {"kernels": kernels})

    trans = Trans(None)
    with Store(trans, directory) as store:
        session = store.get_session(True)
        session.update({"user": "ann", "cart": list(range(20)), "n": 0})

    def run(n):
        began = time.perf_counter()
        for _ in range(n):
            store = Store(trans, directory, locking=locking)
            if read_only:
                store.read_only()
            session = store.get_session(False)
            if change:
                session["n"] += 1
            store.close()
        return time.perf_counter() - began

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dir", action="append")
    args = parser.parse_args()
    places = args.dir or [d for d in ("/dev/shm", tempfile.gettempdir()) if os.path.isdir(d)]
    for place in places:
        for kind in ("c", "py"):
            kernels = _kernels.twin(kind)
            directory = tempfile.mkdtemp(prefix="modes-", dir=place)
            runners = {
                "read, request": runner(directory, kernels, "request", False),
                "read, commit": runner(directory, kernels, "commit", False),
                "read, read_only()": runner(directory, kernels, "request", False, read_only=True),
                "change, request": runner(directory, kernels, "request", True),
                "change, commit": runner(directory, kernels, "commit", True),
            }
            medians = interleaved_medians(runners, args.rounds)
            print(f"-- {place}, {kind} twin: µs per round trip (ratio to the request row)")
            for name, value in medians.items():
                base = medians[("read" if name.startswith("read") else "change") + ", request"]
                print(f"  {name:20} {value * 1e6:8.1f}  {value / base:5.2f}x")


if __name__ == "__main__":
    main()
