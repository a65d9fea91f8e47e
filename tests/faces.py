"""Every kind of store driven one way: files and Redis, sync and async (the ``face`` fixture is in conftest)."""

import asyncio
import inspect
import uuid

import psycopg
import redis
import redis.asyncio
from conftest import Transaction
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import fastsession
from fastsession import postgres_admin
from fastsession.aio import AsyncRedisSessionStore, AsyncSessionStore
from fastsession.aio_postgres import AsyncPostgresSessionStore
from fastsession.postgres import PostgresSessionStore
from fastsession.redis import RedisSessionStore

FACES = ["files", "files-async", "redis", "redis-async", "postgres", "postgres-async"]


class Face:
    """One kind of store, driven the same way whatever its face: every method called as if sync."""

    def __init__(self, kind, directory, redis_url, postgres_dsn=None):
        self.kind = kind
        self.postgres_dsn = postgres_dsn
        self.directory = directory
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self.prefix = f"test-commit-{uuid.uuid4().hex[:8]}:"
        if kind.startswith("redis"):
            self.client = (
                redis.asyncio.Redis.from_url(redis_url) if kind.endswith("async") else redis.Redis.from_url(redis_url)
            )
        self.opened = []
        self.owner = True  # finish() drops what it made (a twin in another process does not)
        if kind.startswith("postgres"):
            self.table = f"t_{uuid.uuid4().hex[:12]}"
            postgres_admin.init(postgres_dsn, self.table)
            self.pool = (
                AsyncConnectionPool(postgres_dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False)
                if kind.endswith("async")
                else ConnectionPool(postgres_dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)
            )

    def spec(self):
        """What another process needs to make this face's twin (``twin``): the same storage."""
        return (self.kind, self.directory, self.redis_url, self.postgres_dsn, self.prefix, getattr(self, "table", None))

    @classmethod
    def twin(cls, spec):
        kind, directory, redis_url, postgres_dsn, prefix, table = spec
        face = cls(kind if not kind.startswith("postgres") else "files", directory, redis_url)
        face.kind, face.postgres_dsn, face.prefix, face.owner = kind, postgres_dsn, prefix, False
        if kind.startswith("postgres"):
            face.table = table
            face.pool = ConnectionPool(postgres_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True)
        return face

    def constructor(self, **options):
        """(store class, where, options): this face's store is ``store_class(trans, where, **options)``."""
        if self.kind == "files":
            return fastsession.SessionStore, self.directory, options
        if self.kind == "files-async":
            return AsyncSessionStore, self.directory, options
        if self.kind == "redis":
            return RedisSessionStore, self.client, dict(options, prefix=self.prefix)
        if self.kind == "postgres":
            return PostgresSessionStore, self.pool, dict(options, table=self.table)
        if self.kind == "postgres-async":
            return AsyncPostgresSessionStore, self.pool, dict(options, table=self.table)
        return AsyncRedisSessionStore, self.client, dict(options, prefix=self.prefix)

    def store(self, cookie=None, make=None, **options):
        """A store of this face's (``make``: a StoreFactory of ``constructor``'s, which makes it instead)."""
        trans = Transaction({"SID": cookie} if cookie else {})
        if make is None:
            store_class, where, options = self.constructor(**options)
            store = store_class(trans, where, **options)
        else:
            store = make(trans)
        self.opened.append(store)
        return Driven(self, store, trans)

    def run(self, value):
        return self.loop.run_until_complete(value) if inspect.isawaitable(value) else value

    def stored(self, data, **options):
        """A stored session holding ``data``: its id."""
        s = self.store(**options)
        s.get_session(True).update(data)
        s.close()
        return s.trans.cookies["SID"]

    def read(self, session_id):
        """The stored session's data (None when absent), read under a lock as a request would."""
        s = self.store(session_id, timeout=5)
        session = s.get_session(False)
        data = None if session is None else dict(session)
        s.rollback()
        return data

    def finish(self):
        for store in self.opened:
            self.run(store.rollback())
        if self.kind.startswith("redis"):
            self.run(self.client.aclose() if self.kind.endswith("async") else self.client.close())
        if self.kind.startswith("postgres"):
            self.run(self.pool.close())
        if self.kind.startswith("postgres") and self.owner:
            with psycopg.connect(self.postgres_dsn, autocommit=True) as conn:
                for statement in postgres_admin.drop_sql(self.table):
                    conn.execute(statement)
        self.loop.close()


class Driven:
    def __init__(self, face, store, trans):
        self.face, self.raw, self.trans = face, store, trans

    def __getattr__(self, name):
        method = getattr(self.raw, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: self.face.run(method(*args, **kwargs))


# -- what a PostgreSQL face keeps, read and written around the store -----------------------------------


def pg(face, statement, params=()):
    """The rows of one statement on the face's server."""
    with psycopg.connect(face.postgres_dsn, autocommit=True) as conn:
        cursor = conn.execute(statement.format(t=face.table), params)
        return cursor.fetchall() if cursor.description else []


def pg_at_rest(face):
    """Every name the face's tables hold: stored names, "<name>:lease" for a live lease, the user index's."""
    rows = pg(face, "SELECT name, holder IS NOT NULL AND lease_until > clock_timestamp() FROM {t}")
    names = [name for name, _ in rows] + [name + ":lease" for name, held in rows if held]
    for user, name in pg(face, "SELECT user_hash, name FROM {t}_user"):
        names += [user, name]
    return names


def pg_body(face, sid):
    from fastsession.names import stored_name

    rows = pg(face, "SELECT body FROM {t} WHERE name = %s", (stored_name(sid),))
    return bytes(rows[0][0]) if rows and rows[0][0] is not None else None


def pg_put(face, sid, body):
    from fastsession.names import stored_name

    pg(
        face,
        "INSERT INTO {t} (name, body) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET body = excluded.body",
        (stored_name(sid), body),
    )


def pg_in_index(face, user, name):
    return bool(pg(face, "SELECT 1 FROM {t}_user WHERE user_hash = %s AND name = %s", (user, name)))
