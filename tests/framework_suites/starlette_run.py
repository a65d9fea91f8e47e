"""Run Starlette's own session middleware tests against fastsession.asgi.SessionMiddleware.

    python tests/framework_suites/starlette_run.py [--redis URL | --postgres DSN]

Fetches the sdist of the installed Starlette, unpacks its tests/ and its
pytest settings (pyproject.toml: warnings are errors), and changes one line:
tests/middleware/test_session.py imports SessionMiddleware from fastsession
(on files: the middleware's default private folder; with --redis, a
``functools.partial`` of it with ``redis=`` from a module written beside the
tests). Every test runs, on asyncio, but the unit test of Starlette's own
``Session`` class (the middleware refuses trio at its first call: tested in
tests/test_asgi.py). Exits non-zero on any failure or skip.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from importlib.metadata import version

from sdist import NO_SKIPS, fetch_sdist, run_tests, unpack

TESTS = "tests/middleware/test_session.py"
NOT_APPLICABLE = {
    f"{TESTS}::test_session_tracks_modification": "a unit test of Starlette's own Session class, not of the middleware",
}
IMPORT = "from starlette.middleware.sessions import Session, SessionMiddleware\n"
ON_FILES = "from starlette.middleware.sessions import Session\nfrom fastsession.asgi import SessionMiddleware\n"
ON_REDIS = "from starlette.middleware.sessions import Session\nfrom fastsession_suite import SessionMiddleware\n"
REDIS_MODULE = '''"""SessionMiddleware on the Redis at FASTSESSION_SUITE_REDIS (written by fastsession's starlette_run.py)."""

import functools
import os

import redis.asyncio

import fastsession.asgi

SessionMiddleware = functools.partial(
    fastsession.asgi.SessionMiddleware,
    redis=redis.asyncio.Redis.from_url(os.environ["FASTSESSION_SUITE_REDIS"]),
    prefix="starlette-suite:",
)
'''
POSTGRES_MODULE = '''"""SessionMiddleware on the PostgreSQL at FASTSESSION_SUITE_POSTGRES (written by fastsession's starlette_run.py)."""

import functools
import os

import fastsession.asgi

SessionMiddleware = functools.partial(fastsession.asgi.SessionMiddleware, postgres=os.environ["FASTSESSION_SUITE_POSTGRES"])
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", metavar="URL", help="the middleware on Redis instead of files")
    parser.add_argument("--postgres", metavar="DSN", help="the middleware on PostgreSQL (tables made here)")
    args = parser.parse_args()

    sdist = fetch_sdist("starlette", version("starlette"))
    root = tempfile.mkdtemp(prefix="starlette-tests-")
    unpack(sdist, "tests/", root)
    unpack(sdist, "pyproject.toml", root)
    path = os.path.join(root, TESTS)
    text = open(path).read()
    if IMPORT not in text:
        print(f"{TESTS} does not import SessionMiddleware as this runner knows: update IMPORT", file=sys.stderr)
        return 2
    with open(path, "w") as out:
        out.write(text.replace(IMPORT, ON_REDIS if args.redis or args.postgres else ON_FILES))
    with open(os.path.join(root, "tests", "conftest.py"), "a") as out:
        out.write(NO_SKIPS)
    env = dict(os.environ)
    if args.redis:
        env["FASTSESSION_SUITE_REDIS"] = args.redis
        with open(os.path.join(root, "fastsession_suite.py"), "w") as out:
            out.write(REDIS_MODULE)
    if args.postgres:
        from fastsession.postgres_admin import init

        init(args.postgres)
        env["FASTSESSION_SUITE_POSTGRES"] = args.postgres
        with open(os.path.join(root, "fastsession_suite.py"), "w") as out:
            out.write(POSTGRES_MODULE)
    where = f" on Redis ({args.redis})" if args.redis else f" on PostgreSQL ({args.postgres})" if args.postgres else ""
    print(
        f"Starlette {version('starlette')}: {TESTS} from {os.path.basename(sdist)} against fastsession.asgi"
        + (where or " on files"),
        flush=True,
    )
    # trio is refused at the first call, with a clear error (tests/test_asgi.py)
    return run_tests(root, [TESTS], NOT_APPLICABLE, env, "-k", "not trio")


if __name__ == "__main__":
    sys.exit(main())
