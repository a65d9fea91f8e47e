"""Run Django's own session tests against fastsession.contrib.django.

    python tests/django_suite/run.py [--cache DIR] [--redis URL | --postgres DSN]

Fetches the sdist of the installed Django (pip download --no-binary :all:),
unpacks its tests/sessions_tests, and runs SessionTestsMixin and
SessionMiddlewareTests (see engine_tests.py) with Django's own test runner,
the engine set as SESSION_ENGINE (on files; with --redis, on that Redis
through FASTSESSION_REDIS_URL; with --postgres, on that server as the
project's own database, FASTSESSION_BACKEND = "postgres", its tables made by
the fastsession.contrib.django_postgres migration in the test database).
Exits non-zero on any failure.
"""

import argparse
import os
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "framework_suites"))

from sdist import fetch_sdist  # noqa: E402  (the folder above, shared with the Flask and Starlette runners)


def unpack_session_tests(sdist: str, into: str) -> str:
    """Extract <sdist>/tests/sessions_tests into ``into``; returns ``into``."""
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tests/sessions_tests/" in m.name and m.isfile()]
        for member in members:
            member.name = member.name.split("/tests/", 1)[1]
            archive.extract(member, into)
    return into


SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}


def postgres_database(dsn: str) -> dict:
    """Django's DATABASES entry for a postgresql:// DSN."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.get("dbname", "postgres"),
        "USER": parts.get("user", ""),
        "PASSWORD": parts.get("password", ""),
        "HOST": parts.get("host", ""),
        "PORT": parts.get("port", ""),
        "OPTIONS": {"pool": True},  # Django's pool, which fastsession shares and the runner closes at teardown
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "fastsession-django-sdist"))
    parser.add_argument("--redis", metavar="URL", help="run the engine on Redis (FASTSESSION_REDIS_URL)")
    parser.add_argument("--postgres", metavar="DSN", help="run the engine on this PostgreSQL server (the project's DB)")
    args = parser.parse_args()

    import django

    sdist = fetch_sdist("django", django.__version__, args.cache)
    tests_dir = unpack_session_tests(sdist, tempfile.mkdtemp(prefix="django-session-tests-"))
    sys.path[:0] = [tests_dir, HERE]

    from django.conf import settings

    settings.configure(
        SECRET_KEY="fastsession-django-suite-" + "s" * 40,
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "sessions_tests",
            *(["fastsession.contrib.django_postgres"] if args.postgres else []),
        ],
        DATABASES={"default": postgres_database(args.postgres) if args.postgres else SQLITE},
        **({"FASTSESSION_BACKEND": "postgres"} if args.postgres else {}),
        SESSION_ENGINE="fastsession.contrib.django",
        SESSION_FILE_PATH=tempfile.mkdtemp(prefix="fastsession-django-"),
        MIDDLEWARE=[],
        ROOT_URLCONF=[],
        **({"FASTSESSION_REDIS_URL": args.redis, "FASTSESSION_REDIS_PREFIX": "django-suite:"} if args.redis else {}),
    )
    django.setup()
    from django.test.runner import DiscoverRunner

    print(
        f"Django {django.__version__}: its session tests from {os.path.basename(sdist)} "
        "against SESSION_ENGINE = fastsession.contrib.django"
        + (
            f" on Redis ({args.redis})"
            if args.redis
            else f" on PostgreSQL ({args.postgres})"
            if args.postgres
            else " on files"
        ),
        flush=True,
    )
    failures = DiscoverRunner(verbosity=1, interactive=False).run_tests(["engine_tests"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
