"""fastsession on PostgreSQL against Django's own ``db`` and ``cached_db`` engines, on one local server.

    python benchmarks/postgres_vs_django.py [--rounds 15] [--ops 200] [--json FILE] [--quick]

Starts a PostgreSQL server of its own (fastsession.bench.postgres_server),
makes a Django project on it (DATABASES["default"], Django's session table
migrated and fastsession's), and measures in one process, contenders
interleaved round by round (so a noisy neighbour hits them all alike):

- a locked read-modify-write round trip: fastsession's
  ``PostgresSessionStore`` (open by cookie, change, commit), Django's
  ``SessionStore(key)`` load + ``save()`` for ``db`` and ``cached_db``
  (LocMemCache: the in-process cache, its best case);
- a read-only round trip (fastsession: open and release; Django: ``load()``);
- a whole Django request through the test client, reading and changing the
  session (LockingSessionMiddleware with FASTSESSION_BACKEND = "postgres";
  Django's SessionMiddleware with each engine);
- lost updates: 8 processes x N increments of one session, fastsession's
  locked requests against Django's ``db`` engine.

Prints a Markdown table (median µs per operation, interquartile range, ratio
to Django's db engine) and, with --json, the numbers.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION = {"user_id": 48213, "cart": [{"sku": "A-1042", "qty": 2}], "locale": "en-GB", "n": 0}


def configure(dsn):
    import django
    from django.conf import settings
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    settings.configure(
        SECRET_KEY="fastsession-bench-" + "x" * 40,
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
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
                "CONN_MAX_AGE": None,  # Django's connection kept, as in production
            }
        },
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MIDDLEWARE=[],
        FASTSESSION_BACKEND="postgres",
        FASTSESSION_LOCK_TIMEOUT=60,
    )
    django.setup()
    from django.core import management

    management.call_command("migrate", verbosity=0)


def view(request):
    from django.http import HttpResponse

    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(b"ok")


def urls():
    from django.urls import path

    return [path("", view)]


urlpatterns = []  # (filled by contenders(), once Django is set up)


def jar_with(cookies):
    from fastsession.bench.contenders import CookieJar

    jar = CookieJar()
    jar.cookies.update(cookies)
    return jar


def contenders():
    """name -> (read-modify-write, read-only, whole request): callables of one operation each."""
    from django.contrib.sessions.backends import cached_db, db
    from django.test import Client, override_settings

    from fastsession.bench.contenders import CookieJar
    from fastsession.postgres import PostgresSessionStore, pool_for

    urlpatterns[:] = urls()
    dsn = _dsn
    pool = pool_for(dsn)
    jar = CookieJar()
    with PostgresSessionStore(jar, pool) as store:
        store.get_session(True).update(SESSION)
    cookie = dict(jar.cookies)

    def fs_rmw():
        with PostgresSessionStore(jar_with(cookie), pool) as store:
            store.get_session(False)["n"] += 1

    def fs_read():
        with PostgresSessionStore(jar_with(cookie), pool) as store:
            store.get_session(False)["n"]

    made = {}
    for name, engine in (("django db", db), ("django cached_db", cached_db)):
        store = engine.SessionStore()
        store.update(SESSION)
        store.create()
        made[name] = (engine, store.session_key)

    def django_rmw(engine, key):
        def rmw():
            store = engine.SessionStore(key)
            store["n"] = store.get("n", 0) + 1
            store.save()

        return rmw

    def django_read(engine, key):
        return lambda: engine.SessionStore(key).load()

    def client(middleware, engine):
        with override_settings(MIDDLEWARE=[middleware], SESSION_ENGINE=engine):
            c = Client()
            c.get("/")  # the handler (and its middleware) made now, under these settings
        return lambda: c.get("/")

    fs_client = client("fastsession.contrib.django.LockingSessionMiddleware", "fastsession.contrib.django")
    table = {"fastsession postgres": (fs_rmw, fs_read, fs_client)}
    for name, (engine, key) in made.items():
        table[name] = (
            django_rmw(engine, key),
            django_read(engine, key),
            client("django.contrib.sessions.middleware.SessionMiddleware", engine.__name__),
        )
    return table


def timed(op, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        op()
    return (time.perf_counter_ns() - start) / n / 1000.0


def summary(samples):
    q = statistics.quantiles(samples, n=4)
    return {"median": statistics.median(samples), "iqr": [q[0], q[2]]}


# -- lost updates --------------------------------------------------------------------------------


def _django_increments(dsn, key, n, start, report):
    configure(dsn)
    from django.contrib.sessions.backends.db import SessionStore

    start.wait(60)
    for _ in range(n):
        store = SessionStore(key)
        store["n"] = store.get("n", 0) + 1
        store.save()
    report.put(n)


def _fs_increments(dsn, cookie, n, start, report):
    from fastsession.postgres import PostgresSessionStore

    start.wait(60)
    for _ in range(n):
        with PostgresSessionStore(jar_with(cookie), dsn, timeout=60) as store:
            store.get_session(False)["n"] += 1
    report.put(n)


def lost_updates(dsn, per_process):
    from django.contrib.sessions.backends.db import SessionStore

    from fastsession.bench.contenders import CookieJar
    from fastsession.postgres import PostgresSessionStore

    django_store = SessionStore()
    django_store["n"] = 0
    django_store.create()
    jar = CookieJar()
    with PostgresSessionStore(jar, dsn) as store:
        store.get_session(True)["n"] = 0
    context = multiprocessing.get_context("spawn")
    found = {}
    for name, target, arg in (
        ("django db", _django_increments, django_store.session_key),
        ("fastsession postgres", _fs_increments, dict(jar.cookies)),
    ):
        start, report = context.Event(), context.Queue()
        workers = [context.Process(target=target, args=(dsn, arg, per_process, start, report)) for _ in range(8)]
        for worker in workers:
            worker.start()
        start.set()
        made = sum(report.get(timeout=600) for _ in workers)
        for worker in workers:
            worker.join(60)
        if name == "django db":
            final = SessionStore(django_store.session_key).load()["n"]
        else:
            with PostgresSessionStore(jar_with(jar.cookies), dsn) as store:
                final = store.get_session(False)["n"]
        found[name] = {"increments": made, "stored": final, "lost": made - final}
    return found


_dsn = ""


def main(argv=None):
    global _dsn
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--increments", type=int, default=50, help="per process, for the lost-update count")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 20: it runs, nothing more")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.ops, args.increments = 3, 20, 10
    sys.path.insert(0, HERE)
    from fastsession.bench.postgres_server import PostgresServer

    server = PostgresServer().start()
    try:
        _dsn = server.dsn
        configure(server.dsn)
        table = contenders()
        samples = {name: [[], [], []] for name in table}
        for _ in range(args.rounds):
            for name, ops in table.items():
                for i, op in enumerate(ops):
                    samples[name][i].append(timed(op, args.ops))
        results = {
            name: dict(zip(("rmw", "read", "request"), (summary(s) for s in per))) for name, per in samples.items()
        }
        losses = lost_updates(server.dsn, args.increments)
    finally:
        server.stop()
    import fastsession

    report = {
        "fastsession": fastsession.__version__,
        "extensions": fastsession.EXTENSIONS,
        "rounds": args.rounds,
        "ops": args.ops,
        "results": results,
        "lost_updates": losses,
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    print(markdown(report))
    return 0


def markdown(report):
    base = report["results"]["django db"]
    lines = [
        "| store | locked read-modify-write (µs) | × Django db | read-only (µs) | × Django db | whole Django request (µs) "
        "| × Django db | lost updates (8 processes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        cells = []
        for kind in ("rmw", "read", "request"):
            m, (q1, q3) = r[kind]["median"], r[kind]["iqr"]
            cells += [f"{m:.0f} ({q1:.0f}–{q3:.0f})", f"{m / base[kind]['median']:.2f}"]
        lost = report["lost_updates"].get(name)
        cells.append(f"{lost['lost']} of {lost['increments']}" if lost else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
