"""One adapter's whole request with fastsession on files against the framework's in-memory session layer, timed
side by side (``interleaved_stats``): the ratio of the bench's whole-request tables, for one adapter alone.

    python benchmarks/whole_request_ratio.py flask 25

To compare two builds on the same host at the same time, alternate runs of this with each on ``PYTHONPATH``
(``pip install --no-deps --target /tmp/other .`` in a checkout of the other commit).
"""

import sys
import tempfile

from fastsession.bench import asgi, contenders
from fastsession.bench.measure import interleaved_stats

TABLES = {
    "flask": (contenders.FLASK_REQUESTS, "Flask + fastsession (files)", contenders.FLASK_REQUEST_BASELINE),
    "django": (
        contenders.DJANGO_REQUESTS,
        "Django + fastsession (files, LockingSessionMiddleware)",
        contenders.DJANGO_REQUEST_BASELINE,
    ),
    "starlette": (asgi.ASGI_REQUESTS, "Starlette + fastsession (files)", asgi.ASGI_REQUEST_BASELINE),
}


def main(adapter: str, rounds: int) -> None:
    table, name, baseline = TABLES[adapter]
    directory = tempfile.mkdtemp(dir="/dev/shm")
    runners = {contender: table[contender](directory)["modify"] for contender in (name, baseline)}
    stats = interleaved_stats(runners, rounds)
    for contender in (name, baseline):
        median, iqr = stats[contender]["median"], stats[contender]["iqr"]
        print(f"{median * 1e6:8.2f} µs  {median / stats[baseline]['median']:.3f}x  iqr {iqr:.0%}  {contender}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
