"""A fixed workload for instruction counts: N locked read-modify-write round trips (``read``: read-only ones;
``factory``: each store made by a long-lived StoreFactory, as the WSGI, Flask and Starlette adapters make theirs, not
by WebStack's constructor).

Compare two versions repeatably (counts, unlike seconds, do not depend on the
machine's load):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/callgrind_roundtrip.py 2000 /dev/shm/cg [read] [factory] 2>&1 | grep refs

Run it once with N=0 too: the difference is the cost of N round trips. (A
fixed PYTHONHASHSEED makes the counts repeat exactly; without it, dict
layouts differ from run to run by a few hundred instructions per trip.)
"""

import os
import shutil
import sys

import fastsession
from fastsession.bench.contenders import CookieJar
from fastsession.factory import StoreFactory


def main(count: int, directory: str, change: bool = True, factory: bool = False) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    jar = CookieJar()
    store = fastsession.SessionStore(jar, directory)
    store.get_session(1).update({"user_id": 48213, "cart": [1, 2, 3], "visits": 0})
    store.close()
    make = StoreFactory(fastsession.SessionStore, directory).make if factory else None
    for _ in range(count):
        store = fastsession.SessionStore(jar, directory) if make is None else make(jar)
        session = store.get_session(1)
        if change:
            session["visits"] += 1
        else:
            session["visits"]
        store.close()
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        sys.argv[2] if len(sys.argv) > 2 else os.path.join("/dev/shm", "fastsession-cg"),
        change="read" not in sys.argv[3:],
        factory="factory" in sys.argv[3:],
    )
