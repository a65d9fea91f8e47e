import importlib
import os
import types

import pytest

import fastsession

# Under FASTSESSION_NO_EXTENSIONS=1 the suite tests the pure twins only;
# otherwise the compiled ones are imported directly, so a missing extension
# is an error here rather than the pure twin tested twice.
TWINS = ["py"] if os.environ.get("FASTSESSION_NO_EXTENSIONS") else ["c", "py"]


def compiled_twin(kind):
    """The compiled module ``_<kind>_c`` for tests that compare the twins.

    On an install without a compiler (FASTSESSION_NO_EXTENSIONS=1 and no
    compiled modules) such a test is skipped, not failed: the suite still
    collects and runs. Without that variable a missing module is an error.
    """
    try:
        return importlib.import_module(f"fastsession._{kind}_c")
    except ImportError:
        if os.environ.get("FASTSESSION_NO_EXTENSIONS"):
            pytest.skip("needs the compiled twins, which this install lacks")
        raise


@pytest.fixture(params=TWINS)
def kernels(request):
    """The kernel modules of one twin: .ids, .lock, .io."""
    suffix = request.param
    return types.SimpleNamespace(
        name=suffix,
        **{kind: importlib.import_module(f"fastsession._{kind}_{suffix}") for kind in ("ids", "lock", "io")},
    )


class Cookie:
    def __init__(self, value):
        self.value = value


class Transaction:
    """WebStack's transaction protocol over a plain dict of cookies (a browser's jar)."""

    def __init__(self, cookies=None):
        self.cookies = dict(cookies or {})
        self.events = []

    def get_cookie(self, name):
        return Cookie(self.cookies[name]) if name in self.cookies else None

    def set_cookie_value(self, name, value):
        self.events.append(("set", name, value))
        self.cookies[name] = value

    def delete_cookie(self, name):
        self.events.append(("delete", name))
        self.cookies.pop(name, None)


@pytest.fixture
def session_dir(tmp_path):
    return str(tmp_path / "sessions")


@pytest.fixture
def make_store(session_dir):
    """SessionStore factory over session_dir; stores left open are rolled back at teardown."""
    made = []

    def make(trans=None, **options):
        store = fastsession.SessionStore(trans if trans is not None else Transaction(), session_dir, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.rollback()


def session_files(directory):
    """Every file below the session directory, relative paths."""
    found = []
    for root, _dirs, files in os.walk(directory):
        found += [os.path.relpath(os.path.join(root, f), directory) for f in files]
    return sorted(found)


def store_session(session_dir, data, **options):
    """A stored session holding ``data``; returns (id, Transaction with its cookie)."""
    trans = Transaction()
    with fastsession.SessionStore(trans, session_dir, **options) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"], trans


@pytest.fixture
def traversable_tmp():
    """A temp folder every user may enter (pytest's own are 0700 root), for tests run as nobody."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="fastsession-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server started for this run, and only for it.

    Never the server FASTSESSION_REDIS_URL names: tests kill its clients,
    pause it, flush its scripts and set its maxmemory, which must never
    reach a server someone else uses. FASTSESSION_TEST_REDIS_URL names one
    that a runner started for the tests alone (tools/mutation.sh does: it
    runs the suite many times in one process, where a server per run would
    leave clients cached by Django pointing at the one before).
    """
    url = os.environ.get("FASTSESSION_TEST_REDIS_URL")
    if url:
        yield url
        return
    from fastsession.bench.redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # never a silent skip: no Redis, no pass
    yield server.url
    server.stop()


def started(topology):
    """``topology.start()``; no redis-server is a failure, never a skip."""
    try:
        return topology.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def redis_cluster():
    """A real Redis Cluster of 3 masters, started for this run (tests/redis_topologies.py)."""
    from redis_topologies import Cluster

    cluster = started(Cluster())
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def sentinel_setup():
    """A real master, replica and Sentinel (tests/redis_topologies.py)."""
    from redis_topologies import SentinelSetup

    setup = started(SentinelSetup())
    yield setup
    setup.stop()


@pytest.fixture(scope="session")
def postgres_dsn():
    """A real PostgreSQL server started for this run (initdb + pg_ctl in a temp folder), and only for it;
    FASTSESSION_TEST_POSTGRES_DSN names one a runner started for the tests alone."""
    dsn = os.environ.get("FASTSESSION_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    from fastsession.bench.postgres_server import PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))  # never a silent skip: no PostgreSQL, no pass
    yield server.dsn
    server.stop()


@pytest.fixture(params=["files", "redis", "postgres"])
def sync_face(request, tmp_path, redis_url):
    """The sync stores only (files, Redis, PostgreSQL): what forked processes drive."""
    from faces import Face

    dsn = request.getfixturevalue("postgres_dsn") if request.param.startswith("postgres") else None
    f = Face(request.param, str(tmp_path / "sessions"), redis_url, dsn)
    yield f
    f.finish()


@pytest.fixture(params=["files", "files-async", "redis", "redis-async", "postgres", "postgres-async"])
def face(request, tmp_path, redis_url):
    """One kind of store (tests/faces.py): files, Redis and PostgreSQL, sync and async, in turn."""
    from faces import Face

    dsn = request.getfixturevalue("postgres_dsn") if request.param.startswith("postgres") else None
    f = Face(request.param, str(tmp_path / "sessions"), redis_url, dsn)
    yield f
    f.finish()
