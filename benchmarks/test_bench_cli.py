"""``python -m fastsession bench`` as a user runs it: --quick, --json, --plot."""

import json
import subprocess
import sys


def bench(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "fastsession", "bench", "--quick", *args],
        capture_output=True, text=True, check=True, cwd=cwd,
    )


def test_json_has_every_scenario_and_no_lost_update_for_fastsession(tmp_path):
    done = bench("--json", cwd=tmp_path)
    results = json.loads(done.stdout)
    keys = [entry["key"] for entry in results["scenarios"]]
    assert keys == ["ids", "modify", "read", "flask", "asgi", "lock", "load", "commit"]
    modify = results["scenarios"][1]["places"]
    for figures in modify.values():
        assert figures["fastsession (compiled)"] > 0
    rows = results["contention"]["rows"]
    assert rows["fastsession (compiled)"]["lost"] == 0
    assert rows["fastsession (pure twins)"]["lost"] == 0
    assert rows["fastsession on Redis"]["lost"] == 0
    assert rows["Starlette + fastsession (files)"]["lost"] == rows["Starlette + fastsession on Redis"]["lost"] == 0
    asgi = results["scenarios"][4]["places"]["tmpfs"]
    assert asgi["fastsession (compiled)"] > 0 and asgi["Starlette signed cookie (default)"] > 0
    assert "[14/14]" in done.stderr  # progress was shown


def test_table_and_plot(tmp_path):
    done = bench("--plot", str(tmp_path / "bench.png"), cwd=tmp_path)
    assert "locked read-modify-write round trip" in done.stdout
    assert "lost updates" in done.stdout
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
