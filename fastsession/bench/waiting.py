"""Waiting: processes taking turns at one session's lock; how fast the lock passes on, and to whom.

Each of N processes loops for a fixed time. For every turn it notes when it
asked for the session (arrived), a stamp taken while it holds the lock (held),
and when its release returned (left). From all the processes' turns together:

- ops/s: turns completed per second, all processes together;
- hand-off: from a release's return to the next holder's stamp, counted when
  that holder was already waiting (0 when it got the lock before the releaser
  returned);
- wait: from arriving to holding, its 99th percentile and its maximum;
- in order: the share of turns that went to the process which had waited
  longest of those waiting at that moment (a barging newcomer lowers it).

Every process of a host reads the same clock (time.monotonic), so the stamps
of different processes compare.
"""

from __future__ import annotations

import fcntl
import heapq
import multiprocessing
import os
import statistics
import time
from typing import Any, Callable

import orjson

from .contenders import SESSION, CookieJar, redis_client, twin_store
from .measure import Broke

PROCESSES = (1, 4, 8, 16)
Turn = tuple[float, float, float]  # arrived, held, left


def store_turn(store_class: type, where: Any, **options: Any) -> dict[str, Callable[[], float]]:
    """``turn``: one request's turn through the public facade (a store per request); returns the held stamp.

    The session is stored before the processes start."""
    jar = CookieJar()
    with store_class(jar, where, **options) as store:
        store.get_session(True).update(SESSION)

    def turn() -> float:
        store = store_class(jar, where, **options)
        session = store.get_session(True)
        held = time.monotonic()
        session["visits"] += 1
        store.close()
        return held

    return {"turn": turn}


def files_turn(directory: str) -> dict[str, Callable[[], float]]:
    return store_turn(twin_store("c"), directory)


def redis_turn(directory: str) -> dict[str, Callable[[], float]]:
    from ..redis import RedisSessionStore

    return store_turn(RedisSessionStore, redis_client(), prefix=f"bench-wait-{os.getpid()}-{time.time_ns()}:")


def flock_turn(directory: str) -> dict[str, Callable[[], float]]:
    """The reference: a blocking flock on one file, read, change, write in place (no atomic commit)."""
    path = os.path.join(directory, "flock-session")
    with open(path, "wb") as f:
        f.write(orjson.dumps(SESSION))

    def turn() -> float:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = time.monotonic()
            data = orjson.loads(os.pread(fd, 65536, 0))
            data["visits"] += 1
            body = orjson.dumps(data)
            os.pwrite(fd, body, 0)
            os.ftruncate(fd, len(body))
        finally:
            os.close(fd)  # and with it the flock
        return held

    return {"turn": turn}


# name -> factory(directory) giving "turn"
WAITING: dict[str, Callable[[str], dict[str, Callable[[], float]]]] = {
    "fastsession (compiled)": files_turn,
    "fastsession on Redis": redis_turn,
    "blocking flock (reference, no store)": flock_turn,
}


def _taker(turn: Callable[[], float], start: Any, stop_at: Any, out: Any) -> None:
    start.wait()
    stop = stop_at.value
    turns = []
    while (arrived := time.monotonic()) < stop:
        held = turn()
        turns.append((arrived, held, time.monotonic()))
    out.send(turns)
    out.close()


def take_turns(turn: Callable[[], float], processes: int, seconds: float, deadline: float = 20.0) -> list[Turn]:
    """Every turn ``processes`` processes took at ``turn`` in ``seconds`` (a turn begun in time ends).

    Raises Broke when a worker dies or is still waiting ``deadline`` seconds after the end (a deadlock).
    """
    context = multiprocessing.get_context("fork")
    start = context.Event()
    stop_at = context.Value("d", 0.0)
    pipes = [context.Pipe(duplex=False) for _ in range(processes)]
    workers = [context.Process(target=_taker, args=(turn, start, stop_at, sender)) for _, sender in pipes]
    for worker in workers:
        worker.start()
    for _, sender in pipes:
        sender.close()  # the worker's copy is the only writer left: its death ends our read
    try:
        time.sleep(0.05)  # all forked and waiting
        stop_at.value = time.monotonic() + seconds
        start.set()
        turns: list[Turn] = []
        for receiver, _ in pipes:
            left = stop_at.value + deadline - time.monotonic()
            if not receiver.poll(max(0.0, left)):
                raise Broke(f"a worker still waiting {deadline:.0f} s after the end (deadlock)")
            try:
                turns += receiver.recv()
            except EOFError:
                raise Broke("a worker crashed (its error is printed above)") from None
        return turns
    finally:
        for worker in workers:
            if worker.is_alive() and not start.is_set():
                start.set()
            worker.join(0.5)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for receiver, _ in pipes:
            receiver.close()


def _percentile(ordered: list[float], percent: int) -> float:
    if len(ordered) < 2:
        return ordered[0] if ordered else 0.0
    return statistics.quantiles(ordered, n=100, method="inclusive")[percent - 1]


def summarize(turns: list[Turn]) -> dict[str, Any]:
    """ops/s, hand-off p50/p99 (None when nobody ever waited), wait p99/max (seconds), and in-order share."""
    turns = sorted(turns, key=lambda t: t[1])  # the order the lock was held in
    if not turns:
        raise Broke("no turn completed")
    span = max(t[2] for t in turns) - min(t[0] for t in turns)
    handoffs = sorted(max(0.0, after[1] - before[2]) for before, after in zip(turns, turns[1:]) if after[0] < before[2])
    waits = sorted(t[1] - t[0] for t in turns)
    events = sorted([(t[0], 0, i) for i, t in enumerate(turns)] + [(t[1], 1, i) for i, t in enumerate(turns)])
    queue: list[tuple[float, int]] = []  # arrived and not yet holding, by arrival
    served = set()
    in_order = 0
    for _, kind, i in events:
        if kind == 0:
            heapq.heappush(queue, (turns[i][0], i))
            continue
        while queue[0][1] in served:
            heapq.heappop(queue)
        in_order += queue[0][1] == i
        served.add(i)
    return {
        "turns": len(turns),
        "ops": len(turns) / span if span > 0 else 0.0,
        "handoff_p50": _percentile(handoffs, 50) if handoffs else None,
        "handoff_p99": _percentile(handoffs, 99) if handoffs else None,
        "wait_p99": _percentile(waits, 99),
        "wait_max": waits[-1],
        "in_order": in_order / len(turns),
    }
