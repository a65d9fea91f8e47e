"""Instructions per whole request, each adapter with fastsession on files against the same framework's session
layer over an in-memory dict (the floor of the bench's whole-request tables), counted by callgrind.

Counts repeat exactly from run to run and host to host (a fixed PYTHONHASHSEED), where the tables' seconds move
with the machine's load; they leave out what the kernel does in the system calls.

    python benchmarks/callgrind_request.py                 # the table (runs valgrind 12 times, a few minutes)
    python benchmarks/callgrind_request.py --one flask fastsession 300 /dev/shm/cg   # one count, under valgrind

Each count is N requests less none, over N, after 20 requests that warm the caches.
"""

import os
import subprocess
import sys
import tempfile

ADAPTERS = ("flask", "django", "starlette")
REQUESTS = 300


def runner(adapter: str, contender: str, directory: str):
    from fastsession.bench import asgi, contenders

    if adapter == "flask":
        name = "Flask + fastsession (files)" if contender == "fastsession" else contenders.FLASK_REQUEST_BASELINE
        return contenders.FLASK_REQUESTS[name](directory)["modify"]
    if adapter == "django":
        engine = "fastsession.contrib.django" if contender == "fastsession" else "fastsession.bench.memory"
        return contenders.django_request_ops(engine, directory)["modify"]
    name = "Starlette + fastsession (files)" if contender == "fastsession" else asgi.ASGI_REQUEST_BASELINE
    return asgi.ASGI_REQUESTS[name](directory)["modify"]


def one(adapter: str, contender: str, count: int, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    modify = runner(adapter, contender, tempfile.mkdtemp(dir=directory))
    modify(20)
    if count:
        modify(count)


def counted(adapter: str, contender: str, count: int, directory: str) -> int:
    """Instructions of a process making ``count`` requests (callgrind's total)."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        [*valgrind, sys.executable, __file__, "--one", adapter, contender, str(count), directory],
        env=dict(os.environ, PYTHONHASHSEED="0"),
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stderr.splitlines() if "refs:" in line)
    return int(line.split()[-1].replace(",", ""))


def table(directory: str) -> None:
    print(f"instructions per request (callgrind; {REQUESTS} requests less none)")
    print(f"{'adapter':<10} {'fastsession':>12} {'in-memory':>12} {'ratio':>6}")
    for adapter in ADAPTERS:
        each = {
            contender: (counted(adapter, contender, REQUESTS, directory) - counted(adapter, contender, 0, directory))
            / REQUESTS
            for contender in ("fastsession", "memory")
        }
        ratio = each["fastsession"] / each["memory"]
        print(f"{adapter:<10} {each['fastsession']:>12,.0f} {each['memory']:>12,.0f} {ratio:>5.2f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        table(sys.argv[1] if len(sys.argv) > 1 else "/dev/shm/fastsession-cg-request")
