"""Where a whole request's time goes: the process's user and system CPU time per request (getrusage), one
adapter with fastsession on files (tmpfs) against the framework's in-memory session layer, in alternating
runs in one process.

    python benchmarks/whole_request_cpu.py flask [REQUESTS [RUNS]]      # flask, django or starlette

The in-memory layer makes no system call, so its system time is about nil; fastsession's is what the kernel
does in the store's system calls, inside a whole request (compare the C floor's bench row, the same calls in
a loop). The kernel splits user from system time by its ticks: over about a second of requests the split
holds to a few per cent.
"""

import resource
import sys
import tempfile
import time
from collections.abc import Callable

from whole_request_ratio import TABLES


def measured(run: Callable[[int], object], requests: int) -> tuple[float, float, float]:
    """(wall, user, system) seconds per request over ``requests`` requests."""
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(requests)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return (
        wall / requests,
        (after.ru_utime - before.ru_utime) / requests,
        (after.ru_stime - before.ru_stime) / requests,
    )


def main(adapter: str, requests: int = 3000, runs: int = 3) -> dict[str, list[tuple[float, float, float]]]:
    table, name, baseline = TABLES[adapter]
    directory = tempfile.mkdtemp(dir="/dev/shm")
    runners = {contender: table[contender](directory)["modify"] for contender in (name, baseline)}
    results: dict[str, list[tuple[float, float, float]]] = {contender: [] for contender in runners}
    for run in runners.values():
        run(max(requests // 10, 1))  # warm
    for _ in range(runs):
        for contender, run in runners.items():
            results[contender].append(measured(run, requests))
    print(f"{'µs per request':>16} {'wall':>7} {'user':>7} {'system':>7}   ({requests} requests a run, {runs} runs)")
    for contender, rows in results.items():
        for wall, user, system in rows:
            print(f"{'':16} {wall * 1e6:7.1f} {user * 1e6:7.1f} {system * 1e6:7.1f}   {contender}")
    return results


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:4]))
