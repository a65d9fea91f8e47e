"""Every Python block of the README and the docs runs as printed, or says why it does not.

A block runs in a fresh namespace as a script would (``__name__ == "__main__"``), its session folder
(``/var/lib/myapp/sessions``) swapped for a temporary one and the Redis and PostgreSQL it names for the
test's own.
A block that is not meant to run is preceded by ``<!-- not run: why -->``. A block that makes an
``app`` is then served a request that counts visits, twice (the newcomer's check of each quick start).
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"(<!-- not run: ([^>]*) -->\s*\n)?```python\n(.*?)```", re.S)


def blocks():
    for path in ["README.md", *sorted(glob.glob("docs/*.md", root_dir=ROOT))]:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        for number, found in enumerate(FENCE.finditer(text), 1):
            line = text.count("\n", 0, found.start(3))
            yield pytest.param(found.group(3), found.group(2), id=f"{path}:{line}#{number}")


BLOCKS = list(blocks())


def test_every_block_is_counted():
    skipped = [b for b in BLOCKS if b.values[1] is not None]
    assert all(reason.strip() for _, reason in (b.values for b in skipped))
    print(f"{len(BLOCKS)} python blocks: {len(BLOCKS) - len(skipped)} run, {len(skipped)} marked not run")


def visits(app):
    """The bodies of two requests to "/" of ``app`` (Flask, Starlette/FastAPI or WSGI), one browser."""
    if hasattr(app, "test_client"):  # Flask
        client = app.test_client()
        return [client.get("/").get_data(as_text=True) for _ in range(2)]
    if hasattr(app, "router") or hasattr(app, "middleware_stack"):  # Starlette, FastAPI
        from starlette.testclient import TestClient

        with TestClient(app) as client:
            return [client.get("/").text for _ in range(2)]
    from werkzeug.test import Client

    client = Client(app)
    return [client.get("/").get_data(as_text=True) for _ in range(2)]


@pytest.mark.parametrize("source, not_run", [b.values for b in BLOCKS], ids=[b.id for b in BLOCKS])
def test_the_block_runs(source, not_run, tmp_path, redis_url, request):
    if not_run is not None:
        return  # counted above, with its reason
    source = source.replace('"/var/lib/myapp/sessions"', repr(str(tmp_path)))
    source = source.replace('"redis://sessions.internal:6379/0"', repr(redis_url))
    if '"postgresql://app@db.internal/app"' in source:
        source = source.replace('"postgresql://app@db.internal/app"', repr(request.getfixturevalue("postgres_dsn")))
    namespace = {"__name__": "__main__"}
    exec(compile(source, "<doc block>", "exec"), namespace)
    app = namespace.get("app")
    if app is not None:
        seen = visits(app)
        assert re.sub(r"\D", "", seen[0]) == "1" and re.sub(r"\D", "", seen[1]) == "2", seen


DJANGO_PROJECT = """
import sys
import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

quick_start = {}
exec(sys.argv[1], quick_start)


def count(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


urlpatterns = [path("", count)]
settings.configure(
    SECRET_KEY="newcomer-" + "k" * 40, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"], DATABASES={},
    **{k: v for k, v in quick_start.items() if k.isupper()},
)
django.setup()
from django.test import Client

client = Client()
print(",".join(client.get("/").content.decode() for _ in range(2)))
"""


def test_the_readme_django_quick_start_serves_a_request_that_counts_visits(tmp_path):
    import subprocess
    import sys

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    (settings_block,) = [b.group(3) for b in FENCE.finditer(readme) if "SESSION_ENGINE" in b.group(3)]
    settings_block = settings_block.replace('"/var/lib/myapp/sessions"', repr(str(tmp_path)))
    (tmp_path / "project.py").write_text(DJANGO_PROJECT)
    done = subprocess.run(
        [sys.executable, "project.py", settings_block], cwd=str(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1,2"


def test_the_readme_quick_starts_pass_mypy_strict_in_a_users_module(tmp_path):
    import subprocess
    import sys

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    files = []
    for number, found in enumerate(FENCE.finditer(readme), 1):
        if found.group(2) is None:
            path = tmp_path / f"quick_start_{number}.py"
            path.write_text(found.group(3))
            files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
