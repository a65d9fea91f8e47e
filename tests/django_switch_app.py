"""A Django app before and after switching SESSION_ENGINE to fastsession (run by tests/test_migrate.py).

    python django_switch_app.py login  WORKDIR ENGINE REDIS_URL
    python django_switch_app.py whoami WORKDIR ENGINE REDIS_URL COOKIE

``login`` runs on Django's own ``django.contrib.sessions.backends.ENGINE``
and logs user "ann" in with Django's test client; ``whoami`` runs on
fastsession.contrib.django with FASTSESSION_MIGRATE_FROM naming that engine
and asks who the cookie's user is. Both share WORKDIR (SQLite database,
SESSION_FILE_PATH) and a Redis cache. Prints one JSON line.
"""

import json
import os
import sys

action, workdir, engine, redis_url = sys.argv[1:5]
cookie = sys.argv[5] if len(sys.argv) > 5 else ""
old_engine = f"django.contrib.sessions.backends.{engine}"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def whoami(request):
    return HttpResponse(request.user.username if request.user.is_authenticated else "")


urlpatterns = [path("whoami", whoami)]

session_files = os.path.join(workdir, "sessions")
os.makedirs(session_files, mode=0o700, exist_ok=True)
settings.configure(
    SECRET_KEY="fastsession-switch-" + "x" * 40,
    USE_TZ=True,
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(workdir, "db.sqlite3")}},
    CACHES={
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": os.path.basename(workdir),
        }
    },
    SESSION_FILE_PATH=session_files,  # the old file engine's folder, kept as it was: fastsession shares it
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast; not what is tested
    MIDDLEWARE=(
        ["django.contrib.sessions.middleware.SessionMiddleware"]
        if action == "login"
        else ["fastsession.contrib.django.LockingSessionMiddleware"]
    )
    + ["django.contrib.auth.middleware.AuthenticationMiddleware"],
    SESSION_ENGINE=old_engine if action == "login" else "fastsession.contrib.django",
    **({} if action == "login" else {"FASTSESSION_MIGRATE_FROM": old_engine}),
)
django.setup()

from importlib import import_module  # noqa: E402

from django.core import management  # noqa: E402
from django.test import Client  # noqa: E402


def old_record(key):
    return import_module(old_engine).SessionStore().exists(key)


if action == "login":
    management.call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    User.objects.create_user("ann", password="pw")
    client = Client()
    assert client.login(username="ann", password="pw")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    print(json.dumps({"cookie": key, "old_record": old_record(key)}))
else:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    user = client.get("/whoami").content.decode()
    print(
        json.dumps(
            {
                "user": user,
                "cookie": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "old_record": old_record(cookie),
            }
        )
    )
