"""``python -m fastsession bench`` as a user runs it: --quick, --json, --plot."""

import json
import subprocess
import sys


def bench(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "fastsession", "bench", "--quick", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )


def test_json_has_every_scenario_and_no_lost_update_for_fastsession(tmp_path):
    done = bench("--json", cwd=tmp_path)
    results = json.loads(done.stdout)
    keys = [entry["key"] for entry in results["scenarios"]]
    assert keys == [
        "ids",
        "modify",
        "read",
        "options",
        "login",
        "events",
        "redis-modify",
        "redis-read",
        "flask",
        "asgi",
        "flask-request",
        "django-request",
        "asgi-request",
        "lock",
        "load",
        "commit",
        "open",
    ]
    scenarios = {entry["key"]: entry for entry in results["scenarios"]}
    for figures in scenarios["modify"]["places"].values():
        assert figures["fastsession (compiled)"] > 0 and figures["C floor (same system calls)"] > 0
    for figures in scenarios["read"]["places"].values():  # an unlocked read beside cachelib's
        assert figures['fastsession, locking="commit" (reads take no lock)'] > 0
        assert figures["cachelib FileSystemCache"] > 0
    redis_rows = scenarios["redis-modify"]["places"]["loopback"]
    assert redis_rows["fastsession on Redis"] > 0 and redis_rows["plain redis-py, no lock (floor)"] > 0
    for key in ("flask", "asgi", "flask-request", "django-request", "asgi-request"):
        spread = scenarios[key]["spread"]["tmpfs"]
        assert spread and all(value >= 0 for value in spread.values())  # the spread is reported
    for key in ("flask-request", "django-request", "asgi-request"):  # against the in-memory session layer
        entry = scenarios[key]
        assert "in-memory" in entry["baseline"] and entry["places"]["tmpfs"][entry["baseline"]] > 0
    rows = results["contention"]["rows"]
    assert rows["fastsession (compiled)"]["lost"] == 0
    assert rows["fastsession (pure twins)"]["lost"] == 0
    assert rows["fastsession on Redis"]["lost"] == 0
    assert rows["Starlette + fastsession (files)"]["lost"] == rows["Starlette + fastsession on Redis"]["lost"] == 0
    asgi = scenarios["asgi"]["places"]["tmpfs"]
    assert asgi["fastsession (compiled)"] > 0 and asgi["Starlette signed cookie (default)"] > 0
    assert "ext4 journal" in scenarios["modify"]["places"] or "journaled ext4 column" in results["missing"]
    waiting = results["waiting"]["rows"]
    for name in ("fastsession (compiled)", "fastsession on Redis", "blocking flock (reference, no store)"):
        assert list(waiting[name]) == ["1", "4", "8", "16"] and all(row["turns"] > 0 for row in waiting[name].values())
        assert waiting[name]["1"]["handoff_p50"] is None and waiting[name]["16"]["handoff_p50"] is not None
    steps = 1 + sum(len(entry["places"]) for entry in results["scenarios"][1:]) + 2  # + contention, waiting
    assert f"[{steps}/{steps}]" in done.stderr  # progress was shown


def test_table_and_plot(tmp_path):
    done = bench("--plot", str(tmp_path / "bench.png"), cwd=tmp_path)
    assert "locked read-modify-write round trip" in done.stdout
    assert "lost updates" in done.stdout
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
