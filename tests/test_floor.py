"""The bench's C floor makes exactly the system calls fastsession makes: the ratio to it is the cost of
everything but the system calls."""

import shutil
import subprocess
import sys

import pytest
from conftest import compiled_twin

# Each pair: a fastsession runner and the floor's, from the bench's own tables (one operation each).
SCRIPT = """
import os, sys, tempfile
from fastsession.bench.contenders import KERNELS, ROUND_TRIP
twin = "fastsession (compiled)" if sys.argv[1] == "c" else "fastsession (pure twins)"
floor = "C floor (same system calls)"
for table, ops in ((ROUND_TRIP, ("modify", "read")), (KERNELS, ("lock", "load", "commit", "open"))):
    mine, theirs = table[twin](tempfile.mkdtemp(dir=sys.argv[2])), table[floor](tempfile.mkdtemp(dir=sys.argv[2]))
    for op in ops:
        for runner in (mine[op], theirs[op]):
            runner(2)  # warm: shard folders made, holder line computed, the floor library loaded
            os.write(2, b"<<" + op.encode() + b"\\n")
            runner(1)
            os.write(2, b">>\\n")
"""


# glibc makes fstat() and lstat() newfstatat calls; the compiled kernels call fstat directly (_compat.h).
SAME = {"fstat": "newfstatat", "lstat": "newfstatat", "open": "openat"}


def traced_calls(kind, tmp_path):
    """{operation: [fastsession's system calls, the floor's]} as strace saw them."""
    log = tmp_path / "trace"
    done = subprocess.run(
        ["strace", "-f", "-o", str(log), "-e", "trace=%file,%desc", sys.executable, "-c", SCRIPT, kind, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: -c would import its uncompiled source folder
    )
    assert done.returncode == 0, done.stderr
    seen, current = {}, None
    for line in log.read_text().splitlines():
        if 'write(2, "<<' in line:
            current = line.split('"<<')[1].split("\\n")[0]
            seen.setdefault(current, []).append([])
        elif 'write(2, ">>' in line:
            current = None
        elif current is not None and "(" in line:
            name = line.split("(")[0].split()[-1]
            seen[current][-1].append(SAME.get(name, name))
    return seen


@pytest.mark.parametrize("kind", ["c", "py"])
def test_the_floor_makes_the_system_calls_fastsession_makes(kind, tmp_path):
    if shutil.which("strace") is None:
        pytest.fail("strace is needed for this test: apt-get install -y strace")
    if kind == "c":
        compiled_twin("io")  # the bench's compiled row needs the compiled modules (skipped only when not built)
    for operation, (mine, floor) in traced_calls(kind, tmp_path).items():
        assert mine == floor, f"{operation}: fastsession {mine} vs the floor {floor}"
        assert len(mine) >= 4, (operation, mine)  # something was traced (a lock is open, write, ..., unlink)
