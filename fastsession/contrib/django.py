"""Django: ``SESSION_ENGINE = "fastsession.contrib.django"``.

A drop-in for ``django.contrib.sessions.backends.file`` on the core's files
backend (ids, O_EXCL locks, atomic commits, orjson). Reads take no lock
(commits are atomic renames); a save locks, checks, commits. For no lost
updates between overlapping requests of one user, use
``fastsession.contrib.django.LockingSessionMiddleware`` instead of Django's
``SessionMiddleware``: it holds the session's lock for the whole request.

Settings: ``SESSION_FILE_PATH`` (default: a private ``fastsession-django-<uid>``
folder in the temp directory, refused if anyone else made it), ``SESSION_COOKIE_AGE``,
``FASTSESSION_LOCK_TIMEOUT`` (seconds to wait for a session's lock, default
10; the middleware answers 503 with Retry-After after that),
``FASTSESSION_LOCKING`` (``"request"``, the default: the middleware holds the
lock for the whole request; ``"commit"``: no lock while the view runs, a save
merges per key with what was stored meanwhile), ``FASTSESSION_ON_CONFLICT``
(for ``"commit"``: ``"raise"``, ``"ours"``, ``"theirs"`` or a callable), and
``FASTSESSION_READ_ONLY`` (a function of the request: true, and the
middleware takes no lock for it), ``FASTSESSION_MAX_SIZE`` (bytes of the
encoded session; a save over it raises SessionTooLarge and writes nothing),
``FASTSESSION_MAX_LIFETIME`` (seconds from a session's creation after which it
is gone however recently used; kept across ``cycle_key``, so it counts from
the first request, not from login: Django cycles the key at login),
``FASTSESSION_ENCRYPT`` (True: the data is sealed under a key derived from the
session key, fastsession.sealed; needs ``fastsession[crypto]``). ``request.session.release()`` saves now and
releases the lock; the view carries on.

On Redis (many hosts): ``FASTSESSION_REDIS_URL = "redis://..."``, or
``FASTSESSION_REDIS_CACHE = "<alias>"`` to reuse the client of a Django
``RedisCache``; ``FASTSESSION_REDIS_CLUSTER = True`` when the URL is a node of
a Redis Cluster; ``FASTSESSION_REDIS_PREFIX`` (default ``"fastsession:"``).
Each save sets the session's TTL to its expiry age, so ``clearsessions``
has nothing to do there.

Switching from another engine without logging anyone out:
``FASTSESSION_MIGRATE_FROM = "django.contrib.sessions.backends.file"`` (or
``db``, ``cache``, ``cached_db``, or any engine module). A key that names no
fastsession session is read once through that engine's own SessionStore
(and Django's SESSION_SERIALIZER, JSON; a pickle serializer is refused),
stored here under the same key, and the old record deleted.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import time
import weakref
from importlib import import_module
from typing import Any

import orjson
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.signals import setting_changed
from django.dispatch import Signal
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

from .. import _portal, events, record
from ..aio import PENDING, async_files
from ..busy import ADAPTER_TIMEOUT, refusal
from ..errors import LockTimeout, SessionConflict, SessionRevoked, TooManySessions
from ..files import FileBackend, private_folder
from ..header_id import check_id_header
from ..merge import check_on_conflict, merge
from ..migrate import storable
from ..names import stored_name
from ..record import META
from ..store import (
    LOCKING,
    RELEASE,
    BaseStore,
    check_max_size,
    created_meta,
    encode,
    outlived,
    shared_backend,
    write_limit,
)
from ..users import UserSession, bound, chosen_cap, entry, make_room, user_hash

__all__ = ["LockingSessionMiddleware", "SessionStore", "release"]

# Django accepts any key of 8 characters or more; only these ever become a path.
_PATH_SAFE = re.compile(r"[A-Za-z0-9_-]{8,200}")


# The settings this module reads, as read, until Django says one changed (override_settings, the test
# runner): reading one that is not set costs Django an AttributeError each time, and a request reads a dozen.
_read: dict[str, Any] = {}


def setting(name: str, default: Any = None) -> Any:
    """``getattr(settings, name, default)``, read once per change of the settings."""
    try:
        return _read[name]
    except KeyError:
        value = _read[name] = getattr(settings, name, default)
        return value


def _forget_settings(**_: Any) -> None:
    _read.clear()


setting_changed.connect(_forget_settings)


def path_safe(key: object) -> bool:
    return isinstance(key, str) and _PATH_SAFE.fullmatch(key) is not None


def default_path() -> str:
    """``<temp dir>/fastsession-django-<uid>``: this user's own, 0700, never one someone else made."""
    return private_folder("fastsession-django", "Django's default session folder (set SESSION_FILE_PATH to choose one)")


def storage_path() -> str:
    return setting("SESSION_FILE_PATH", None) or default_path()


# FASTSESSION_BACKEND: None picks files, or Redis when a FASTSESSION_REDIS_* setting names a server; a name
# picks that one (Redis then needs such a setting).
BACKENDS = (None, "files", "redis", "postgres")


def backend() -> Any:
    """The backend FASTSESSION_BACKEND names; without it, the Redis one when a FASTSESSION_REDIS_* setting names a
    server, else files."""
    timeout = setting("FASTSESSION_LOCK_TIMEOUT", ADAPTER_TIMEOUT)
    kind = setting("FASTSESSION_BACKEND", None)
    if kind not in BACKENDS:
        raise ValueError(f"FASTSESSION_BACKEND must be one of {BACKENDS}, not {kind!r}")
    if kind == "postgres":
        from ._django_postgres import DjangoPostgres, database_alias, pool_of_database, table_name

        lock_ttl = setting("FASTSESSION_LOCK_TTL", 30.0)
        return shared_backend(
            DjangoPostgres, pool_of_database(database_alias()), timeout, table_name(), path_safe, lock_ttl
        )
    url = setting("FASTSESSION_REDIS_URL", None)
    cache_alias = setting("FASTSESSION_REDIS_CACHE", None)
    if kind == "redis" and not (url or cache_alias):
        raise ValueError(
            "FASTSESSION_BACKEND = 'redis' needs the server: set FASTSESSION_REDIS_URL or FASTSESSION_REDIS_CACHE"
        )
    if kind != "files" and (url or cache_alias):
        from ._django_redis import DjangoRedis, client_for

        client = client_for(url, cache_alias, bool(setting("FASTSESSION_REDIS_CLUSTER", False)))
        prefix = setting("FASTSESSION_REDIS_PREFIX", "fastsession:")
        lock_ttl = setting("FASTSESSION_LOCK_TTL", 30.0)  # longer than the slowest view
        return shared_backend(DjangoRedis, client, timeout, prefix, path_safe, lock_ttl)
    return shared_backend(FileBackend, os.fspath(storage_path()), True, 1.0, timeout, 30.0, None, False, path_safe)


def max_lifetime() -> float | None:
    """FASTSESSION_MAX_LIFETIME: seconds from a session's creation (its login) after which it is gone."""
    value: float | None = setting("FASTSESSION_MAX_LIFETIME", None)
    if value is not None and not value > 0:
        raise ValueError(f"FASTSESSION_MAX_LIFETIME must be a positive number of seconds, not {value!r}")
    return value


def encrypting() -> Any:
    """FASTSESSION_ENCRYPT: seal session data under a key derived from the session key (fastsession.sealed);
    True, or a record.AcceptPlainUntil while records stored before it are still opened."""
    value = setting("FASTSESSION_ENCRYPT", False)
    return value if isinstance(value, record.AcceptPlainUntil) else bool(value)


def max_size() -> int | None:
    """FASTSESSION_MAX_SIZE: the bytes an encoded session may take (None: no limit)."""
    value: int | None = setting("FASTSESSION_MAX_SIZE", None)
    if value is not None:
        check_max_size(value)
    return value


def cap() -> tuple[int, str] | None:
    """FASTSESSION_MAX_SESSIONS and FASTSESSION_WHEN_FULL: bind_user's cap on a user's sessions (users.make_room)."""
    return chosen_cap(
        None,
        setting("FASTSESSION_MAX_SESSIONS", None),
        setting("FASTSESSION_WHEN_FULL", "evict"),
    )


def on_redis(storage: Any) -> bool:
    return not isinstance(storage, FileBackend)


class _Probe:
    """An object no data serializer can bring back as itself."""


def builds_objects(serializer_class: Any) -> bool:
    """Whether ``serializer_class`` (Django's SESSION_SERIALIZER) gives back an object of an arbitrary class:
    what pickle does, and what makes reading a planted record run code. Judged by what it does, not its name."""
    try:
        serializer = serializer_class()
        return isinstance(serializer.loads(serializer.dumps({"probe": _Probe()})).get("probe"), _Probe)
    except Exception:  # refuses the object (JSON): it builds no objects
        return False


def old_engine() -> Any:
    """The engine module FASTSESSION_MIGRATE_FROM names (None when unset); a pickle serializer is refused."""
    name = setting("FASTSESSION_MIGRATE_FROM", None)
    if not name:
        return None
    serializer = str(settings.SESSION_SERIALIZER)  # (Django's global settings always name one)
    if "pickle" in serializer.lower() or builds_objects(import_string(serializer)):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"FASTSESSION_MIGRATE_FROM reads sessions through SESSION_SERIALIZER, and "
            f"{serializer} rebuilds arbitrary objects (it unpickles): a record planted in the old store "
            "could run code. Migrate with a JSON serializer"
        )
    if name == "fastsession.contrib.django":
        raise ValueError("FASTSESSION_MIGRATE_FROM names the engine being replaced, not this one")
    return import_module(name)


def locking() -> str:
    value: str = setting("FASTSESSION_LOCKING", "request")
    if value not in LOCKING:
        raise ValueError(f"FASTSESSION_LOCKING must be one of {LOCKING}, not {value!r}")
    return value


def check_settings() -> None:
    """Every FASTSESSION_* setting, checked now (ValueError, TypeError): the middleware calls it when made."""
    backend()  # the storage settings: the folder, the Redis URL or cache, FASTSESSION_LOCK_TIMEOUT and _TTL
    locking()
    max_lifetime()
    max_size()
    encrypting()
    cap()
    id_header()
    check_on_conflict(setting("FASTSESSION_ON_CONFLICT", "raise"))
    read_only = setting("FASTSESSION_READ_ONLY", None)
    if read_only is not None and not callable(read_only):
        raise TypeError(f"FASTSESSION_READ_ONLY must be a function of the request, not {read_only!r}")


def id_header() -> str | None:
    """FASTSESSION_ID_HEADER ("X-Session-Id", say) and FASTSESSION_ID_COOKIE: where API clients' ids come from."""
    return check_id_header(setting("FASTSESSION_ID_HEADER", None), id_cookie())


def id_cookie() -> bool:
    chosen: bool = setting("FASTSESSION_ID_COOKIE", True)
    return chosen


def id_header_of(request: Any) -> str | None:
    """The header ``request``'s id comes in and goes back in (None: the session cookie)."""
    header = id_header()
    if header is not None and (not id_cookie() or header in request.headers):
        return header
    return None


def header_response(request: Any, response: Any, header: str) -> Any:
    """SessionMiddleware.process_response for an id carried in ``header``: the same saves, the id in that header
    when it is new or deleted, no cookie."""
    from django.contrib.sessions.exceptions import SessionInterrupted
    from django.utils.cache import patch_vary_headers

    session = request.session
    try:
        accessed, modified, empty = session.accessed, session.modified, session.is_empty()
    except AttributeError:
        return response
    incoming = request.headers.get(header, "").strip() or None
    if accessed or (incoming and empty):
        patch_vary_headers(response, (header,))
    if incoming and empty:
        response[header] = ""  # logged out (flushed): the client forgets its id
    elif (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not empty and response.status_code < 500:
        try:
            session.save()
        except UpdateError:
            raise SessionInterrupted(
                "The request's session was deleted before the request completed. The user may have logged "
                "out in a concurrent request, for example."
            ) from None
        if session.session_key != incoming:
            response[header] = session.session_key
    return response


def refused(exc: LockTimeout | SessionConflict) -> HttpResponse:
    """The 503 or 409 that answers ``exc`` (busy.refusal)."""
    status, _, body, headers = refusal(exc)
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's SessionBase on fastsession's files backend."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._backend = backend()
        self._held: tuple[Any, ...] | None = None  # (key, handle) while LockingSessionMiddleware holds it
        self._base: bytes | None = None  # the bytes load() read: what a "commit" save merges against
        self._released: tuple[Any, ...] | None = None  # (key, bytes) that release() saved
        self._migrating: Any = None  # the old engine's store whose record goes once this one is saved
        self._meta: dict[str, Any] | None = None  # the stored META (record.META): creation time, bound user
        self._indexed: tuple[Any, ...] | None = None  # (user hash, stored name) of the stored record's index entry
        self._base_plain: bytes | None = None  # what a sealed record opened to: what "commit" merges against
        self._lock_on_load = False  # LockingSessionMiddleware: lock when the request first reads it
        self._lock_loop: asyncio.AbstractEventLoop | None = None  # under ASGI: the loop that lock waits on
        self._busy: LockTimeout | None = None  # that lock was not had in time: the response is a 503
        self._cycling: str | None = None  # the old key while cycle_key runs (its events: one "regenerated")
        self._last_save = False  # the middleware's save of a response that is done: its commit ends the lock

    # -- keys -----------------------------------------------------------------

    def _get_new_session_key(self) -> str:
        kernels = self._backend.kernels
        while True:
            key = kernels.new_session_id()
            if not self.exists(key):
                return key  # type: ignore[no-any-return]

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def _handle(self, key: str, timeout: Any = ...) -> tuple[Any, ...]:
        """The held lock's handle for ``key``, or a new lock on it (``timeout``: the backend's)."""
        if self._held is not None and self._held[0] == key:
            return self._held[1]  # type: ignore[no-any-return]
        return self._backend.open(key, timeout)  # type: ignore[no-any-return]

    def _is_held(self, handle: tuple[Any, ...]) -> bool:
        return self._held is not None and self._held[1] is handle

    # -- SessionBase's storage API -------------------------------------------

    def exists(self, session_key: str | None) -> bool:
        if not path_safe(session_key):
            return False
        return self._backend.exists(self._backend.unlocked(session_key))  # type: ignore[no-any-return]

    def load(self) -> dict[str, Any]:
        key = self._session_key  # type: ignore[has-type]
        if self._lock_on_load:  # the first read of a request under LockingSessionMiddleware: its lock first
            self._lock_on_load = False
            try:
                self.lock()
            except LockTimeout as exc:
                self._busy = exc  # answered 503 by the middleware, wherever this read was made
                raise
        loaded = None
        if path_safe(key):  # a corrupt file is logged by the backend and reads as None
            held = self._held
            # On a server, taking the lock read the session too (in the same round trip): that read is used.
            handle = held[1] if held is not None and held[0] == key and on_redis(self._backend) else None
            loaded = self._backend.load(handle or self._backend.unlocked(key), want_mtime=True)
        if loaded is None:
            migrated = self._migrated(key)
            if migrated is not None:
                return migrated
            self._session_key = None  # an unknown key is never adopted, nor stored
            return {}
        data, self._base, mtime = loaded
        encrypt = encrypting()
        opened = record.opened(key, data, encrypt) if META in data or encrypt else (data, None, None)
        if opened is None:  # malformed, not sealed for this key, or plain where a seal is required: absent
            self._session_key = None
            return {}
        data, meta, self._base_plain = opened
        if self._is_expired(data, mtime, meta):
            self._delete_if_expired(key)
            self._session_key = None
            return {}
        self._meta = meta
        if self._meta is not None and "u" in self._meta:
            self._indexed = (self._meta["u"], stored_name(key))
        return data

    async def aload(self) -> dict[str, Any]:
        """load(), from an async view (``aget``...): under LockingSessionMiddleware the lock is waited for first,
        on the event loop."""
        if self._lock_on_load:
            self._lock_on_load = False
            try:
                await self.alock()
            except LockTimeout as exc:
                self._busy = exc
                raise
        return await sync_to_async(self.load)()

    def _opener(self) -> BaseStore:
        """A store on this engine's backend: the seal and the user index are the core's."""
        return BaseStore(None, self._backend, max_lifetime=max_lifetime(), encrypt=encrypting())

    def _migrated(self, key: str | None) -> dict[str, Any] | None:
        """The session the engine being replaced (FASTSESSION_MIGRATE_FROM) holds for ``key``, moved here; else None.

        Stored under the same key (unless a request of the same user stored
        it first), then deleted there. A key that may not become a path is
        given a new key at save, and the old record goes then.
        """
        old = old_engine()
        if old is None or not key:
            return None
        previous = old.SessionStore(key)
        data = previous.load()  # {} when absent, expired or unreadable
        data = storable(data) if data else None  # what JSON can hold; the rest left out and logged
        if not data:
            return None
        if not path_safe(key):
            self._session_key = None
            self.modified = True  # saved under a new key by the middleware
            self._migrating = previous
            return data
        body = encode(data)
        ttl = (self.get_expiry_age(expiry=data.get("_session_expiry")),) if on_redis(self._backend) else ()
        handle = self._handle(key)
        held = self._is_held(handle)
        try:
            loaded = self._backend.load(handle, want_mtime=True)
            if loaded is not None:  # moved meanwhile: what is stored wins
                data, body = loaded[0], loaded[1]
            elif held:
                self._backend.write(handle, body, *ttl)
            else:
                self._backend.save(handle, body, *ttl)
                handle = None  # type: ignore[assignment]
        finally:
            if handle is not None and not held:
                self._backend.release(handle)
        self._base = body
        previous.delete(key)
        return data  # type: ignore[no-any-return]

    def _delete_if_expired(self, key: str | None, name: bytes | None = None) -> None:
        """Delete the session of ``key`` (or of stored ``name``) if, read again under its lock, it is still expired.

        An unlocked read decided it looked expired; a request may have saved it
        since. By stored name (clearsessions) a session in use is passed over at
        once: in use is not expired. By key (a read), its lock is waited for as
        long as FASTSESSION_LOCK_TIMEOUT says, then the session is left for later.
        """
        try:
            handle = self._backend.open_stored(name, 0) if name is not None else self._handle(key)  # type: ignore[arg-type]
        except LockTimeout:
            return
        held = self._is_held(handle)
        try:
            loaded = self._backend.load(handle, want_mtime=True)
            if loaded is not None and self._is_expired(loaded[0], loaded[2]):
                self._backend.remove(handle)
                if events.handlers:
                    meta = loaded[0].get(META)
                    lifetime = record.valid_meta(meta) and outlived(meta.get("c"), max_lifetime())
                    gone = name.decode("ascii") if name is not None else stored_name(key)  # type: ignore[arg-type]
                    user = record.bound_to(loaded[0])
                    events.emit("expired", gone, user, None, "lifetime" if lifetime else "idle")
        finally:
            if not held:
                self._backend.release(handle)

    def _expiry_date(self, data: dict[str, Any], mtime: float) -> Any:
        modified = datetime.datetime.fromtimestamp(mtime, tz=datetime.timezone.utc if settings.USE_TZ else None)
        expiry = data.get("_session_expiry")
        # 0 (set_expiry(0): expire at browser close) and None mean "server-side
        # age SESSION_COOKIE_AGE", as in Django's own backends; another int is
        # seconds from the last save, as in Django's db and cache backends.
        if isinstance(expiry, int) and expiry:
            return modified + datetime.timedelta(seconds=expiry)
        return expiry or modified + datetime.timedelta(seconds=self.get_session_cookie_age())

    def _is_expired(self, data: dict[str, Any], mtime: float, meta: Any = None) -> bool:
        """Past its expiry, or (FASTSESSION_MAX_LIFETIME) older than its absolute lifetime.

        ``meta``: the opened record's META; by default what ``data`` (a record as read) holds.
        """
        meta = data.get(META) if meta is None else meta
        if record.valid_meta(meta) and outlived(meta.get("c"), max_lifetime()):
            return True
        if not data.get("_session_expiry") and type(self).get_expiry_age is SessionBase.get_expiry_age:
            # SESSION_COOKIE_AGE from the last save, as SessionBase.get_expiry_age counts it (whole seconds
            # left, rounded down; expired at none) without its datetimes: most of a load's own cost.
            return time.time() - mtime > self.get_session_cookie_age() - 1  # type: ignore[no-any-return]
        return self.get_expiry_age(expiry=self._expiry_date(data, mtime)) <= 0  # type: ignore[no-any-return]

    def _encoded(self, data: dict[str, Any]) -> bytes:
        """``data``'s bytes with the session's META (its creation time, once max_lifetime needs it)."""
        if max_lifetime() is not None:  # a new session, or the first save since the setting was made: now
            self._meta = created_meta(self._meta)
        return encode(data, write_limit(max_size(), self._backend), self._meta)

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()  # type: ignore[assignment]
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            if events.handlers:
                previous = stored_name(self._cycling) if self._cycling else None
                user = self._meta.get("u") if self._meta else None
                name = stored_name(self.session_key)
                events.emit("regenerated" if previous else "created", name, user, previous)
            if self._migrating is not None:  # stored here under a new key: the old record may go
                previous, self._migrating = self._migrating, None
                previous.delete()
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)
        body = self._encoded(data)  # too large: SessionTooLarge, nothing written or locked
        key = self.session_key
        if self._released is not None and self._released == (key, body):
            return  # saved by release() already
        if not path_safe(key):
            raise UpdateError  # a key Django accepts but no file may be named after
        handle = self._handle(key)
        held = self._is_held(handle)
        target = (self._meta["u"], stored_name(key)) if self._meta and "u" in self._meta else None
        try:
            # A save made without the lock held (locking="commit", or after release() let it go) merges
            # with what other requests stored meanwhile: never written over them.
            if not held and not must_create and (locking() == "commit" or self._released is not None):
                data, body = self._merged(handle, data, body)
            elif held and not must_create and on_redis(self._backend):
                pass  # a server's lease held since the read: only a revocation removes it, which the write tells
            else:
                exists = self._backend.exists(handle)
                if must_create and exists:
                    raise CreateError
                if not must_create and not exists:
                    raise UpdateError  # deleted meanwhile (logged out elsewhere): never resurrect
            if target is not None and target != self._indexed:  # listed before the commit lands (users.py)
                self._backend.index_add(target[0], target[1], entry(self._meta))  # type: ignore[arg-type]
        except BaseException:
            if not held:
                self._backend.release(handle)
            raise
        ttl = (self.get_expiry_age(),) if on_redis(self._backend) else ()  # Redis expires it; files keep an mtime
        plain = body
        if encrypting():  # sealed under a key derived from this key: only its cookie opens it
            body = self._opener()._sealed(key, data, self._meta)
        try:
            if held and not self._last_save:
                self._backend.write(handle, body, *ttl)  # the lock stays until the request ends
            else:
                self._backend.save(handle, body, *ttl)  # commit and release in one step (files: one rename)
                if held:
                    self._held = None
        except SessionRevoked:  # "log out everywhere" while this request ran: Django's own answer for it
            raise UpdateError from None
        self._base, self._base_plain = body, (plain if body is not plain else None)  # what a later save merges against
        if self._indexed is not None and self._indexed != target:
            self._backend.index_remove(*self._indexed)  # unbound, or a new key (cycle_key at login)
        self._indexed = target

    # -- the per-user index (fastsession.users) ---------------------------------------------

    def bind_user(self, user_id: str | None, *, max_sessions: Any = ..., when_full: Any = ..., **metadata: Any) -> None:
        """Bind this session to ``user_id`` (None unbinds); listed by sessions_of once saved.

        Done on login and logout by this module's signal receivers. The cap
        (FASTSESSION_MAX_SESSIONS, or the arguments) is kept now: the user's
        least recently used sessions go, or TooManySessions and nothing is bound.
        """
        self._get_session()  # loaded first: binding is part of what is stored
        meta = bound(self._meta, user_id, metadata)
        limit = chosen_cap(cap(), max_sessions, when_full)
        if limit is not None and user_id is not None:
            if self.session_key is None:
                self.create()  # a key to count this session under
            opener = self._opener()
            opener._run(make_room(opener, user_id, stored_name(self.session_key), entry(meta), *limit))  # type: ignore[arg-type]
        self._meta = meta
        self.modified = True

    def sessions_of(self, user_id: str) -> list[Any]:
        """The user's sessions (fastsession.users.UserSession): stored name, created, last seen, metadata."""
        return self._opener().sessions_of(user_id)

    def revoke(self, entry: UserSession) -> bool:
        """Delete the session ``entry`` names (this request's own: flushed)."""
        if self.session_key is not None and entry.session == stored_name(self.session_key):
            self.flush()
            return True
        return self._opener().revoke(entry)

    def revoke_all(self, user_id: str, keep: Any = None) -> int:
        """Delete the user's sessions but ``keep`` (a session key or UserSession); how many went.

        ``keep=request.session.session_key``: "log out my other devices". This
        request's own session, unless kept, is flushed (never waited for).
        """
        self._get_session()  # loaded: whether this session is the user's is in what it read
        own = self.session_key
        kept = keep.session if isinstance(keep, UserSession) else stored_name(keep) if keep else None
        own_name = stored_name(own) if own else None
        count = self._opener().revoke_all(user_id, keep=[own, keep])  # not its own lock: never waited for
        if own_name is not None and kept != own_name and self._meta and self._meta.get("u") == user_hash(user_id):
            self.flush()
            count += 1
        return count

    def _merged(self, handle: tuple[Any, ...], data: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """Under the lock: (``data``, ``body``), or the merge of this request's changes into what is stored now
        (and its bytes)."""
        loaded = self._backend.load(handle)
        if loaded is None:
            raise UpdateError  # deleted meanwhile (logged out elsewhere): never resurrect
        if loaded[1] == self._base:
            return data, body
        on_conflict = check_on_conflict(setting("FASTSESSION_ON_CONFLICT", "raise"))
        base = {} if self._base is None else orjson.loads(self._base_plain or self._base)
        base_meta = base.pop(META, None)
        theirs_opened = record.opened(self.session_key, loaded[0], encrypting())
        if theirs_opened is None:
            raise UpdateError  # what is stored now does not open: never overwritten unread
        theirs, their_meta, _ = theirs_opened
        if self._meta == base_meta:
            self._meta = their_meta
        merged = merge(base, data, theirs, on_conflict)
        return merged, self._encoded(merged)

    def release(self) -> None:
        """Save now (if changed) and release the lock: the view carries on without holding the session."""
        if self.modified and not self.is_empty():
            self.save()
            self._released = (self.session_key, self._encoded(self._get_session()))
        held, self._held = self._held, None
        if held is not None:
            self._backend.release(held[1])

    def cycle_key(self) -> None:
        """Django's cycle_key (a new key for the same data, at login), told to event handlers as "regenerated"."""
        self._cycling = self.session_key
        try:
            super().cycle_key()
        finally:
            self._cycling = None

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
            self._meta = None  # flush(): the next key is a new session, with a new creation time
        if not path_safe(session_key):
            return
        handle = self._handle(session_key)
        held = self._is_held(handle)
        told = events.handlers and session_key != self._cycling  # (cycle_key's old key: told as "regenerated")
        try:
            loaded = self._backend.load(handle) if told else None  # whether there was one, and whose
        except BaseException:
            if not held:
                self._backend.release(handle)
            raise
        if held:
            self._backend.remove(handle)
        else:
            self._backend.delete(handle)
        if loaded is not None:
            events.emit("deleted", stored_name(session_key), record.bound_to(loaded[0]), None, "logout")

    @classmethod
    def clear_expired(cls) -> None:
        store = cls()
        files = store._backend
        if on_redis(files):
            files.clear_expired()  # every session has its expiry: Redis removes them, PostgreSQL's gc here
            return
        for name in files.names():  # stored names: the keys themselves are never on disk
            loaded = files.load(files.unlocked_stored(name), want_mtime=True)
            if loaded is not None and store._is_expired(loaded[0], loaded[2]):
                store._delete_if_expired(None, name=name)

    # -- holding the lock for a whole request ---------------------------------

    def lock(self) -> None:
        """Hold this session's lock until unlock() (LockingSessionMiddleware does both)."""
        key = self._session_key
        if self._held is None and path_safe(key):
            if self._lock_loop is not None:  # an async view's first read: the wait is on the loop (_portal)
                _portal.wait(self._lock_loop, self.alock)
                return
            self._held = (key, self._backend.open(key))

    async def alock(self) -> None:
        """lock(), waiting on the event loop: no thread sits waiting for another request's lock."""
        key = self._session_key
        if self._held is None and path_safe(key):
            if on_redis(self._backend):
                self._held = (key, await self._backend.aopen(key))
            else:
                self._held = (key, await async_files(self._backend).open(key))  # type: ignore[arg-type]

    def unlock(self) -> None:
        if self._held is not None:
            held, self._held = self._held[1], None
            self._backend.release(held)

    async def aunlock(self) -> None:
        """unlock(), from the event loop: a request of this process waiting for the lock is woken at once."""
        if self._held is not None:
            held, self._held = self._held[1], None
            if on_redis(self._backend):
                await self._backend.arelease(held)
                return
            io = async_files(self._backend)
            if io.now((RELEASE, held)) is PENDING:
                await io.call((RELEASE, held))


class LockingSessionMiddleware(SessionMiddleware):  # type: ignore[misc]
    """Django's SessionMiddleware, holding the session's lock for the whole request.

    Overlapping requests of one user then run one after the other, so none
    loses the other's update. The lock is released once the response is
    saved, and whatever else happens: when the view raised, when the request
    was cancelled (a client that disconnects under ASGI), when a view
    replaced ``request.session``. A streaming response keeps it until it is
    closed (or, failing that, garbage-collected).
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        check_settings()  # at start-up, not at the first request

    def process_request(self, request: Any) -> Any:
        self._start(request)
        if self._locks(request):
            request.session._lock_on_load = True  # taken when the request first reads its session, if it does
        return None

    def process_exception(self, request: Any, exception: Exception) -> Any:
        if isinstance(exception, LockTimeout):  # the view's first read of the session waited out its time
            return refused(exception)
        return None

    @staticmethod
    def _locks(request: Any) -> bool:
        """Whether this request holds its session's lock while the view runs."""
        read_only = setting("FASTSESSION_READ_ONLY", None)
        return locking() == "request" and not (read_only is not None and read_only(request))

    def _start(self, request: Any) -> None:
        header = id_header_of(request)
        if header is None:
            super().process_request(request)
        else:  # an API client: its id comes in the header (fastsession.header_id)
            request.session = self.SessionStore(request.headers.get(header, "").strip() or None)
        request._fastsession_id_header = header
        request._fastsession_locked = request.session  # the object to unlock, whatever replaces it

    def process_response(self, request: Any, response: Any) -> Any:
        locked = getattr(request, "_fastsession_locked", None)
        busy = getattr(locked, "_busy", None)
        if busy is not None:  # read first by other middleware or a template: its 500 becomes the 503
            return response if response.status_code == 503 else refused(busy)
        if locked is not None and not getattr(response, "streaming", False):
            locked._last_save = True  # nothing reads the session after this save: it may release the lock
        try:
            header = getattr(request, "_fastsession_id_header", None)
            if header is not None:
                return header_response(request, response, header)
            return super().process_response(request, response)
        except (SessionConflict, LockTimeout) as exc:  # a "commit" save not stored: said so, never a 200
            return refused(exc)
        finally:
            locked = getattr(request, "_fastsession_locked", None)
            if locked is not None and getattr(response, "streaming", False):
                request._fastsession_locked = None  # released when the stream is closed, not now
                response._resource_closers.append(locked.unlock)  # closed by the server
                weakref.finalize(response, locked.unlock)  # a stream the server dropped unclosed

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        try:
            return super().__call__(request)
        finally:
            release(request)

    async def __acall__(self, request: Any) -> Any:
        # The lock is waited for on the event loop, never in a thread: a
        # waiting request holds no thread (and, where one thread-sensitive
        # executor is shared by requests, stalls no other sync code), and a
        # cancelled one has taken nothing. An async view's request takes it
        # on the first read, if any (_portal); a sync view's before the view
        # runs, since that view's first read would be in the shared thread.
        self._start(request)  # no I/O: the session loads lazily
        try:
            if not self._locks(request):
                response = await self.get_response(request)
            elif _view_is_async(request):
                loop = request.session._lock_loop = asyncio.get_running_loop()
                request.session._lock_on_load = True
                response = await _portal.drive(self.get_response(request), loop)
            else:
                try:
                    await request.session.alock()
                except LockTimeout as exc:
                    return refused(exc)
                response = await self.get_response(request)
            return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
        finally:
            locked = getattr(request, "_fastsession_locked", None)
            if locked is not None:  # nothing left after process_response; everything after a cancellation
                request._fastsession_locked = None
                await locked.aunlock()


def _view_is_async(request: Any) -> bool:
    """Whether the request goes to an async view (a path no view answers counts as sync)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


class _EventSignal(Signal):  # type: ignore[misc]
    """A Signal that has fastsession's events forwarded to it once a receiver connects (none: no cost)."""

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        events.subscribe(_send_session_event)
        return super().connect(*args, **kwargs)

    def disconnect(self, *args: Any, **kwargs: Any) -> Any:
        done = super().disconnect(*args, **kwargs)
        if not self.has_listeners():
            events.unsubscribe(_send_session_event)
        return done


# fastsession.events as a Django signal: receivers get ``event`` (a fastsession.events.SessionEvent).
session_event = _EventSignal()


def _send_session_event(event: Any) -> None:
    session_event.send(sender=SessionStore, event=event)


def bind_on_login(sender: Any, request: Any, user: Any, **extra: Any) -> None:
    """django.contrib.auth's user_logged_in: bind the session to the user (and the browser's user agent).

    Refused by the cap (FASTSESSION_WHEN_FULL = "refuse"): the login is
    undone (django.contrib.auth.logout) and TooManySessions raised from
    ``login()``, for the view to catch and show.
    """
    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        try:
            session.bind_user(str(user.pk), user_agent=request.META.get("HTTP_USER_AGENT", "")[:200])
        except TooManySessions:
            from django.contrib.auth import logout

            logout(request)
            raise


def unbind_on_logout(sender: Any, request: Any, user: Any, **extra: Any) -> None:
    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        session.bind_user(None)


def _connect_auth_signals() -> None:
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    user_logged_in.connect(bind_on_login, dispatch_uid="fastsession.bind_on_login")
    user_logged_out.connect(unbind_on_logout, dispatch_uid="fastsession.unbind_on_logout")


_connect_auth_signals()


def release(request: Any) -> None:
    """Unlock the session the middleware locked for ``request``, if it still holds it."""
    locked = getattr(request, "_fastsession_locked", None)
    if locked is not None:
        request._fastsession_locked = None
        locked.unlock()
