"""A store of N sessions: fill rate, space, round-trip cost as it grows, and gc.

    python benchmarks/scale.py --sessions 1000000          # the full run (tmpfs)
    python benchmarks/scale.py --sessions 20000            # CI's smoke run

Fills a fresh directory (on /dev/shm unless --directory) through the public
API, measures the cost of a locked read-modify-write round trip at 0, N/10
and N stored sessions (median of batches), then makes 90 % of the sessions
expired and runs ``python -m fastsession gc`` on it in a child process,
reporting its time and peak memory (RSS), beside the same command's peak on
an empty directory.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fastsession import SessionStore
from fastsession.bench.contenders import CookieJar

SESSION = {"user_id": 48213, "cart": [{"sku": "A-1042", "qty": 2}], "locale": "en-GB", "visits": 0}


def new_session(directory):
    jar = CookieJar()
    store = SessionStore(jar, directory)
    store.get_session(True).update(SESSION)
    store.close()
    return jar.cookies["SID"]


def round_trip_us(directory, batches=15, per_batch=200):
    """Median µs of a locked read-modify-write round trip on one session of this store."""
    jar = CookieJar()
    jar.cookies["SID"] = new_session(directory)
    samples = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(per_batch):
            store = SessionStore(jar, directory)
            store.get_session(True)["visits"] += 1
            store.close()
        samples.append((time.perf_counter() - started) / per_batch * 1e6)
    return statistics.median(samples)


def space(directory):
    files = size = blocks = 0
    for root, _, names in os.walk(directory):
        for name in names:
            status = os.stat(os.path.join(root, name))
            files, size, blocks = files + 1, size + status.st_size, blocks + status.st_blocks * 512
    return files, size, blocks


def run_gc(directory, max_age):
    """(seconds, peak RSS in MiB) of `python -m fastsession gc` in a child process."""
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        "r = subprocess.run([sys.executable, '-m', 'fastsession', 'gc', sys.argv[1], '--max-age', sys.argv[2],"
        " '--quiet'], capture_output=True, text=True);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode);"
        "print(r.stdout.strip())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, directory, str(max_age)], capture_output=True, text=True, check=True
    )
    first, summary = done.stdout.split("\n", 1)
    seconds, peak_kib, returncode = first.split()
    if returncode != "0":
        raise RuntimeError(f"gc failed: {summary}")
    return float(seconds), int(peak_kib) / 1024, summary.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--directory", help="where to build the store (default: a new folder on /dev/shm)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.sessions
    base = args.directory or tempfile.mkdtemp(prefix="fastsession-scale-", dir="/dev/shm")
    directory = os.path.join(base, "sessions")
    report = {"sessions": n, "directory": directory}
    try:
        report["round_trip_us_at_0"] = round_trip_us(directory)
        checkpoints = {n // 10: "round_trip_us_at_tenth", n: "round_trip_us_at_all"}
        started, made = time.perf_counter(), 0
        for target in sorted(checkpoints):
            while made < target:
                new_session(directory)
                made += 1
                if made % 50_000 == 0:
                    sys.stderr.write(f"\rfilled {made:,} of {n:,}")
                    sys.stderr.flush()
            report[checkpoints[target]] = round_trip_us(directory)
        fill_seconds = time.perf_counter() - started
        sys.stderr.write("\n")
        report["fill_per_second"] = n / fill_seconds
        report["files"], report["bytes"], report["bytes_on_disk"] = space(directory)
        report["ratio_all_to_0"] = report["round_trip_us_at_all"] / report["round_trip_us_at_0"]

        old = time.time() - 7200
        seen = aged = 0
        for root, _, names in os.walk(directory):
            for name in names:
                seen += 1
                if seen % 10:  # nine in ten, across the whole store
                    os.utime(os.path.join(root, name), (old, old))
                    aged += 1
        report["expired"] = aged
        report["gc_seconds"], report["gc_peak_mib"], report["gc_summary"] = run_gc(directory, 3600)
        empty = tempfile.mkdtemp(prefix="fastsession-scale-empty-")
        report["gc_peak_mib_empty_directory"] = run_gc(empty, 3600)[1]
        shutil.rmtree(empty)
        report["files_after_gc"] = space(directory)[0]
    finally:
        if not args.directory:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"""fastsession scale run: {n:,} sessions in {directory}
fill: {report["fill_per_second"]:,.0f} sessions/s through the public API
space: {report["files"]:,} files, {report["bytes"]:,} bytes ({report["bytes_on_disk"]:,} bytes on disk)
round trip (median µs): {report["round_trip_us_at_0"]:.1f} at 0, {report["round_trip_us_at_tenth"]:.1f} at {n // 10:,}, \
{report["round_trip_us_at_all"]:.1f} at {n:,}  (x{report["ratio_all_to_0"]:.2f})
gc of {report["expired"]:,} expired of {report["files"]:,}: {report["gc_seconds"]:.1f} s, peak RSS \
{report["gc_peak_mib"]:.1f} MiB (empty directory: {report["gc_peak_mib_empty_directory"]:.1f} MiB)
  {report["gc_summary"]}
files after gc: {report["files_after_gc"]:,}""")


if __name__ == "__main__":
    main()
