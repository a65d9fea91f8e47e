"""Every kind of store driven one way: files and Redis, sync and async (the ``face`` fixture is in conftest)."""

import asyncio
import inspect
import uuid

import redis
import redis.asyncio
from conftest import Transaction

import fastsession
from fastsession.aio import AsyncRedisSessionStore, AsyncSessionStore
from fastsession.redis import RedisSessionStore

FACES = ["files", "files-async", "redis", "redis-async"]


class Face:
    """One kind of store, driven the same way whatever its face: every method called as if sync."""

    def __init__(self, kind, directory, redis_url):
        self.kind = kind
        self.directory = directory
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self.prefix = f"test-commit-{uuid.uuid4().hex[:8]}:"
        if kind.startswith("redis"):
            self.client = (
                redis.asyncio.Redis.from_url(redis_url) if kind.endswith("async") else redis.Redis.from_url(redis_url)
            )
        self.opened = []

    def store(self, cookie=None, **options):
        trans = Transaction({"SID": cookie} if cookie else {})
        if self.kind == "files":
            store = fastsession.SessionStore(trans, self.directory, **options)
        elif self.kind == "files-async":
            store = AsyncSessionStore(trans, self.directory, **options)
        elif self.kind == "redis":
            store = RedisSessionStore(trans, self.client, prefix=self.prefix, **options)
        else:
            store = AsyncRedisSessionStore(trans, self.client, prefix=self.prefix, **options)
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
        self.loop.close()


class Driven:
    def __init__(self, face, store, trans):
        self.face, self.raw, self.trans = face, store, trans

    def __getattr__(self, name):
        method = getattr(self.raw, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: self.face.run(method(*args, **kwargs))
