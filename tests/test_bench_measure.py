"""The benchmark harness itself: medians, and contention runs that cannot hang."""

import os
import time

import pytest

from fastsession.bench.measure import Broke, contend, interleaved_medians


def test_interleaved_medians_times_every_runner_per_operation():
    def sleeper(seconds):
        return lambda k: (time.sleep(seconds * k), seconds * k)[1]

    medians = interleaved_medians({"a": sleeper(0.0001), "b": sleeper(0.0003)}, rounds=3, target=0.001)
    assert medians == {"a": pytest.approx(0.0001), "b": pytest.approx(0.0003)}


def test_contention_counts_lost_updates(tmp_path):
    counter = tmp_path / "n"
    counter.write_text("0")

    def racy_increment():  # read, then write: no lock at all
        value = int(counter.read_text() or 0)
        counter.write_text(str(value + 1))

    alone, together, lost = contend(racy_increment, lambda: int(counter.read_text() or 0), 4, 300)
    assert alone > 0 and together > 0
    assert 0 <= lost <= 5 * 300
    assert int(counter.read_text()) == 5 * 300 - lost


def test_contention_reports_a_deadlock_instead_of_hanging(tmp_path):
    def wait_forever():
        time.sleep(3600)

    started = time.monotonic()
    with pytest.raises(Broke, match="deadlock"):
        contend(wait_forever, lambda: 0, 4, 1, deadline=1.0)
    assert time.monotonic() - started < 10


def test_contention_reports_a_crashed_worker():
    def crash():
        os._exit(3)

    with pytest.raises(Broke, match="crashed"):
        contend(crash, lambda: 0, 2, 1)


def _results(quick):
    return {
        "machine": {"fastsession": "0", "python": "3", "cpu": "cpu", "cores": 2, "places": {"tmpfs": "/dev/shm"}},
        "rounds": 7 if quick else 31,
        "quick": quick,
        "missing": {},
        "scenarios": [
            {
                "key": "modify",
                "title": "one locked read-modify-write",
                "places": {
                    "tmpfs": {"fastsession (compiled)": 10e-6, "fastsession (pure)": 10.5e-6, "peer": 30e-6},
                    "ext4 journal": {"fastsession (compiled)": 40e-6, "fastsession (pure)": 41e-6, "peer": 90e-6},
                },
                "spread": {
                    "tmpfs": {"fastsession (compiled)": 0.2, "fastsession (pure)": 0.2, "peer": 0.05},
                    "ext4 journal": {"fastsession (compiled)": 0.1, "fastsession (pure)": 0.1, "peer": 0.1},
                },
            }
        ],
    }


def test_bench_table_headers_never_run_together():
    from fastsession.bench import format_table

    header = next(line for line in format_table(_results(False)).splitlines() if "µs" in line)
    assert "ratioext4" not in header and " ext4 journal µs" in header


def test_a_quick_table_says_which_ratios_are_within_noise():
    from fastsession.bench import format_table

    quick = format_table(_results(True))
    assert "--quick: rough figures" in quick
    pure = next(line for line in quick.splitlines() if line.strip().startswith("fastsession (pure)"))
    peer = next(line for line in quick.splitlines() if line.strip().startswith("peer"))
    assert pure.count("~") == 2  # 5 % and 2.5 % apart, with 10-20 % spreads: noise
    assert "~" not in peer  # 3x and 2.25x: not noise
    assert "~" not in format_table(_results(False))
