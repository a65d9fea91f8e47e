"""Round trips of whichever fastsession this interpreter imports: to compare two versions side by side.

Run it alternately with two interpreters (a venv per version), several times, on tmpfs and on disk:

    for i in 1 2 3; do old/bin/python benchmarks/versions.py /dev/shm; python benchmarks/versions.py /dev/shm; done

Prints the median µs of 31 batches of 300 locked read-modify-write and read-only round trips
through the facade (a store per request, as a web app makes them).
"""

import statistics
import sys
import tempfile
import time

import fastsession
from fastsession import SessionStore

# Self-contained (no fastsession.bench): older versions' bench needed redis-py to import.
SESSION = {"user": "ann", "cart": list(range(20)), "visits": 0}


class Cookie:
    def __init__(self, value: str) -> None:
        self.value = value


class CookieJar:
    """WebStack's transaction protocol over one browser's cookies."""

    def __init__(self) -> None:
        self.cookies: dict = {}

    def get_cookie(self, name: str):
        return Cookie(self.cookies[name]) if name in self.cookies else None

    def set_cookie_value(self, name: str, value: str) -> None:
        self.cookies[name] = value

    def delete_cookie(self, name: str) -> None:
        self.cookies.pop(name, None)


def main(where: str) -> None:
    directory = tempfile.mkdtemp(dir=where)
    jar = CookieJar()
    with SessionStore(jar, directory) as store:
        store.get_session(True).update(SESSION)

    def modify() -> None:
        store = SessionStore(jar, directory)
        store.get_session(True)["visits"] += 1
        store.close()

    def read() -> None:
        store = SessionStore(jar, directory)
        store.get_session(True)["visits"]
        store.close()

    medians = {}
    for name, request in (("modify", modify), ("read", read)):
        samples = []
        for _ in range(31):
            started = time.perf_counter()
            for _ in range(300):
                request()
            samples.append((time.perf_counter() - started) / 300 * 1e6)
        medians[name] = statistics.median(samples)
    print(
        f"fastsession {fastsession.__version__} ({'compiled' if fastsession.EXTENSIONS else 'pure'}) "
        f"at {fastsession.__file__}: " + ", ".join(f"{k} {v:.2f} µs" for k, v in medians.items())
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir())
