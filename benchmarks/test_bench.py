"""pytest-benchmark view of the same contenders as ``python -m fastsession bench``.

Run: pytest benchmarks --benchmark-group-by=group
Each figure is one operation per call (the C floor pays a ctypes call on top);
the side-by-side ratios in the README come from ``python -m fastsession bench``,
which times batches and interleaves contenders.
"""

import tempfile

import pytest

from fastsession.bench import UNDER_CONTENTION, memory
from fastsession.bench.asgi import ASGI, ASGI_REDIS_FLOOR, ASGI_REQUEST_BASELINE, ASGI_REQUESTS
from fastsession.bench.contenders import (
    DJANGO_REQUEST_BASELINE,
    DJANGO_REQUESTS,
    EVENTS,
    FLASK,
    FLASK_REDIS_FLOOR,
    FLASK_REQUEST_BASELINE,
    FLASK_REQUESTS,
    KERNELS,
    LOGINS,
    ROUND_TRIP,
    Missing,
    id_peers,
)
from fastsession.bench.measure import Broke, contend


def ops_or_skip(factory, folder):
    try:
        return factory(folder)
    except Missing as exc:
        pytest.skip(f"not installed here: {exc} (pip install 'fastsession-store[bench]')")


@pytest.mark.parametrize("name", list(ROUND_TRIP))
@pytest.mark.parametrize("scenario", ["modify", "read"])
def test_round_trip(benchmark, place, scenario, name):
    place_name, folder = place
    run = ops_or_skip(ROUND_TRIP[name], folder)[scenario]
    benchmark.group = f"{scenario} round trip ({place_name})"
    benchmark(run, 1)


KERNEL_STEPS = [
    (scenario, name)
    for scenario in ("lock", "load", "commit", "open")
    for name in KERNELS
    if name != "filelock.FileLock" or scenario == "lock"  # filelock only locks
]


@pytest.mark.parametrize("scenario, name", KERNEL_STEPS)
def test_kernel(benchmark, place, scenario, name):
    place_name, folder = place
    ops = ops_or_skip(KERNELS[name], folder)
    benchmark.group = f"{scenario} ({place_name})"
    benchmark(ops[scenario], 1)


ID_MAKERS = ["fastsession (compiled)", "fastsession (pure twins)", "C floor (same system calls)"]


@pytest.mark.parametrize("name", ID_MAKERS + list(id_peers()))
def test_new_id(benchmark, name):
    folder = tempfile.mkdtemp()
    run = id_peers()[name] if name not in ID_MAKERS else ops_or_skip(KERNELS[name], folder)["ids"]
    benchmark.group = "new session id"
    benchmark(run, 1)


@pytest.mark.parametrize("name", FLASK)
def test_flask_request(benchmark, tmp_path, name):
    run = ops_or_skip(FLASK[name], str(tmp_path))["modify"]
    benchmark.group = "one Flask request"
    benchmark(run, 1)


@pytest.mark.parametrize("name", UNDER_CONTENTION)
def test_contention(benchmark, tmp_path, name):
    ops = ops_or_skip(UNDER_CONTENTION[name], str(tmp_path))
    benchmark.group = "contention: 4 processes x 50 increments"
    ours = "fastsession" in name
    try:
        alone, together, lost = benchmark.pedantic(
            contend, args=(ops["increment"], ops["counter"], 4, 50), rounds=1, iterations=1
        )
    except Broke as exc:
        if ours:
            raise
        benchmark.extra_info["broke"] = str(exc)  # a peer's failure is a result, not ours
        return
    benchmark.extra_info.update(ops_alone=alone, ops_together=together, lost_updates=lost)
    if ours:
        assert lost == 0  # the promise, not a timing: no update is ever lost


@pytest.mark.parametrize("name", ASGI)
def test_asgi_request(benchmark, tmp_path, name):
    run = ops_or_skip(ASGI[name], str(tmp_path))["modify"]
    benchmark.group = "one ASGI request through Starlette (in-process)"
    benchmark(run, 1)


@pytest.mark.parametrize("name", LOGINS)
def test_login(benchmark, tmp_path, name):
    run = ops_or_skip(LOGINS[name], str(tmp_path))["login"]
    benchmark.group = "a login: new session, bind_user, close (with a cap, with an event handler)"
    benchmark(run, 1)


@pytest.mark.parametrize("name", EVENTS)
def test_events_hook(benchmark, tmp_path, name):
    run = ops_or_skip(EVENTS[name], str(tmp_path))["modify"]
    benchmark.group = "locked read-modify-write, with no event handler and with one"
    benchmark(run, 1)


def test_the_in_memory_floors_are_session_layers_that_keep_what_a_view_stores(tmp_path):
    """Each whole-request table's baseline is a real session layer (a cookie names a dict kept in memory), not a
    request that stores nothing: the same visits counted as with fastsession."""
    redis_floors = (FLASK_REQUESTS[FLASK_REDIS_FLOOR], ASGI_REQUESTS[ASGI_REDIS_FLOOR])  # kept on plain Redis
    for factory in (FLASK_REQUESTS[FLASK_REQUEST_BASELINE], ASGI_REQUESTS[ASGI_REQUEST_BASELINE], *redis_floors):
        ops = ops_or_skip(factory, str(tmp_path))
        before = ops["counter"]()
        for _ in range(3):
            ops["increment"]()
        assert before >= 1 and ops["counter"]() == before + 3
    memory.SESSIONS.clear()
    ops = ops_or_skip(DJANGO_REQUESTS[DJANGO_REQUEST_BASELINE], str(tmp_path))  # one request made already
    ops["modify"](4)
    assert [data["visits"] for data in memory.SESSIONS.values()] == [5]  # one session, its cookie kept
