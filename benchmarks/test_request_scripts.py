"""The whole-request scripts run as their docstrings say (the callgrind workloads without valgrind here: what they
count must work)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("adapter", ["flask", "django", "starlette"])
@pytest.mark.parametrize("contender", ["fastsession", "memory"])
def test_each_whole_request_workload_makes_its_requests(tmp_path, adapter, contender):
    # A process each, as under valgrind (Django's settings are the process's).
    script = os.path.join(HERE, "callgrind_request.py")
    done = subprocess.run(
        [sys.executable, script, "--one", adapter, contender, "3", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    if contender == "fastsession":  # 23 requests of one visitor: one session stored, on files
        stored = [name for _, _, names in os.walk(tmp_path) for name in names if len(name) == 43]
        assert len(stored) == 1


@pytest.mark.parametrize("adapter", ["flask", "django", "starlette"])
def test_the_side_by_side_ratio_of_each_adapter_is_printed(adapter):
    script = os.path.join(HERE, "whole_request_ratio.py")
    done = subprocess.run([sys.executable, script, adapter, "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "fastsession" in lines[0]
    assert lines[1].split()[2] == "1.000x"  # the floor, against itself
