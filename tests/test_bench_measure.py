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


def test_waiting_figures_from_known_turns():
    from fastsession.bench.waiting import summarize

    # (arrived, held, left): A holds 0-10; B and C wait from 1 and 2; C barges ahead of B at 12, B holds at 25.
    turns = [(0.0, 0.0, 10.0), (2.0, 12.0, 20.0), (1.0, 25.0, 30.0)]
    figures = summarize(turns)
    assert figures["turns"] == 3 and figures["ops"] == pytest.approx(3 / 30)
    assert figures["handoff_p50"] == pytest.approx(3.5)  # hand-offs of 2 and 5
    assert figures["wait_max"] == 24.0 and figures["wait_p99"] == pytest.approx(23.72)
    assert figures["in_order"] == pytest.approx(2 / 3)  # A had nobody before it; C went before B


def test_waiting_alone_has_no_hand_off():
    from fastsession.bench.waiting import summarize

    figures = summarize([(0.0, 1.0, 2.0), (3.0, 3.5, 4.0)])
    assert figures["handoff_p50"] is None and figures["in_order"] == 1.0


def test_a_waiting_run_gathers_every_turn_of_every_process(tmp_path):
    import orjson

    from fastsession.bench.contenders import SESSION
    from fastsession.bench.waiting import flock_turn, summarize, take_turns

    turns = take_turns(flock_turn(str(tmp_path))["turn"], 3, 0.2)
    assert len(turns) > 3 and all(t[0] <= t[1] <= t[2] for t in turns)
    # every turn added one under the lock, and every turn is counted: the two agree exactly
    assert orjson.loads((tmp_path / "flock-session").read_bytes())["visits"] == SESSION["visits"] + len(turns)
    assert summarize(turns)["turns"] == len(turns)


def test_a_waiting_run_reports_a_deadlock_and_a_crash_instead_of_hanging():
    from fastsession.bench.waiting import take_turns

    with pytest.raises(Broke, match="deadlock"):
        take_turns(lambda: time.sleep(3600) or 0.0, 2, 0.1, deadline=1.0)
    with pytest.raises(Broke, match="crashed"):
        take_turns(lambda: os._exit(3), 2, 0.1)


def test_the_bench_tables_show_the_waiting_run():
    import importlib.util
    import pathlib

    from fastsession.bench import format_table

    results = _results(False)
    alone = {"turns": 9, "ops": 9000.0, "handoff_p50": None, "handoff_p99": None}
    alone.update(wait_p99=2e-5, wait_max=1e-4, in_order=1.0)
    crowd = dict(alone, ops=15000.0, handoff_p50=26e-6, handoff_p99=569e-6, wait_p99=0.0209, wait_max=0.0735)
    crowd["in_order"] = 0.01
    results["waiting"] = {"place": "tmpfs", "seconds": 1.0, "rows": {"store": {"1": alone, "16": crowd}}}
    text = format_table(results).splitlines()
    first, second = (line.split() for line in text if line.split()[:1] in (["store"], ["16"]))
    assert first == ["store", "1", "9000", "-", "-", "0.02", "0.1", "100%"]
    assert second == ["16", "15000", "26", "569", "20.90", "73.5", "1%"]
    spec = importlib.util.spec_from_file_location(
        "readme_table", pathlib.Path(__file__).parent.parent / "benchmarks/readme_table.py"
    )
    readme_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_table)
    markdown = readme_table.markdown(
        dict(results, machine=dict(results["machine"], platform="p", orjson="3", extensions=True))
    )
    assert "| store | 16 | 15000 | 26 | 569 | 20.90 | 73.5 | 1% |" in markdown
    assert "| store | 1 | 9000 | - | - | 0.02 | 0.1 | 100% |" in markdown
