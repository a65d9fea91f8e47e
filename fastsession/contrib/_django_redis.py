"""The Django engine's storage on Redis (``FASTSESSION_REDIS_URL`` or ``FASTSESSION_REDIS_CACHE``).

RedisBackend with the calls the engine makes of the files backend
(_django_ttl.ExpiresByTTL; ``exists`` is RedisBackend's), so that
``fastsession.contrib.django`` has one SessionStore for both.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from ..aio import AsyncFiles, arun, to_completion
from ..redis import RedisBackend, RedisHandle
from ._django_ttl import ExpiresByTTL

_clients: dict[tuple[str, str, bool], Any] = {}
# Keyed by the client itself: an id() outlives its object, and a later client could be given the twin of
# another server's.
_async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def client_for(url: str | None, cache_alias: str | None, cluster: bool) -> Any:
    """The redis-py client of a URL, or of a Django cache alias (its RedisCache's), made once per process."""
    key = (url or "", cache_alias or "", cluster)
    client = _clients.get(key)
    if client is None:
        if cache_alias:
            from django.core.cache import caches

            cache = caches[cache_alias]
            if not hasattr(cache, "_cache") or not hasattr(cache._cache, "get_client"):
                raise ValueError(
                    f"FASTSESSION_REDIS_CACHE={cache_alias!r} is not a django.core.cache.backends.redis.RedisCache"
                )
            client = cache._cache.get_client(None, write=True)
        elif cluster:
            from redis.cluster import RedisCluster

            client = RedisCluster.from_url(url or "")
        else:
            import redis

            client = redis.Redis.from_url(url or "")
        _clients[key] = client
    return client


def async_twin(client: Any) -> Any:
    """A ``redis.asyncio`` client to the server of the sync ``client``, made once; None for a Cluster.

    Async requests wait for a lock on the event loop with it, never in a thread: a burst of one user's
    requests then holds no thread that another user's request needs.
    """
    twin = _async_clients.get(client)
    if twin is None and client not in _async_clients:
        import redis
        import redis.asyncio

        kinds: dict[Any, Any] = {
            redis.Connection: redis.asyncio.Connection,
            redis.SSLConnection: redis.asyncio.SSLConnection,
            redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
        }
        pool = getattr(client, "connection_pool", None)
        kind = kinds.get(getattr(pool, "connection_class", None)) if type(client) is redis.Redis else None
        if kind is not None:
            settings = {name: value for name, value in pool.connection_kwargs.items() if name != "cache"}  # type: ignore[union-attr]
            twin = redis.asyncio.Redis(connection_pool=redis.asyncio.ConnectionPool(connection_class=kind, **settings))
        _async_clients[client] = twin
    return twin


class DjangoRedis(ExpiresByTTL, RedisBackend):
    """RedisBackend as the Django engine uses it: per-save TTLs, Django's session keys."""

    def __init__(self, client: Any, timeout: float | None, prefix: str, check_key: Any, lock_ttl: float = 30.0) -> None:
        RedisBackend.__init__(self, client, True, 1.0, timeout, lock_ttl, None, prefix)
        self.check_key = check_key
        self._async_scripts: Any = None

    @staticmethod
    def ttl_arg(seconds: float | None) -> str:
        """A TTL in ms for the scripts: "0" (none) for None, else at least 1 ms (an expiry already past)."""
        return "0" if seconds is None else str(max(1, int(seconds * 1000)))

    def async_scripts(self) -> Any:
        """The scripts' calls on the event loop (aio_redis.AsyncScripts), or None where there is no async twin."""
        if self._async_scripts is None:
            twin = async_twin(self.client)
            if twin is not None:
                from ..aio_redis import AsyncScripts

                self._async_scripts = AsyncScripts(twin)
        return self._async_scripts

    async def aopen(self, key: str) -> RedisHandle:
        """open(), waiting on the event loop (a cancelled wait gives back a lock it took)."""
        scripts = self.async_scripts()
        if scripts is None:  # a Cluster: waited for in a thread
            handle: RedisHandle = await AsyncFiles._in_thread(self.open, key, undo=self.release)
            return handle
        handle = await arun(scripts, self._open(key))
        return handle

    async def arelease(self, handle: RedisHandle) -> None:
        """release() from the event loop, carried to its end even when the caller is cancelled."""
        scripts = self.async_scripts()
        if scripts is None:
            await to_completion(asyncio.get_running_loop().run_in_executor(None, self.release, handle))
            return
        await to_completion(arun(scripts, self._release(handle)))

    def unlocked(self, key: str) -> RedisHandle:
        data_key, lock_key = self._keys(key)
        return RedisHandle(key, data_key, lock_key, None, None)
