"""Timing: interleaved batches and medians; contention with real processes.

Every contender of a scenario is timed in the same rounds, one batch each in
turn, so a noisy moment on a shared machine hits all of them alike; the
figure reported is the median of the per-operation times of the batches.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from typing import Any, Callable

Runner = Callable[[int], float]


def batch_size(run: Runner, target: float) -> int:
    """How many operations make one batch of about ``target`` seconds."""
    run(1)  # warm up: first-touch of files, imports, caches
    k = 1
    while k < 1 << 20:
        if run(k) >= target:
            break
        k *= 2
    return max(1, k)


def interleaved_medians(
    runners: dict[str, Runner], rounds: int, target: float = 0.002, progress: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Median seconds per operation of each runner, all timed in the same rounds."""
    stats = interleaved_stats(runners, rounds, target, progress)
    return {name: figures["median"] for name, figures in stats.items()}


def interleaved_stats(
    runners: dict[str, Runner], rounds: int, target: float = 0.002, progress: Callable[[], None] = lambda: None
) -> dict[str, dict[str, float]]:
    """``median`` seconds per operation of each runner, all timed in the same rounds, and ``iqr``: the
    interquartile range of its batches over that median (how far to trust the figure)."""
    sizes = {name: batch_size(run, target) for name, run in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    if not names:  # every contender of this scenario is "not measured"
        return {}
    for round_ in range(rounds):
        shift = round_ % len(names)  # no contender is always first after a pause
        for name in names[shift:] + names[:shift]:
            samples[name].append(runners[name](sizes[name]) / sizes[name])
        progress()
    stats = {}
    for name, values in samples.items():
        median = statistics.median(values)
        quartiles = statistics.quantiles(values, n=4) if len(values) >= 2 else [median, median, median]
        stats[name] = {"median": median, "iqr": (quartiles[2] - quartiles[0]) / median if median else 0.0}
    return stats


def _worker(increment: Callable[[], None], start: Any, count: int) -> None:
    start.wait()
    for _ in range(count):
        increment()


class Broke(Exception):
    """A store that failed under contention: a worker crashed, or they stopped progressing."""


def contend(
    increment: Callable[[], None], counter: Callable[[], int], processes: int, count: int, deadline: float = 20.0
) -> tuple[float, float, int]:
    """(operations/s of one process alone, aggregate operations/s of ``processes``, lost updates).

    Each process makes ``count`` increments of the same session; a store that
    serialises them ends at exactly processes x count more. Raises Broke when
    a worker dies or the run outlives ``deadline`` seconds (a deadlock).
    """
    context = multiprocessing.get_context("fork")

    def timed(n: int) -> float:
        start = context.Event()
        workers = [context.Process(target=_worker, args=(increment, start, count)) for _ in range(n)]
        for worker in workers:
            worker.start()
        time.sleep(0.05)  # all forked and waiting
        began = time.perf_counter()
        start.set()
        for worker in workers:
            worker.join(max(0.0, deadline - (time.perf_counter() - began)))
        elapsed = time.perf_counter() - began
        hung = [worker for worker in workers if worker.is_alive()]
        for worker in hung:
            worker.kill()
            worker.join()
        if hung:
            raise Broke(f"{len(hung)} of {n} workers still waiting after {deadline:.0f} s (deadlock)")
        if any(worker.exitcode for worker in workers):
            raise Broke("a worker crashed (its error is printed above)")
        return elapsed

    before = counter()
    alone = timed(1)
    middle = counter()
    together = timed(processes)
    after = counter()
    lost = (count - (middle - before)) + (processes * count - (after - middle))
    return count / alone, processes * count / together, lost
