"""A Django project whose sessions live in its own PostgreSQL database (run by tests/test_django_postgres.py).

    python django_postgres_app.py ACTION DSN [ARG]

DATABASES["default"] is the database of DSN; ``fastsession.contrib.django_postgres``
is installed and FASTSESSION_BACKEND = "postgres" (no second DSN). Actions:
``migrate``; ``login`` (on Django's own ``db`` engine, as before the switch:
prints the cookie); ``whoami COOKIE`` (on fastsession, FASTSESSION_MIGRATE_FROM
= the db engine); ``increments N`` (N threads, 25 requests each, on one
session, through LockingSessionMiddleware); ``statements`` (those a request
makes); ``clearsessions``. Prints one JSON line.
"""

import json
import os
import sys
import threading

action, dsn = sys.argv[1:3]
argument = sys.argv[3] if len(sys.argv) > 3 else ""
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402


def whoami(request):
    return HttpResponse(request.user.username if request.user.is_authenticated else "")


def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


def peek(request):
    return HttpResponse(str(request.session.get("n")))


def short(request):
    request.session["short"] = True
    request.session.set_expiry(1)
    return HttpResponse("ok")


urlpatterns = [path("whoami", whoami), path("count", count), path("short", short), path("peek", peek)]

parts = conninfo_to_dict(dsn)
django_engine = action == "login"
settings.configure(
    SECRET_KEY="fastsession-postgres-" + "x" * 40,
    USE_TZ=True,
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "fastsession.contrib.django_postgres",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts["dbname"],
            "USER": parts["user"],
            "HOST": parts["host"],
            "PORT": parts["port"],
        }
    },
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    MIDDLEWARE=(
        ["django.contrib.sessions.middleware.SessionMiddleware"]
        if django_engine
        else ["fastsession.contrib.django.LockingSessionMiddleware"]
    )
    + ["django.contrib.auth.middleware.AuthenticationMiddleware"],
    SESSION_ENGINE="django.contrib.sessions.backends.db" if django_engine else "fastsession.contrib.django",
    FASTSESSION_BACKEND="postgres",
    FASTSESSION_MIGRATE_FROM="django.contrib.sessions.backends.db",
    FASTSESSION_LOCK_TIMEOUT=60,
)
django.setup()

from django.core import management  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402


def tables():
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'fastsession%%' ORDER BY 1")
        return [name for (name,) in cursor.fetchall()]


def session_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, convert_from(body, 'UTF8') FROM fastsession_session WHERE body IS NOT NULL")
        return cursor.fetchall()


if action == "migrate":
    management.call_command("migrate", verbosity=0)
    print(json.dumps({"tables": tables()}))
elif action == "unmigrate":
    management.call_command("migrate", "fastsession_postgres", "zero", verbosity=0)
    print(json.dumps({"tables": tables()}))
elif action == "login":
    from django.contrib.auth.models import User

    User.objects.create_user("ann", password="pw")
    client = Client()
    assert client.login(username="ann", password="pw")
    print(json.dumps({"cookie": client.cookies[settings.SESSION_COOKIE_NAME].value}))
elif action == "whoami":
    from django.contrib.sessions.backends.db import SessionStore as DjangoStore

    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = argument
    name = client.get("/whoami").content.decode()
    from fastsession.names import stored_name

    print(
        json.dumps(
            {
                "user": name,
                "old_record": DjangoStore().exists(argument),
                "rows": [row_name == stored_name(argument) for row_name, _ in session_rows()],
                "id_at_rest": any(argument in body for _, body in session_rows()),
            }
        )
    )
elif action == "increments":
    first = Client()
    first.get("/count")
    cookie = first.cookies[settings.SESSION_COOKIE_NAME].value
    errors = []

    def requests():
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie
        for _ in range(25):
            response = client.get("/count")
            if response.status_code != 200:
                errors.append(response.status_code)

    threads = [threading.Thread(target=requests) for _ in range(int(argument))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = Client()
    final.cookies[settings.SESSION_COOKIE_NAME] = cookie
    # (the first request counted 1 and this one counts 1 more: the threads made the rest)
    print(json.dumps({"n": int(final.get("/count").content) - 2, "errors": errors}))
elif action == "statements":
    from fastsession.contrib._django_postgres import DjangoPostgres

    made = []
    plain_sql = DjangoPostgres.sql

    def counted(self, statement, params):
        made.append(statement)
        return plain_sql(self, statement, params)

    client = Client()
    client.get("/count")
    DjangoPostgres.sql = counted
    client.get("/count")
    changed, made[:] = list(made), []
    client.get("/peek")
    print(json.dumps({"changed": changed, "read": list(made)}))
elif action == "clearsessions":
    client = Client()
    client.get("/short")
    kept = Client()
    kept.get("/count")
    before = len(session_rows())
    import time

    time.sleep(1.5)
    management.call_command("clearsessions")
    print(json.dumps({"before": before, "after": len(session_rows())}))
