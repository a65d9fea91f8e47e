"""ASGI: ``SessionMiddleware``, a drop-in for Starlette's, with the data on the server and a lock per user.

Starlette and FastAPI::

    from fastsession.asgi import SessionMiddleware
    app.add_middleware(SessionMiddleware, session_directory="/var/lib/app/sessions")

``request.session`` works unchanged (``scope["session"]``); the request's
store is ``scope["fastsession.store"]`` (``await ...regenerate_id()`` after a
login, ``await ...expire_session()``). A user's session is read and locked
on first use (a plain ``request.session[...]``: the app runs in a greenlet
whose first read waits on the loop, see ``_portal``) until the end of its
response, so overlapping requests of one user never lose an update and a
request that never touches it takes no lock; it is committed just before
the response's last body chunk goes out, so a client that has the whole response has its
session stored. A response of one body chunk (Starlette's ``Response``) is
committed before its status goes out: a ``locking="commit"`` change that
met another's is answered 409 instead (a lock not had in time, 503). A
streamed response's status is out before its commit: a conflict then ends
the response with an error (use ``locking="request"`` there). The app raising, its task being cancelled, or the client
disconnecting (``http.disconnect`` seen by the app) roll it back: nothing
written, the lock released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable

from ._portal import drive, wait
from .aio import AsyncSessionStore
from .busy import ADAPTER_TIMEOUT, refusal
from .errors import LockTimeout, SessionConflict, SessionError
from .factory import StoreFactory
from .files import private_folder
from .header_id import check_id_header
from .session import CLOSED, ClosedSession, TrackedSession
from .wsgi import DELETED, Cookie, parse_cookie_header, vary_with, vary_with_cookie

__all__ = ["ASGISession", "ASGITransaction", "SessionMiddleware", "load_session"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def refusal_messages(exc: SessionConflict | LockTimeout) -> tuple[Message, Message]:
    """The (start, body) messages of the 409 or 503 that answer ``exc`` (busy.refusal)."""
    status, _, body, headers = refusal(exc)
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    start = {"type": "http.response.start", "status": status, "headers": encoded}
    return start, {"type": "http.response.body", "body": body}


def varying_by_cookie(headers: Any, also: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """ASGI response headers with ``Cookie`` (and header ``also``) in their Vary header (added when there is
    none)."""

    out = []
    varied = False
    for key, value in headers:
        if key.lower() == b"vary":
            varied = True
            text = vary_with_cookie(value.decode("latin-1"))
            value = (text if also is None else vary_with(text, also.decode("latin-1"))).encode("latin-1")
        out.append((key, value))
    if not varied:
        out.append((b"vary", b"Cookie" if also is None else b"Cookie, " + also))
    return out


class ASGISession(TrackedSession):
    """``scope["session"]``: a Session that notes reads (for ``Vary: Cookie``), read from the store on first use.

    ``refused``: the exception its first read raised (a lock not had in
    time): the request then stores nothing, and is answered 503 if nothing
    went out yet.
    """

    refused: BaseException | None = None


def _fill(session: ASGISession, stored: Any) -> None:
    if stored is not None:
        dict.update(session, stored)
        session.session_id = stored.session_id


def _open_on_first_use(session: ASGISession, store: Any, loop: asyncio.AbstractEventLoop) -> None:
    """``session.pending``'s opener: the stored session (locked), read where the first use was (_portal)."""
    if store.closed:
        session.defer(_open_on_first_use, store, loop)  # (still unread: a later use says so again)
        raise SessionError("this session's store is closed (the response went out): it can no longer be read")
    try:
        _fill(session, wait(loop, store.get_session, False))
    except BaseException as exc:
        session.refused = exc
        raise


async def load_session(request: Any) -> None:
    """Read the request's session now (a Starlette ``Request``, or its ASGI scope), from any task.

    The middleware reads it on first use; a first use in a task it does not
    run (an app behind a ``BaseHTTPMiddleware``, a task the app spawned)
    cannot wait for the lock without an ``await``: await this first there.
    """
    session = getattr(request, "scope", request)["session"]
    pending = session.undefer()
    if pending is not None:
        try:
            _fill(session, await pending[1].get_session(False))
        except BaseException as exc:
            session.refused = exc
            raise


class ASGITransaction:
    """WebStack's transaction protocol for an ASGI scope; collects the Set-Cookie header values.

    ``id_header`` (fastsession.header_id): a request that carries it, or
    every request when ``id_cookie`` is False, has its id read from and sent
    back in that header instead of the cookie.
    """

    __slots__ = ("_incoming", "attributes", "id_header", "outgoing", "scope")

    def __init__(
        self, scope: Scope, attributes: tuple[str, str], id_header: str | None = None, id_cookie: bool = True
    ) -> None:
        self.scope = scope
        self.attributes = attributes  # (to set a cookie, to delete it): "; path=/; httponly; ..."
        self.outgoing: dict[str, bytes] = {}  # cookie name -> Set-Cookie value (or the id header's value)
        self._incoming: dict[str, str] | None = None
        # The header that carries this request's id, as ASGI spells header names (None: the cookie does).
        wanted = id_header.lower().encode("latin-1") if id_header else None
        self.id_header = wanted if wanted and (not id_cookie or self._header(wanted) is not None) else None

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def get_cookie(self, name: str) -> Cookie | None:
        if self.id_header is not None:
            carried = (self._header(self.id_header) or "").strip()
            return Cookie(name, carried) if carried else None
        incoming = self._incoming
        if incoming is None:
            lines = [value for key, value in self.scope["headers"] if key == b"cookie"]
            header = lines[0] if len(lines) == 1 else b"; ".join(lines)  # (HTTP/2 may split it in several)
            incoming = self._incoming = parse_cookie_header(header.decode("latin-1"))
        value = incoming.get(name)
        return None if value is None else Cookie(name, value)

    def set_cookie_value(self, name: str, value: str) -> None:
        text = value if self.id_header is not None else f"{name}={value}{self.attributes[0]}"
        self.outgoing[name] = text.encode("latin-1")

    def delete_cookie(self, name: str) -> None:
        self.outgoing[name] = b"" if self.id_header is not None else f"{name}={self.attributes[1]}".encode("latin-1")

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """What ``outgoing`` holds, as response headers: Set-Cookie, or the id header."""
        name = self.id_header if self.id_header is not None else b"set-cookie"
        return [(name, value) for value in self.outgoing.values()]


async def adopt(store: Any, session: ASGISession) -> None:
    """Hand ``scope["session"]``'s state to the store: a new one filled gets an id, one emptied is expired."""
    if session.pending is not None:  # never used: nothing to hand over
        return
    if session.session_id is None:
        if dict.__len__(session):  # new, and the app stored something: it gets an id now
            stored = await store.get_session(True)
            dict.update(stored, dict.items(session))  # (dict's own: no read of the session is noted)
            session.session_id = stored.session_id
    elif not dict.__len__(session):
        await store.expire_session()  # emptied: the record and the cookie go


def hand_over(store: Any, session: ASGISession) -> None:
    """What the app's session holds now, into the store's session (the one read on first use, or adopted)."""
    stored = store._session
    if session.pending is None and stored is not None and stored is not session:
        dict.clear(stored)
        dict.update(stored, dict.items(session))  # (dict's own: no read of the session is noted)


def shut(session: ASGISession) -> None:
    """The store is closed: a change to the app's session now raises, as it would to the store's."""
    if session.pending is None and not isinstance(session, ClosedSession):
        session.__class__ = CLOSED[type(session)]


class EarlyClose:
    """A store whose ``close()`` the app may call early: ``scope["session"]`` is stored as it is then."""

    closed: bool  # the store's own (a mixin of it)
    trans: Any

    async def close(self) -> None:
        if self.closed:
            return
        session = self.trans.scope["session"]
        await adopt(self, session)
        hand_over(self, session)
        try:
            await super().close()  # type: ignore[misc]
        finally:
            shut(session)


class SessionMiddleware:
    """Starlette's ``SessionMiddleware`` keywords, fastsession's store underneath.

    ``session_directory`` (files), ``redis`` (a ``redis.asyncio`` client) or
    ``postgres`` (a DSN, or a psycopg AsyncConnectionPool) says where sessions live; with neither, a private folder of this user's
    in the temp directory (``fastsession-asgi-<uid>``, 0700), so that
    ``add_middleware(SessionMiddleware, secret_key=...)`` runs unchanged.
    ``secret_key`` is accepted and not used: the cookie holds only a random
    id, there is nothing to sign (keep it or remove it). ``max_age`` is the
    cookie's lifetime and the session's idle lifetime on the server (None: a
    browser-session cookie, and no server-side expiry; 0 or less: a cookie
    that expires at once, and nothing stored). As in Starlette 1.x,
    Set-Cookie goes out when the session was changed (or made, or emptied),
    not when it was only read; ``refresh_each_request=True`` renews it on
    every read too (a sliding expiry in the browser, as on the server).
    ``partitioned`` adds the Partitioned attribute (Starlette 1.7's).
    Other keywords go to the store: ``timeout``, ``stale_after``, ``fsync``,
    ``concurrent``, ``delay`` (files); ``lock_ttl``, ``prefix``, ``timeout``
    (Redis); ``lock_ttl``, ``table``, ``timeout`` (PostgreSQL); ``locking``, ``on_conflict``, ``max_size``, ``max_lifetime``,
    ``encrypt`` (both). Every option is checked here, not at the first
    request. ``timeout`` defaults to 10 s: a request whose session stays
    locked that long is answered 503 with Retry-After. The session is read
    (and locked) on first use; an app behind a ``BaseHTTPMiddleware`` (in a
    task of its own) awaits ``load_session(request)`` first.
    ``read_only(scope)``, when given and true, makes that request read it
    without a lock. The app may
    ``await scope["fastsession.store"].close()`` to store the session and
    release the lock early. It runs on asyncio; another event loop (trio) is
    refused at the first call (lifespan, or the first request) with a clear
    error. ``id_header`` ("X-Session-Id", say): a request carrying that
    header gets its id from it and back in it, no cookie; ``id_cookie=False``
    makes the header the only way (fastsession.header_id).
    """

    def __init__(
        self,
        app: ASGIApp,
        /,  # (positional: what Starlette's add_middleware types as a middleware factory)
        session_directory: str | None = None,
        *,
        redis: Any = None,
        postgres: Any = None,
        secret_key: Any = None,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        refresh_each_request: bool = False,
        read_only: Callable[[Scope], bool] | None = None,
        id_header: str | None = None,
        id_cookie: bool = True,
        **options: Any,
    ) -> None:
        if sum(where is not None for where in (session_directory, redis, postgres)) > 1:
            raise TypeError("SessionMiddleware takes one of session_directory=, redis= and postgres=")
        if str(same_site).lower() not in ("lax", "strict", "none"):
            raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {same_site!r}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
            raise TypeError(f"max_age must be a whole number of seconds or None, not {max_age!r}")
        self.app = app
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.stores_nothing = max_age is not None and max_age <= 0  # Starlette's "expired at once"
        self.refresh_each_request = refresh_each_request
        self.id_header, self.id_cookie = check_id_header(id_header, id_cookie), id_cookie
        if redis is not None:
            from .aio_redis import AsyncRedisSessionStore

            store_class: type = AsyncRedisSessionStore
            self.where: Any = redis
        elif postgres is not None:
            from .aio_postgres import AsyncPostgresSessionStore, dsn_pools

            store_class = AsyncPostgresSessionStore
            self.where = dsn_pools(postgres) if isinstance(postgres, str) else postgres
        else:
            store_class = AsyncSessionStore
            self.where = (
                session_directory
                if session_directory is not None
                else private_folder(
                    "fastsession-asgi",
                    "the ASGI middleware's default session folder (set session_directory= to choose one)",
                )
            )
        # The store's own Session holds what is stored; the app sees scope["session"], copied in and out.
        self.store_class = type(f"ASGI{store_class.__name__}", (EarlyClose, store_class), {})
        self.read_only = read_only
        server_age = None if max_age is None or self.stores_nothing else max_age
        self.options = dict({"timeout": ADAPTER_TIMEOUT}, **options, max_age=server_age)
        self.peek_options = dict(self.options, concurrent=0)  # websockets read, never lock
        flags = f"; httponly; samesite={same_site}" + ("; secure" if https_only else "")
        flags += f"; domain={domain}" if domain is not None else ""
        flags += "; partitioned" if partitioned else ""
        lifetime = f"; Max-Age={max_age}" if max_age is not None else ""
        self.attributes = (f"; path={path}{lifetime}{flags}", f"; path={path}; {DELETED}{flags}")
        # Every option is checked now: a store is made with them (and dropped: it took nothing).
        self.store_class(ASGITransaction({"headers": []}, self.attributes), self.where, session_cookie, **self.options)
        self.make = StoreFactory(self.store_class, self.where, session_cookie, **self.options).make
        self.make_peeking = StoreFactory(self.store_class, self.where, session_cookie, **self.peek_options).make

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "fastsession.asgi.SessionMiddleware runs on asyncio, and this app runs on another event loop "
                "(trio?): serve it with asyncio (uvicorn, hypercorn's asyncio worker, anyio's asyncio backend)"
            ) from None
        kind = scope["type"]
        if kind == "http":
            await (self._http_storing_nothing if self.stores_nothing else self._http)(scope, receive, send, loop)
        elif kind == "websocket":
            await self._websocket(scope, receive, send, loop)
        else:  # lifespan, and whatever comes next
            await self.app(scope, receive, send)

    def _open(
        self, scope: Scope, make: Callable[[Any], Any], loop: asyncio.AbstractEventLoop
    ) -> tuple[Any, ASGITransaction, ASGISession]:
        """The request's store (made by ``make``) and session; a stored session is read (and locked) on first
        use, if ever."""
        trans = ASGITransaction(scope, self.attributes, self.id_header, self.id_cookie)
        store = make(trans)
        if self.read_only is not None and self.read_only(scope):
            store.read_only()
        session = ASGISession(None)  # gets an id, a lock and a cookie only if something is stored
        if trans.get_cookie(self.session_cookie) is not None:
            session.defer(_open_on_first_use, store, loop)
        scope["fastsession.store"] = store
        scope["session"] = session
        return store, trans, session

    async def _http_storing_nothing(self, scope: Scope, receive: Receive, send: Send, loop: Any) -> None:
        """``max_age`` 0 or less: every session is new and empty; one filled gets a cookie already expired."""
        session = scope["session"] = ASGISession(None)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.accessed:
                headers = varying_by_cookie(message.get("headers", ()))
                if dict.__len__(session):
                    headers.append((b"set-cookie", f"{self.session_cookie}={self.attributes[0]}".encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _http(self, scope: Scope, receive: Receive, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        store, trans, session = self._open(scope, self.make, loop)
        disconnected = False

        async def receive_noting_disconnect() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        start: Message | None = None  # the app's response start, held until the commit is decided
        sent = False  # whether anything went out

        async def send_committing(message: Message) -> None:
            nonlocal start, sent
            kind = message["type"]
            if kind == "http.response.start":
                message["headers"] = await self._headers(store, trans, session, message.get("headers", ()))
                start = message  # sent with the first body chunk: a one-chunk response is committed first
                return
            if kind == "http.response.body" and not message.get("more_body", False):
                # Stored before the client has it all; for a one-chunk response, before the status goes
                # out, so a change that cannot be stored is a 409 (or 503), never a 200.
                refused = await self._finish(store, session, disconnected, start is not None)
                if refused is not None:
                    start, message = refused
            sent = True
            if start is not None:  # whatever comes first after it (a body chunk, a pathsend, ...)
                await send(start)
                start = None
            await send(message)

        try:
            app = self.app(scope, receive_noting_disconnect, send_committing)
            # A session to read on first use: the app runs where that read can wait for the lock (_portal).
            await (app if session.pending is None else drive(app, loop))
        except BaseException as exc:
            await store.rollback()
            if exc is session.refused and isinstance(exc, LockTimeout) and not sent:
                for message in refusal_messages(exc):  # the first read waited out its time: 503
                    await send(message)
                return
            raise
        refused = await self._finish(store, session, disconnected, start is not None)
        if start is not None:  # the app ended without a body
            await send(start if refused is None else refused[0])
            await send(refused[1] if refused is not None else {"type": "http.response.body", "body": b""})

    async def _headers(
        self, store: Any, trans: ASGITransaction, session: ASGISession, headers: Any
    ) -> list[tuple[bytes, bytes]]:
        """The response's headers with the session's Set-Cookie and Vary."""
        if not store.closed:
            await adopt(store, session)
        cookie = await store.response_cookie()
        name = self.session_cookie
        if (
            cookie is None
            and dict.__len__(session)
            and (session.modified or (self.refresh_each_request and session.accessed))
        ):
            cookie = session.session_id  # changed (Starlette 1.x), or read with refresh_each_request
        if cookie == "":
            trans.delete_cookie(name)
        elif cookie is not None:
            trans.set_cookie_value(name, cookie)
        if not (trans.outgoing or session.accessed):
            return list(headers)
        out = varying_by_cookie(headers, self.id_header.encode("latin-1") if self.id_header else None)
        out.extend(trans.response_headers())
        return out

    @staticmethod
    async def _finish(
        store: Any, session: ASGISession, disconnected: bool, may_refuse: bool = False
    ) -> tuple[Message, Message] | None:
        """Commit (or, for a client gone, roll back) once; later changes to a new session are noted.

        ``may_refuse``: nothing went out yet; a change that cannot be stored
        (SessionConflict: 409, LockTimeout: 503) gives the (start, body)
        messages that answer so instead of raising.
        """
        if store.closed:
            return None
        if session.refused is not None or disconnected:  # a first read that failed; a client gone
            await store.rollback()
            shut(session)
            return None
        new = session.pending is None and store._session is None and session.session_id is None
        if new and dict.__len__(session):
            logger.warning(
                "a new session was filled after the response headers went out; "
                "it could get no cookie and was not stored"
            )
            await store.rollback()  # (stored, it would be a record no cookie ever names)
            shut(session)
            return None
        try:
            await store.close()  # (EarlyClose: the app's session handed over first, and closed with the store)
        except (SessionConflict, LockTimeout) as exc:
            if not may_refuse:
                raise
            return refusal_messages(exc)
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        # A websocket lives for minutes: it reads the session and never locks or writes it.
        store, _, _ = self._open(scope, self.make_peeking, loop)
        try:
            await load_session(scope)
            await self.app(scope, receive, send)
        finally:
            await store.rollback()
