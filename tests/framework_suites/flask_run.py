"""Run Flask's own session tests against fastsession.contrib.flask.

    python tests/framework_suites/flask_run.py [--redis URL | --postgres DSN]

Fetches the sdist of the installed Flask, unpacks its tests/, and changes one
line: the ``app`` fixture of its conftest.py sets ``app.session_interface``
to a FastSessionInterface (on files; with --redis, on that Redis). Then it runs
the session tests (every test named for the session, flashing, or the greenlet
copies of a request context, which read the session) of the files that hold
them, but those listed in NOT_APPLICABLE (with why). Exits non-zero on any
failure or skip (a skip is not a pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from sdist import NO_SKIPS, fetch_sdist, run_tests, unpack

FILES = [
    "tests/test_basic.py",
    "tests/test_testing.py",
    "tests/test_reqctx.py",
    "tests/test_session_interface.py",
    "tests/test_signals.py",
    "tests/test_helpers.py",
]
NOT_APPLICABLE = {
    "tests/test_basic.py::test_missing_session": "Flask's own session needs SECRET_KEY to sign the cookie; this cookie "
    "holds only a random id, so a session works without one",
    "tests/test_basic.py::test_session_secret_key_fallbacks": "key rotation of the signed cookie: nothing is signed",
    "tests/test_testing.py::test_session_transactions_no_null_sessions": "its app has no SECRET_KEY, so Flask's own "
    "interface opens a null session; this interface always opens a real one",
}
FIXTURE_RETURN = '        SECRET_KEY="test key",\n    )\n    return app\n'
INTERFACE = """

def _fastsession_interface():  # added by fastsession's tests/framework_suites/flask_run.py
    from fastsession.contrib.flask import FastSessionInterface

    dsn = os.environ.get("FASTSESSION_SUITE_POSTGRES")
    if dsn:
        return FastSessionInterface(postgres=dsn)
    url = os.environ.get("FASTSESSION_SUITE_REDIS")
    if url:
        import redis
        from fastsession.redis import RedisSessionStore

        return FastSessionInterface(redis.Redis.from_url(url), store_class=RedisSessionStore, prefix="flask-suite:")
    return FastSessionInterface(os.environ["FASTSESSION_SUITE_DIR"])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", metavar="URL", help="the interface on Redis instead of files")
    parser.add_argument("--postgres", metavar="DSN", help="the interface on PostgreSQL (tables made here)")
    args = parser.parse_args()

    from importlib.metadata import version

    import flask  # noqa: F401  (the installed version is the one tested)

    sdist = fetch_sdist("flask", version("flask"))
    root = unpack(sdist, "tests/", tempfile.mkdtemp(prefix="flask-tests-"))
    conftest = os.path.join(root, "tests", "conftest.py")
    text = open(conftest).read()
    if FIXTURE_RETURN not in text:
        print("Flask's app fixture is not the one this runner knows: update FIXTURE_RETURN", file=sys.stderr)
        return 2
    text = text.replace(
        FIXTURE_RETURN,
        FIXTURE_RETURN.replace(
            "    return app", "    app.session_interface = _fastsession_interface()\n    return app"
        ),
    )
    with open(conftest, "w") as out:
        out.write(text + INTERFACE + NO_SKIPS)
    env = dict(os.environ, FASTSESSION_SUITE_DIR=tempfile.mkdtemp(prefix="fastsession-flask-suite-"))
    if args.redis:
        env["FASTSESSION_SUITE_REDIS"] = args.redis
    if args.postgres:
        from fastsession.postgres_admin import init

        init(args.postgres)
        env["FASTSESSION_SUITE_POSTGRES"] = args.postgres
    where = f" on Redis ({args.redis})" if args.redis else f" on PostgreSQL ({args.postgres})" if args.postgres else ""
    print(
        f"Flask {version('flask')}: its session tests from {os.path.basename(sdist)} against FastSessionInterface"
        + (where or " on files"),
        flush=True,
    )
    return run_tests(root, FILES, NOT_APPLICABLE, env, "-k", "session or flash or greenlet", "-rs")


if __name__ == "__main__":
    sys.exit(main())
