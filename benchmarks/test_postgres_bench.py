"""benchmarks/postgres_vs_django.py runs (a quick pass) and says what it measured: no timing is judged."""

import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "postgres_vs_django.py")


def test_the_postgres_comparison_runs_and_fastsession_loses_no_update(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"fastsession postgres", "django db", "django cached_db"}
    for measured in report["results"].values():
        assert set(measured) == {"rmw", "read", "request"} and all(m["median"] > 0 for m in measured.values())
    fastsession = report["lost_updates"]["fastsession postgres"]
    assert fastsession["lost"] == 0 and fastsession["stored"] == fastsession["increments"] == 80
    assert "| fastsession postgres |" in done.stdout
