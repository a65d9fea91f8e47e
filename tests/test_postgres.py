"""fastsession.postgres on a real PostgreSQL server: leases, lost updates, faults, the pool, gc and the CLI.

The facade's behaviour on PostgreSQL (options, the user index, encryption,
max_size, max_lifetime, commit-mode merges) is tested by the ``face`` tests,
which run on every kind of store; this file holds what is PostgreSQL's own.
"""

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import orjson
import psycopg
import pytest
from conftest import Transaction
from psycopg_pool import ConnectionPool

from fastsession import LockTimeout, SessionError, postgres_admin
from fastsession.aio_postgres import AsyncPostgresSessionStore
from fastsession.bench.postgres_server import PostgresServer
from fastsession.names import stored_name
from fastsession.postgres import PostgresSessionStore, pool_for, statements


@pytest.fixture
def table(postgres_dsn):
    """A fresh pair of tables for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_admin.init(postgres_dsn, name)
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for statement in postgres_admin.drop_sql(name):
            conn.execute(statement)


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test alone (restarted, filled or stopped by it)."""
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    postgres_admin.init(server.dsn)
    yield server
    server.stop()


def rows(dsn, statement, params=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def stored(dsn, table, data, **options):
    """A stored session holding ``data``: its id."""
    trans = Transaction({})
    with PostgresSessionStore(trans, dsn, table=table, **options) as store:
        store.get_session(True).update(data)
    return trans.cookies["SID"]


def read(dsn, table, sid, **options):
    options.setdefault("timeout", 10)
    with PostgresSessionStore(Transaction({"SID": sid}), dsn, table=table, **options) as store:
        session = store.get_session(False)
        return None if session is None else dict(session)


def test_every_statement_is_valid_sql_for_the_server(postgres_dsn, table):
    params = {"n": "x", "v": "t h", "b": b"{}", "ttl": 0, "lease": 1, "absent": False, "u": "x", "i": b"{}"}
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for text in statements(table).values():
            with conn.transaction(force_rollback=True):  # parsed, bound and run, then undone
                conn.execute(text, params)


def test_a_table_name_is_refused_unless_a_plain_identifier(postgres_dsn):
    for bad in ("sessions; DROP TABLE x", "Sessions", "a.b.c", "1abc", "", "a-b"):
        with pytest.raises(ValueError, match="table"):
            PostgresSessionStore(Transaction({}), postgres_dsn, table=bad)
    assert statements("app.sessions")["read"].count('"app"."sessions"') == 1


def test_no_id_is_at_rest_and_a_held_lease_is_a_row_not_a_transaction(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"user": "ann"})
    store = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table)
    store.get_session(False)["n"] = 1
    (name, holder, body) = rows(postgres_dsn, f"SELECT name, holder, body FROM {table}")[0]
    assert name == stored_name(sid) and sid not in holder and sid.encode() not in bytes(body)
    # the lease is in the row: no connection of the server is in a transaction while the app works
    states = rows(postgres_dsn, "SELECT state FROM pg_stat_activity WHERE datname = 'postgres'")
    assert ("idle in transaction",) not in states
    store.close()
    assert rows(postgres_dsn, f"SELECT holder, lease_until FROM {table}") == [(None, None)]
    assert read(postgres_dsn, table, sid) == {"user": "ann", "n": 1}


def test_a_request_that_stores_nothing_leaves_no_row(postgres_dsn, table):
    for cookie in (None, "A" * 43):  # no cookie; a well-formed cookie naming no session
        with PostgresSessionStore(Transaction({"SID": cookie} if cookie else {}), postgres_dsn, table=table) as store:
            assert store.get_session(False) is None
            store.get_session(True)
    assert rows(postgres_dsn, f"SELECT count(*) FROM {table}") == [(0,)]


# -- no lost update --------------------------------------------------------------------------------


def _increments(dsn, table, sid, n, start, report):
    start.wait(30)
    pool = ConnectionPool(dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True)
    done = 0
    try:
        for _ in range(n):
            with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table, timeout=60) as store:
                session = store.get_session(False)
                session["n"] += 1
            done += 1
    finally:
        pool.close()
        report.put(done)


def test_eight_processes_times_two_hundred_locked_increments_lose_none(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 0})
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no pool or thread of ours
    start, report = context.Event(), context.Queue()
    workers = [
        context.Process(target=_increments, args=(postgres_dsn, table, sid, 200, start, report)) for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    start.set()
    done = [report.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert done == [200] * 8
    assert read(postgres_dsn, table, sid) == {"n": 1600}
    assert rows(postgres_dsn, f"SELECT holder FROM {table}") == [(None,)]  # every lease ended


def _one_key(dsn, table, sid, key, start, report):
    start.wait(30)
    try:
        with PostgresSessionStore(Transaction({"SID": sid}), dsn, table=table, locking="commit", timeout=30) as store:
            session = store.get_session(False)
            time.sleep(0.05)  # every request has read before any commits
            session[key] = True
        report.put("ok")
    except Exception as exc:  # (reported, not swallowed)
        report.put(repr(exc))


def test_commit_mode_merges_of_different_keys_from_concurrent_requests_keep_every_key(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"base": 1})
    context = multiprocessing.get_context("spawn")
    start, report = context.Event(), context.Queue()
    keys = [f"k{i}" for i in range(6)]
    workers = [context.Process(target=_one_key, args=(postgres_dsn, table, sid, key, start, report)) for key in keys]
    for worker in workers:
        worker.start()
    start.set()
    assert [report.get(timeout=120) for _ in workers] == ["ok"] * len(keys)
    for worker in workers:
        worker.join(30)
    assert read(postgres_dsn, table, sid) == {"base": 1, **dict.fromkeys(keys, True)}


def test_async_tasks_on_one_session_lose_no_update(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 0})

    async def increments(n):
        for _ in range(n):
            async with AsyncPostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table) as store:
                session = await store.get_session(False)
                await asyncio.sleep(0)  # let the others run into the lease
                session["n"] += 1

    async def main():
        await asyncio.gather(*(increments(25) for _ in range(8)))

    asyncio.run(main())
    assert read(postgres_dsn, table, sid) == {"n": 200}


# -- leases: waiting, wake-ups, holders that are gone ----------------------------------------------------


def test_a_release_wakes_a_marked_waiter_with_a_notify(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 0})
    holder = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table)
    holder.get_session(False)
    with pytest.raises(LockTimeout):  # a waiter that gave up marked the row
        PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, timeout=0.05).get_session(False)
    (marked,) = rows(postgres_dsn, f"SELECT waiting_until > clock_timestamp() FROM {table}")[0]
    assert marked
    with psycopg.connect(postgres_dsn, autocommit=True) as ears:
        ears.execute(f'LISTEN "{table}"')
        holder.close()
        heard = [note.payload for note in ears.notifies(timeout=5, stop_after=1)]
    assert heard == [stored_name(sid)]  # the name only, never the id


def test_a_waiter_is_served_once_the_holder_releases(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 0})
    holder = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, delay=5)
    holder.get_session(False)["n"] = 1
    got = []

    def wait():
        with PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, delay=5, timeout=30) as s:
            got.append(dict(s.get_session(False)))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert got == []  # still waiting
    holder.close()
    waiter.join(30)
    assert got == [{"n": 1}]  # it read the holder's commit


def _hold_forever(dsn, table, sid, ready):
    store = PostgresSessionStore(Transaction({"SID": sid}), dsn, table=table, lock_ttl=600)
    store.get_session(False)
    ready.set()
    time.sleep(600)


def test_a_lease_whose_holder_was_sigkilled_on_this_host_is_broken_at_once(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_forever, args=(postgres_dsn, table, sid, ready))
    holder.start()
    assert ready.wait(60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    # the lease runs for 600 s; a waiter of 10 s is served: the dead holder's lease was broken
    assert read(postgres_dsn, table, sid, lock_ttl=600) == {"n": 1}


def test_a_lease_of_another_host_is_kept_until_it_runs_out(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    rows(
        postgres_dsn,
        f"UPDATE {table} SET holder = 'token elsewhere/1 boot 1 1', lease_until = clock_timestamp() + interval '1 s'",
    )
    with pytest.raises(LockTimeout, match="elsewhere"):  # not judged by pid: another host's
        read(postgres_dsn, table, sid, timeout=0.1)
    assert read(postgres_dsn, table, sid) == {"n": 1}  # served once it ran out


def test_a_commit_after_the_lease_ran_out_and_was_taken_writes_nothing(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    late = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, lock_ttl=0.2)
    late.get_session(False)["n"] = 99
    time.sleep(0.3)
    with PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, timeout=5) as store:
        store.get_session(False)["n"] = 2
    with pytest.raises(SessionError, match="ran out and was taken"):
        late.close()
    assert read(postgres_dsn, table, sid) == {"n": 2}


def test_a_lock_timeout_names_the_stored_name_and_the_holder_never_the_id(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    holder = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table)
    holder.get_session(False)
    with pytest.raises(LockTimeout) as caught:
        read(postgres_dsn, table, sid, timeout=0.05)
    holder.close()
    message = str(caught.value)
    assert stored_name(sid) in message and sid not in message and f"pid {os.getpid()}" in message
    assert caught.value.holder["pid"] == os.getpid()


# -- faults ----------------------------------------------------------------------------------------


def test_a_connection_killed_mid_request_loses_nothing_and_the_next_request_is_served(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    pool = ConnectionPool(postgres_dsn, min_size=2, max_size=2, kwargs={"autocommit": True}, open=True)
    pool.wait()
    try:
        store = PostgresSessionStore(Transaction({"SID": sid}), pool, table=table)
        store.get_session(False)["n"] = 2
        # every connection of the pool is terminated while the view runs
        rows(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND datname = 'postgres' AND application_name = ''",
        )
        time.sleep(0.2)
        store.close()  # the commit goes out on a live connection: the dead ones are discarded first
        assert read(postgres_dsn, table, sid) == {"n": 2}
        assert pool.get_stats().get("returns_bad", 0) >= 1
    finally:
        pool.close()


def test_a_server_restart_between_requests_costs_no_request(own_server):
    dsn = own_server.dsn
    sid = stored(dsn, "fastsession_session", {"n": 1})
    own_server.restart()
    assert read(dsn, "fastsession_session", sid) == {"n": 1}
    with PostgresSessionStore(Transaction({"SID": sid}), dsn) as store:
        store.get_session(False)["n"] = 2
    assert read(dsn, "fastsession_session", sid) == {"n": 2}


def test_a_server_that_is_down_is_a_clear_session_error_and_no_empty_session(own_server):
    dsn = own_server.dsn
    sid = stored(dsn, "fastsession_session", {"n": 1})
    own_server.pg_ctl("stop", "-m", "fast", "-w")
    pool = ConnectionPool(dsn, min_size=0, max_size=1, timeout=1.0, kwargs={"autocommit": True}, open=True)
    try:
        with pytest.raises(SessionError, match="PostgreSQL could not run"):
            PostgresSessionStore(Transaction({"SID": sid}), pool).get_session(True)
    finally:
        pool.close()
    own_server.pg_ctl("start", "-w", "-l", os.path.join(own_server.folder, "log"))
    assert read(dsn, "fastsession_session", sid) == {"n": 1}


def test_a_statement_timeout_is_a_session_error_and_leaves_no_lease(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    pool = ConnectionPool(
        postgres_dsn,
        min_size=1,
        max_size=2,
        kwargs={"autocommit": True, "options": "-c statement_timeout=200"},
        open=True,
    )
    try:
        with psycopg.connect(postgres_dsn) as blocker:  # another program holds the row in a transaction
            blocker.execute(f"SELECT 1 FROM {table} FOR UPDATE")
            store = PostgresSessionStore(Transaction({"SID": sid}), pool, table=table)
            with pytest.raises(SessionError, match="statement timeout"):
                store.get_session(False)
            blocker.rollback()
        assert rows(postgres_dsn, f"SELECT holder FROM {table}") == [(None,)]  # no lease taken, none left
        with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table) as store:
            store.get_session(False)["n"] = 2
    finally:
        pool.close()
    assert read(postgres_dsn, table, sid) == {"n": 2}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs for the tablespace needs root")
def test_a_full_disk_on_the_server_is_a_session_error_and_keeps_the_stored_session(own_server, traversable_tmp):
    import pwd

    small = os.path.join(traversable_tmp, "small")  # (the server's user must reach it)
    os.mkdir(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        entry = pwd.getpwnam("postgres")
        os.chown(small, entry.pw_uid, entry.pw_gid)
        dsn = own_server.dsn
        rows(dsn, f"CREATE TABLESPACE small LOCATION '{small}'")
        postgres_admin.init(dsn, "full")
        rows(dsn, 'ALTER TABLE "full" SET TABLESPACE small')  # ("full": a reserved word is a table name too)
        sid = stored(dsn, "full", {"n": 1})
        store = PostgresSessionStore(Transaction({"SID": sid}), dsn, table="full")
        store.get_session(False)["blob"] = os.urandom(3 << 20).hex()  # more than the tablespace holds
        with pytest.raises(SessionError, match="could not (extend|write)|No space left"):
            store.close()
        assert read(dsn, "full", sid) == {"n": 1}  # what was stored is what is read
        assert rows(dsn, 'SELECT holder FROM "full"') == [(None,)]  # and the lease ended
        rows(dsn, 'DROP TABLE "full"')
        rows(dsn, "DROP TABLE full_user")
        rows(dsn, "DROP TABLESPACE small")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_value_orjson_cannot_encode_raises_and_keeps_the_stored_session(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    store = PostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table)
    store.get_session(False)["bad"] = {1, 2}
    with pytest.raises(TypeError, match="bad"):
        store.close()
    assert read(postgres_dsn, table, sid) == {"n": 1}


def test_a_corrupt_row_counts_as_absent_with_a_warning(postgres_dsn, table, caplog):
    sid = stored(postgres_dsn, table, {"n": 1})
    rows(postgres_dsn, f"UPDATE {table} SET body = 'not json'::bytea")
    assert read(postgres_dsn, table, sid) is None
    assert "ignoring corrupt session" in caplog.text and sid not in caplog.text


# -- the pool: no connection is pinned by a request --------------------------------------------------


def test_sixty_four_requests_in_their_views_hold_none_of_a_pool_of_ten(postgres_dsn, table):
    pool = ConnectionPool(postgres_dsn, min_size=10, max_size=10, kwargs={"autocommit": True}, open=True)
    pool.wait()
    sids = [stored(postgres_dsn, table, {"n": 0}) for _ in range(64)]
    in_view = threading.Barrier(65, timeout=60)
    errors = []

    def request(sid):
        try:
            with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table, timeout=60) as store:
                session = store.get_session(False)  # the lease is taken...
                in_view.wait()  # ...and all 64 views run at once
                in_view.wait()
                session["n"] += 1
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    in_view.wait()  # had a view pinned a connection, no more than ten could be here: the barrier breaks
    stats = pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"]  # every connection idle while 64 views run
    in_view.wait()
    for thread in threads:
        thread.join(60)
    pool.close()
    assert errors == []
    assert [read(postgres_dsn, table, sid) for sid in sids] == [{"n": 1}] * 64


def test_sixty_four_requests_queued_on_one_session_hold_no_connection_while_they_wait(postgres_dsn, table):
    pool = ConnectionPool(postgres_dsn, min_size=10, max_size=10, kwargs={"autocommit": True}, open=True)
    pool.wait()
    sid = stored(postgres_dsn, table, {"n": 0})
    holder = PostgresSessionStore(Transaction({"SID": sid}), pool, table=table)
    holder.get_session(False)

    def request():
        with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table, timeout=120) as store:
            store.get_session(False)["n"] += 1

    threads = [threading.Thread(target=request) for _ in range(64)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # all of them waiting for the lease
    other = stored(postgres_dsn, table, {"other": True})  # another user is served meanwhile, by the same pool
    with PostgresSessionStore(Transaction({"SID": other}), pool, table=table, timeout=5) as store:
        assert dict(store.get_session(False)) == {"other": True}
    holder.close()
    for thread in threads:
        thread.join(120)
    pool.close()
    assert read(postgres_dsn, table, sid) == {"n": 64}


# -- schema, gc and the command line -----------------------------------------------------------------


def test_gc_deletes_expired_sessions_in_batches_and_keeps_live_ones_and_held_leases(postgres_dsn, table):
    for i in range(25):
        stored(postgres_dsn, table, {"i": i}, max_age=0.05)
    live = stored(postgres_dsn, table, {"live": True}, max_age=3600)
    forever = stored(postgres_dsn, table, {"forever": True})
    held = stored(postgres_dsn, table, {"held": True}, max_age=0.05)
    holder = PostgresSessionStore(Transaction({"SID": held}), postgres_dsn, table=table, max_age=0.05)
    holder.get_session(False)
    # a lease-only row whose lease ran out (its holder died before releasing)
    rows(
        postgres_dsn,
        f"INSERT INTO {table} (name, holder, lease_until) VALUES ('orphan', 'x h', clock_timestamp() - interval '1 s')",
    )
    time.sleep(0.1)
    assert postgres_admin.collect(postgres_dsn, table, batch=10) == 26  # 25 expired and the orphan, 10 at a time
    names = {name for (name,) in rows(postgres_dsn, f"SELECT name FROM {table}")}
    assert names == {stored_name(live), stored_name(forever), stored_name(held)}
    holder.close()
    with pytest.raises(ValueError, match="batch"):
        postgres_admin.collect(postgres_dsn, table, batch=0)


def test_the_cli_inits_the_schema_and_collects(postgres_dsn):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    name = f"cli_{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "fastsession"]
    done = subprocess.run(
        [*command, "postgres", "init", postgres_dsn, "--table", name], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert rows(
        postgres_dsn, "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL", (name, name + "_user")
    ) == [(True, True)]
    stored(postgres_dsn, name, {"n": 1}, max_age=0.01)
    time.sleep(0.05)
    done = subprocess.run(
        [*command, "gc", "--postgres", postgres_dsn, "--table", name], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "removed 1 expired session" in done.stdout
    assert rows(postgres_dsn, f"SELECT count(*) FROM {name}") == [(0,)]
    for statement in postgres_admin.drop_sql(name):
        rows(postgres_dsn, statement)


def test_init_changes_nothing_that_exists(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 1})
    postgres_admin.init(postgres_dsn, table)
    assert read(postgres_dsn, table, sid) == {"n": 1}


def _pool_id(dsn, report):
    from fastsession.postgres import pool_for

    report.put(id(pool_for(dsn)))


def test_a_dsn_gives_one_pool_per_process_and_a_new_one_in_a_forked_child(postgres_dsn):
    pool = pool_for(postgres_dsn)
    assert pool_for(postgres_dsn) is pool
    stores = [PostgresSessionStore(Transaction({}), postgres_dsn) for _ in range(3)]
    assert {id(store.backend) for store in stores} == {id(stores[0].backend)}  # one backend, shared
    context = multiprocessing.get_context("fork")
    report = context.Queue()
    child = context.Process(target=_pool_id, args=(postgres_dsn, report))
    child.start()
    child.join(30)
    assert report.get(timeout=5) != id(pool)  # (a parent's connections are never used by a child)


# -- the adapters' keyword ---------------------------------------------------------------------------


def test_flask_on_postgres_by_keyword(postgres_dsn):
    from flask import Flask, session

    from fastsession.contrib.flask import FastSessionInterface

    postgres_admin.init(postgres_dsn)
    app = Flask(__name__)
    app.session_interface = FastSessionInterface(postgres=postgres_dsn)

    @app.route("/")
    def count():
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
    sid = client.get_cookie("session").value
    assert rows(postgres_dsn, "SELECT body FROM fastsession_session WHERE name = %s", (stored_name(sid),)) == [
        (b'{"n":3}',)
    ]
    with pytest.raises(TypeError, match="one of them"):
        FastSessionInterface("/tmp/x", postgres=postgres_dsn)


def test_asgi_on_postgres_by_keyword(postgres_dsn):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from fastsession.asgi import SessionMiddleware

    async def count(request):
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse(str(request.session["n"]))

    postgres_admin.init(postgres_dsn)
    app = Starlette(routes=[Route("/", count)])
    app.add_middleware(SessionMiddleware, postgres=postgres_dsn)
    with TestClient(app) as client:
        assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
        sid = client.cookies["session"]
    (body,) = rows(postgres_dsn, "SELECT body FROM fastsession_session WHERE name = %s", (stored_name(sid),))[0]
    assert orjson.loads(body) == {"n": 3}
    with pytest.raises(TypeError, match="one of"):
        SessionMiddleware(app, "/tmp/x", postgres=postgres_dsn)


def test_a_waiter_hears_the_release_through_its_listener_which_closes_when_idle(postgres_dsn, table, monkeypatch):
    from fastsession import postgres

    monkeypatch.setattr(postgres, "LISTEN_IDLE", 1.0)
    sid = stored(postgres_dsn, table, {"n": 0})
    pool = ConnectionPool(postgres_dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)
    holder = PostgresSessionStore(Transaction({"SID": sid}), pool, table=table)
    holder.get_session(False)
    waiter_done = threading.Event()

    def wait():
        with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table, timeout=30) as store:
            store.get_session(False)["n"] += 1
        waiter_done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    listener = holder.backend.listener
    deadline = time.monotonic() + 10
    while not holder.backend.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    assert holder.backend.listening  # the waiter's first wait opened the process's listener
    listening = f"""SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN "{table}"'"""
    assert rows(postgres_dsn, listening) == [(1,)]  # one, though the two stores' options differ
    holder.close()
    assert waiter_done.wait(30)
    thread.join(10)
    assert stored_name(sid) in listener.heard  # woken by the NOTIFY its release sent
    time.sleep(2.5)  # no waiter since: the listener closed its connection
    assert not holder.backend.listening and rows(postgres_dsn, listening) == [(0,)]
    pool.close()
    assert read(postgres_dsn, table, sid) == {"n": 1}


def test_an_async_waiter_hears_the_release_on_its_event_loop(postgres_dsn, table):
    sid = stored(postgres_dsn, table, {"n": 0})

    async def main():
        holder = AsyncPostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, delay=30)
        session = await holder.get_session(False)
        session["n"] = 1
        waiter = AsyncPostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table, delay=30, timeout=30)
        waiting = asyncio.ensure_future(waiter.get_session(False))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if holder.backend.listening:
                break
        assert holder.backend.listening and not waiting.done()
        await holder.close()
        got = dict(await waiting)
        await waiter.close()
        return got, stored_name(sid) in holder.backend.listener.heard

    assert asyncio.run(main()) == ({"n": 1}, True)


def test_a_connection_past_descriptor_1023_is_checked_too(postgres_dsn, table):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # a busy server's open files
    try:
        sid = stored(postgres_dsn, table, {"n": 1})
        pool = ConnectionPool(postgres_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True)
        pool.wait()
        with pool.connection() as conn:
            assert conn.fileno() > 1023
        rows(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND datname = 'postgres' AND application_name = ''",
        )
        time.sleep(0.2)
        with PostgresSessionStore(Transaction({"SID": sid}), pool, table=table) as store:
            store.get_session(False)["n"] = 2
        pool.close()
        assert read(postgres_dsn, table, sid) == {"n": 2}
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_pool_a_dsn_made_for_an_event_loop_is_closed_when_the_loop_ends(postgres_dsn, table):
    """A test client makes a loop per request: a pool left open there hangs the loop's shutdown at times
    (psycopg_pool's workers outlive a cancellation) and keeps its connections."""
    from fastsession.aio_postgres import dsn_pools

    sid = stored(postgres_dsn, table, {"n": 0})
    pools = []

    async def request():
        async with AsyncPostgresSessionStore(Transaction({"SID": sid}), postgres_dsn, table=table) as store:
            (await store.get_session(False))["n"] += 1
        pools.append(await dsn_pools(postgres_dsn).get())

    for _ in range(5):
        asyncio.run(request())
    assert len({id(pool) for pool in pools}) == 5  # one per loop...
    assert all(pool.closed for pool in pools)  # ...closed with it
    assert read(postgres_dsn, table, sid) == {"n": 5}
