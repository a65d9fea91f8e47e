"""The Django engine on PostgreSQL, in a Django project of its own (tests/django_postgres_app.py) per test:
the migration, the lazy switch from Django's db engine, no lost update, clearsessions."""

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "django_postgres_app.py")


@pytest.fixture
def database(postgres_dsn):
    """A new database on the test server: its DSN."""
    name = f"dj_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def app(*args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, APP, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_apps_migration_creates_the_tables_and_reverses(database):
    assert app("migrate", database)["tables"] == ["fastsession_session", "fastsession_session_user"]
    assert app("unmigrate", database)["tables"] == []


def test_switching_from_djangos_db_engine_logs_no_one_out_and_moves_the_session(database):
    app("migrate", database)
    cookie = app("login", database)["cookie"]
    seen = app("whoami", database, cookie)
    assert seen["user"] == "ann"  # still logged in after the switch
    assert seen["old_record"] is False  # the db engine's row is gone
    assert seen["rows"] == [True] and seen["id_at_rest"] is False  # stored under its name, never its key


def test_eight_threads_of_locked_requests_on_one_session_lose_no_increment(database):
    app("migrate", database)
    result = app("increments", database, "8")
    assert result == {"n": 200, "errors": []}


def test_clearsessions_deletes_the_expired_rows_only(database):
    app("migrate", database)
    assert app("clearsessions", database) == {"before": 2, "after": 1}


def test_a_request_takes_the_lease_and_reads_in_one_statement_and_ends_it_in_one(database):
    app("migrate", database)
    made = app("statements", database)
    # A changed session is written and its lease ended by one statement (the save of a finished response).
    assert made == {"changed": ["acquire", "commit"], "read": ["acquire", "release"]}
