"""The README's quick starts run as printed (their session folder swapped for a temporary one)."""

import os
import re

from werkzeug.test import Client as WSGIClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example(heading):
    """The first python block after ``heading`` in README.md."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    after = readme.split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def run(heading, tmp_path):
    namespace = {"__name__": "__main__"}  # as a script pasted into a file and run
    exec(example(heading).replace('"/var/lib/myapp/sessions"', repr(str(tmp_path))), namespace)
    return namespace


def test_the_webstack_example_with_its_ready_transaction_class(tmp_path):
    namespace = run("### WebStack-style code", tmp_path)
    assert namespace["trans"].outgoing["SID"]  # its own assertion ran too: the next request saw the visit


def test_the_wsgi_quick_start(tmp_path):
    client = WSGIClient(run("### WSGI", tmp_path)["app"])
    assert [client.get("/").text for _ in range(2)] == ["1", "2"]


def test_the_flask_quick_start(tmp_path):
    client = run("### Flask", tmp_path)["app"].test_client()
    assert [client.get("/").text for _ in range(2)] == ["1", "2"]


def test_the_fastapi_middleware_quick_start(tmp_path):
    from starlette.testclient import TestClient

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("\n### asyncio, ASGI: Starlette, FastAPI\n", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section.split("\n### ", 1)[0], re.S)
    (quick_start,) = [block for block in blocks if "FastAPI()" in block]
    namespace = {"__name__": "__main__"}  # as a script pasted into a file and run
    exec(quick_start.replace('"/var/lib/myapp/sessions"', repr(str(tmp_path))), namespace)
    with TestClient(namespace["app"]) as client:
        assert [client.get("/").json() for _ in range(2)] == [{"visits": 1}, {"visits": 2}]
