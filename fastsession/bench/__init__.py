"""``fastsession bench``: fastsession side by side with its twins, its floor and its peers.

Every figure is a median of interleaved batches (see measure.py); every
ratio is a contender's time over fastsession (compiled)'s, from the same run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from typing import Any, Callable

from .asgi import ASGI, ASGI_REQUEST_BASELINE, ASGI_REQUESTS
from .contenders import (
    DJANGO_REQUEST_BASELINE,
    DJANGO_REQUESTS,
    EVENTS,
    FLASK,
    FLASK_REQUEST_BASELINE,
    FLASK_REQUESTS,
    KERNELS,
    LOGIN_BASELINE,
    LOGINS,
    OPTIONS,
    REDIS,
    REDIS_BASELINE,
    ROUND_TRIP,
    Missing,
    id_peers,
)
from .measure import Broke, contend, interleaved_medians, interleaved_stats
from .waiting import PROCESSES, WAITING, summarize, take_turns

BASELINE = "fastsession (compiled)"
FLOOR = "C floor (same system calls)"
# name -> factory(directory) giving "increment" and "counter"
UNDER_CONTENTION = {
    name: ROUND_TRIP[name]
    for name in (
        "fastsession (compiled)",
        "fastsession (pure twins)",
        "Django file backend",
        "Beaker file sessions",
        "cachelib FileSystemCache",
        "WebStack 2005 design",
    )
}
UNDER_CONTENTION["fastsession on Redis"] = REDIS["fastsession on Redis"]
UNDER_CONTENTION["Flask + fastsession on Redis"] = FLASK["fastsession on Redis"]
UNDER_CONTENTION["Flask-Session, Redis backend"] = FLASK["Flask-Session, Redis backend"]
UNDER_CONTENTION["Starlette + fastsession (files)"] = ASGI["fastsession (compiled)"]
UNDER_CONTENTION["Starlette + fastsession on Redis"] = ASGI["fastsession on Redis"]
UNDER_CONTENTION["Starlette signed cookie"] = ASGI["Starlette signed cookie (default)"]
UNDER_CONTENTION["Starlette + starsessions on Redis"] = ASGI["starsessions on Redis (no lock)"]


class Scenario:
    """One table of the bench: its contenders (factories), the operation timed, where, and against what."""

    def __init__(
        self,
        key: str,
        title: str,
        factories: dict[str, Callable[..., Any]],
        operation: str,
        *,
        every_place: bool = True,
        baseline: str = BASELINE,
        place: str | None = None,
        rounds_times: int = 1,
        spread: bool = False,
    ) -> None:
        self.key, self.title, self.factories, self.operation = key, title, factories, operation
        self.every_place = every_place  # every filesystem, or only the first (tmpfs when there is one)
        self.baseline = baseline  # the row every ratio of this table is taken against
        self.place = place  # a column name of its own (Redis: "loopback"), not a filesystem's
        self.rounds_times = rounds_times  # noisy scenarios (whole requests) get more rounds
        self.spread = spread  # show the interquartile range of the batches beside each median


SCENARIOS = [
    Scenario(
        "modify",
        "locked read-modify-write round trip (SessionStore, get_session, one change, close)",
        ROUND_TRIP,
        "modify",
    ),
    Scenario("read", "read-only round trip (load, no change)", ROUND_TRIP, "read"),
    Scenario(
        "options",
        "what each store option costs: locked read-modify-write, compiled kernels",
        OPTIONS,
        "modify",
        every_place=False,
    ),
    Scenario(
        "login",
        "what a login costs (a new session, bind_user, close), with a cap on the user's sessions and with "
        "an event handler, compiled kernels",
        LOGINS,
        "login",
        every_place=False,
        baseline=LOGIN_BASELINE,
    ),
    Scenario(
        "events",
        "the lifecycle events hook on the hot path: a locked read-modify-write (no event) with no handler "
        "and with one subscribed",
        EVENTS,
        "modify",
        every_place=False,
    ),
    Scenario(
        "redis-modify",
        "Redis: locked read-modify-write round trip, against two plain redis-py calls (GET, SET with a TTL)",
        REDIS,
        "modify",
        baseline=REDIS_BASELINE,
        place="loopback",
        every_place=False,
    ),
    Scenario(
        "redis-read",
        "Redis: read-only round trip (a locked read), against one plain redis-py GET",
        REDIS,
        "read",
        baseline=REDIS_BASELINE,
        place="loopback",
        every_place=False,
    ),
    Scenario(
        "flask",
        "one Flask request (test client) to a view that counts visits",
        FLASK,
        "modify",
        every_place=False,
        rounds_times=3,
        spread=True,
    ),
    Scenario(
        "asgi",
        "one ASGI request through Starlette (in-process, no sockets) to a view that counts visits",
        ASGI,
        "modify",
        every_place=False,
        rounds_times=3,
        spread=True,
    ),
    Scenario(
        "flask-request",
        "a whole Flask request (test client, a view that counts visits) with fastsession, against Flask's "
        "session layer over an in-memory dict (no I/O: the floor), and with no session at all; on Redis, beside "
        "the same layer over plain GET + SET with no lock (the Redis floor)",
        FLASK_REQUESTS,
        "modify",
        every_place=False,
        rounds_times=3,
        spread=True,
        baseline=FLASK_REQUEST_BASELINE,
    ),
    Scenario(
        "django-request",
        "a whole Django request (test client, a view that counts visits) with fastsession's locking "
        "middleware, against Django's SessionMiddleware over an in-memory engine (no I/O: the floor), and with "
        "no session middleware",
        DJANGO_REQUESTS,
        "modify",
        every_place=False,
        rounds_times=3,
        spread=True,
        baseline=DJANGO_REQUEST_BASELINE,
    ),
    Scenario(
        "asgi-request",
        "a whole ASGI request through Starlette (in-process, a view that counts visits) with fastsession, "
        "against a session middleware over an in-memory dict (no I/O: the floor); on Redis, beside the same "
        "middleware over plain GET + SET with no lock (the Redis floor)",
        ASGI_REQUESTS,
        "modify",
        every_place=False,
        rounds_times=3,
        spread=True,
        baseline=ASGI_REQUEST_BASELINE,
    ),
    Scenario("lock", "lock acquire + release", KERNELS, "lock"),
    Scenario("load", "read + decode a session file", KERNELS, "load"),
    Scenario("commit", "lock + encode + commit", KERNELS, "commit"),
    Scenario(
        "open",
        "lock + read + decode + release: a read-only request's kernel calls (open_session, unlock), no facade",
        KERNELS,
        "open",
    ),
]


def filesystems() -> dict[str, str]:
    """The places to measure: tmpfs (/dev/shm) and the default temp directory."""
    places = {}
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        places["tmpfs"] = "/dev/shm"
    places["disk"] = tempfile.gettempdir()
    return places


class JournaledExt4:
    """A journaled ext4 (mkfs.ext4 defaults: data=ordered) on a loop-mounted file, when this process may mount.

    ``path`` is its mount point, or None with ``why`` saying what stopped it.
    """

    SIZE = 256 * 1024 * 1024

    def __init__(self) -> None:
        self.path: str | None = None
        self.why = ""
        self.image = ""

    def __enter__(self) -> JournaledExt4:
        import subprocess

        if os.geteuid() != 0:
            self.why = "a loop mount needs root"
            return self
        if not shutil.which("mkfs.ext4") or not shutil.which("mount"):
            self.why = "mkfs.ext4 or mount is not installed"
            return self
        folder = tempfile.mkdtemp(prefix="fastsession-bench-ext4-")
        self.image, point = os.path.join(folder, "image"), os.path.join(folder, "mnt")
        os.mkdir(point)
        with open(self.image, "wb") as f:
            f.truncate(self.SIZE)
        for command in (["mkfs.ext4", "-q", "-F", self.image], ["mount", "-o", "loop", self.image, point]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                self.why = f"{command[0]} failed: {(done.stderr or done.stdout).strip()[:200]}"
                shutil.rmtree(folder, ignore_errors=True)
                return self
        self.path = point
        return self

    def __exit__(self, *exc: Any) -> None:
        import subprocess

        if self.path is not None:
            subprocess.run(["umount", self.path], capture_output=True)
        if self.image:
            shutil.rmtree(os.path.dirname(self.image), ignore_errors=True)


def fs_type(path: str) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, point, fstype = line.split()[:3]
                if path.startswith(point) and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind


def machine(places: dict[str, str]) -> dict[str, Any]:
    import orjson

    import fastsession

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "fastsession": fastsession.__version__,
        "extensions": fastsession.EXTENSIONS,
        "orjson": orjson.__version__,
        "places": {name: f"{path} ({fs_type(path)})" for name, path in places.items()},
    }


class Progress:
    """One line per step on stderr, a dot per round."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet = total, 0, quiet

    def step(self, label: str) -> None:
        self.done += 1
        if not self.quiet:
            sys.stderr.write(f"\n[{self.done:2d}/{self.total}] {label} ")
            sys.stderr.flush()

    def tick(self) -> None:
        if not self.quiet:
            sys.stderr.write(".")
            sys.stderr.flush()

    def finish(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")


def made(name: str, factory: Callable[..., Any], where: str, missing: dict[str, str]) -> dict[str, Any] | None:
    """``factory(where)``; None, with the reason in ``missing``, when that contender cannot run here."""
    try:
        ops: dict[str, Any] = factory(where)
        return ops
    except (Missing, ImportError) as exc:  # a peer not installed: "not measured"
        missing[name] = str(exc)
        return None


def build(
    factories: dict[str, Callable[..., Any]], directory: str, scenario: str, missing: dict[str, str]
) -> dict[str, Any]:
    runners = {}
    for name, factory in factories.items():
        ops = made(name, factory, directory, missing)
        if ops is not None and scenario in ops:
            runners[name] = ops[scenario]
    return runners


def run(quick: bool = False, quiet: bool = False) -> dict[str, Any]:
    with JournaledExt4() as journaled:
        return _run(quick, quiet, journaled)


def _run(quick: bool, quiet: bool, journaled: JournaledExt4) -> dict[str, Any]:
    rounds = 7 if quick else 31
    count = 100 if quick else 400
    places = filesystems()
    if journaled.path is not None:
        places["ext4 journal"] = journaled.path
    work = {name: tempfile.mkdtemp(prefix="fastsession-bench-", dir=path) for name, path in places.items()}
    steps = sum(len(places) if scenario.every_place else 1 for scenario in SCENARIOS)
    progress = Progress(1 + steps + 2, quiet)
    results: dict[str, Any] = {
        "machine": machine(places),
        "rounds": rounds,
        "quick": quick,
        "scenarios": [],
        "missing": {},
    }
    missing: dict[str, str] = results["missing"]
    if journaled.path is None:
        missing["journaled ext4 column"] = journaled.why
    try:
        progress.step("session ids")
        any_place = next(iter(work.values()))
        ids = {}
        for name in (BASELINE, "fastsession (pure twins)", FLOOR):
            ops = made(name, KERNELS[name], any_place, missing)
            if ops is not None:
                ids[name] = ops["ids"]
        ids.update(id_peers())
        results["scenarios"].append(
            {
                "key": "ids",
                "title": "new session id",
                "baseline": BASELINE,
                "places": {"memory": interleaved_medians(ids, rounds * 2, progress=progress.tick)},
            }
        )
        for scenario in SCENARIOS:
            entry: dict[str, Any] = {
                "key": scenario.key,
                "title": scenario.title,
                "baseline": scenario.baseline,
                "places": {},
                "spread": {},
                "rounds": rounds * scenario.rounds_times,
            }
            for place, directory in list(work.items())[: None if scenario.every_place else 1]:
                column = scenario.place or place
                progress.step(f"{scenario.key} ({column})")
                folder = tempfile.mkdtemp(prefix=scenario.key + "-", dir=directory)
                runners = build(scenario.factories, folder, scenario.operation, missing)
                stats = interleaved_stats(runners, rounds * scenario.rounds_times, progress=progress.tick)
                entry["places"][column] = {name: figures["median"] for name, figures in stats.items()}
                entry["spread"][column] = {name: figures["iqr"] for name, figures in stats.items()}
                if not scenario.spread:
                    del entry["spread"][column]
            if not entry["spread"]:
                del entry["spread"]
            results["scenarios"].append(entry)
        progress.step(f"contention: 4 processes x {count} increments of one session")
        place = "tmpfs" if "tmpfs" in work else "disk"
        folder = tempfile.mkdtemp(prefix="contention-", dir=work[place])
        rows: dict[str, dict[str, Any]] = {}
        for name, factory in UNDER_CONTENTION.items():
            ops = made(name, factory, tempfile.mkdtemp(dir=folder), missing)
            if ops is None:
                continue
            try:
                alone, together, lost = contend(ops["increment"], ops["counter"], 4, count)
            except Broke as exc:
                rows[name] = {"broke": str(exc)}
            else:
                rows[name] = {"alone_ops": alone, "together_ops": together, "lost": lost, "updates": 5 * count}
            progress.tick()
        results["contention"] = {"place": place, "processes": 4, "count": count, "rows": rows}
        seconds = 0.3 if quick else 1.0
        progress.step(f"waiting: {'/'.join(map(str, PROCESSES))} processes taking turns at one session")
        waiting: dict[str, dict[str, Any]] = {}
        for name, turn_of in WAITING.items():
            turn = made(name, turn_of, tempfile.mkdtemp(dir=folder), missing)
            if turn is None:
                continue
            try:
                waiting[name] = {str(n): summarize(take_turns(turn["turn"], n, seconds)) for n in PROCESSES}
            except Broke as exc:
                waiting[name] = {"broke": str(exc)}
            progress.tick()
        results["waiting"] = {"place": place, "seconds": seconds, "rows": waiting}
    finally:
        progress.finish()
        for directory in work.values():
            shutil.rmtree(directory, ignore_errors=True)
    return results


def within_noise(spread: dict[str, Any], place: str, figures: dict[str, float], name: str, baseline: str) -> bool:
    """Whether ``name``'s interquartile range overlaps ``baseline``'s in ``place`` (no spread measured: no).

    Each range is taken as the median plus and minus half its interquartile range.
    """
    iqr = spread.get(place, {})
    if name not in iqr or baseline not in iqr:
        return False
    (low, low_iqr), (high, high_iqr) = sorted([(figures[name], iqr[name]), (figures[baseline], iqr[baseline])])
    return bool(low * (1 + low_iqr / 2) >= high * (1 - high_iqr / 2))


def format_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"fastsession {m['fastsession']} bench: Python {m['python']}, {m['cpu']}, {m['cores']} cores",
        "places: " + ", ".join(f"{k} = {v}" for k, v in m["places"].items()),
        f"median of {results['rounds']} interleaved batches per figure (whole requests: 3x as many); "
        f"ratio = contender time / {BASELINE} time unless a table names another (higher is slower); "
        f"iqr = interquartile range of the batches, % of the median",
    ]
    if results.get("quick"):
        lines.append(
            "--quick: rough figures from few batches; '~' marks a ratio whose interquartile range overlaps "
            "its baseline's (within noise: either may be the faster)"
        )
    for entry in results["scenarios"]:
        places = list(entry["places"])
        baseline = entry.get("baseline", BASELINE)
        spread = entry.get("spread", {})
        lines += ["", entry["title"] + (f"  [ratio against {baseline}]" if baseline != BASELINE else "")]
        widths = {place: max(12, len(place) + 5) for place in places}  # a header never runs into the one before
        lines.append(
            f"  {'':34s}"
            + "".join(
                f"{place + ' µs':>{widths[place]}s}{'ratio':>9s}" + ("   iqr" if place in spread else "")
                for place in places
            )
        )
        names: list[str] = []
        for figures in entry["places"].values():
            names += [n for n in figures if n not in names]
        if not names:
            lines.append('  (no contender installed: see "not measured")')
        for name in names:
            row = f"  {name:34s}"
            for place in places:
                figures = entry["places"][place]
                if name not in figures:
                    row += f"{'-':>{widths[place]}s}{'':>9s}" + ("      " if place in spread else "")
                    continue
                us = figures[name] * 1e6
                base = figures.get(baseline)
                ratio = f"{figures[name] / base:.2f}x" if base else ""
                if (
                    results.get("quick")
                    and base
                    and name != baseline
                    and within_noise(spread, place, figures, name, baseline)
                ):
                    ratio = "~" + ratio
                row += f"{us:{widths[place]}.2f}{ratio:>9s}"
                if place in spread:
                    row += f"{spread[place][name] * 100:5.0f}%"
            lines.append(row.rstrip())
    contention = results.get("contention")
    if contention:
        lines += [
            "",
            f"contention: {contention['processes']} processes x {contention['count']} increments "
            f"of one session ({contention['place']})",
        ]
        lines.append(f"  {'':34s}{'1 proc ops/s':>14s}{'4 procs ops/s':>15s}{'4 / 1':>8s}{'lost updates':>16s}")
        for name, row in contention["rows"].items():
            if "broke" in row:
                lines.append(f"  {name:34s}  broke: {row['broke']}")
                continue
            share = row["together_ops"] / row["alone_ops"]
            lost = f"{row['lost']} of {row['updates']}"
            lines.append(f"  {name:34s}{row['alone_ops']:14.0f}{row['together_ops']:15.0f}{share:8.2f}{lost:>16s}")
    lines += waiting_table(results.get("waiting"))
    if results["missing"]:
        lines += ["", "not measured: " + "; ".join(f"{k}: {v}" for k, v in results["missing"].items())]
    return "\n".join(lines)


def waiting_table(waiting: dict[str, Any] | None) -> list[str]:
    """The waiting run's lines of the text table (none when the run has no waiting figures)."""
    if not waiting:
        return []
    lines = [
        "",
        f"waiting: N processes taking turns at one session for {waiting['seconds']:g} s ({waiting['place']}); "
        "hand-off: a release's return to the next holder (already waiting); in order: turns that went to "
        "the longest waiter",
        f"  {'':38s}{'procs':>6s}{'ops/s':>9s}{'hand-off p50 µs':>17s}{'p99 µs':>8s}"
        f"{'wait p99 ms':>13s}{'max ms':>8s}{'in order':>10s}",
    ]
    for name, row in waiting["rows"].items():
        if "broke" in row:
            lines.append(f"  {name:38s}  broke: {row['broke']}")
            continue
        for n, figures in row.items():
            p50, p99 = (figures[k] for k in ("handoff_p50", "handoff_p99"))
            lines.append(
                f"  {name if n == next(iter(row)) else '':38s}{n:>6s}{figures['ops']:9.0f}"
                + (f"{p50 * 1e6:17.0f}{p99 * 1e6:8.0f}" if p50 is not None else f"{'-':>17s}{'-':>8s}")
                + f"{figures['wait_p99'] * 1e3:13.2f}{figures['wait_max'] * 1e3:8.1f}{figures['in_order']:10.0%}"
            )
    return lines


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in results["scenarios"] if e["key"] in ("modify", "read")]
    places = list(shown[0]["places"])
    fig, axes = plt.subplots(len(shown), len(places), figsize=(6 * len(places), 3.6 * len(shown)), squeeze=False)
    for row, entry in enumerate(shown):
        for col, place in enumerate(places):
            figures = entry["places"][place]
            names = list(figures)[::-1]
            ax = axes[row][col]
            colours = [
                "tab:green" if n.startswith("fastsession") else "tab:grey" if n == FLOOR else "tab:red" for n in names
            ]
            ax.barh(names, [figures[n] * 1e6 for n in names], color=colours)
            ax.set_xscale("log")
            ax.set_xlabel("µs per request (log scale, lower is better)")
            ax.set_title(f"{entry['key']} round trip, {place}", fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(quick: bool = False, as_json: bool = False, plot_path: str | None = None) -> int:
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write("--plot needs matplotlib: pip install matplotlib\n")
            return 2
    results = run(quick=quick)
    results["command"] = " ".join(["fastsession bench", *sys.argv[2:]])
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    if plot_path:
        plot(results, plot_path)
        sys.stderr.write(f"plot written to {plot_path}\n")
    return 0
