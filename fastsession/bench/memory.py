"""Each framework's own session layer over a dict in this process: the floor a session store is judged against.

No I/O, no lock, no serialization: what a request costs with sessions when
storing one is a dict assignment. Each keeps the framework's own protocol
(Flask's ``SessionInterface``, Django's ``SessionMiddleware`` and
``SessionBase``, an ASGI middleware shaped like Starlette's) and its rules:
a session is saved, and its cookie set, only when it changed.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

# Every layer's sessions: id -> data (a copy, as a store would hand back).
SESSIONS: dict[str, dict[str, Any]] = {}
TTL_MS = 3_600_000


class PlainRedis:
    """The same layers' sessions on Redis: one plain GET to read, one SET (with a TTL) to store, no lock.

    The Redis floor of the whole-request tables: what any Redis-backed session costs at the least.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def get(self, session_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.prefix + session_id)
        return None if raw is None else orjson.loads(raw)

    def __setitem__(self, session_id: str, data: dict[str, Any]) -> None:
        self.client.set(self.prefix + session_id, orjson.dumps(data), px=TTL_MS)


def flask_interface(sessions: Any = SESSIONS) -> Any:
    """A Flask ``SessionInterface`` over ``sessions``: SESSIONS, or a PlainRedis."""
    from flask.sessions import SessionInterface, SessionMixin
    from werkzeug.datastructures import CallbackDict

    class MemorySession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
        def __init__(self, session_id: str, data: dict[str, Any]) -> None:
            def changed(_: Any) -> None:
                self.modified = True

            CallbackDict.__init__(self, data, changed)
            self.session_id, self.modified = session_id, False

    class MemoryInterface(SessionInterface):
        def open_session(self, app: Any, request: Any) -> MemorySession:
            session_id = request.cookies.get(self.get_cookie_name(app))
            data = sessions.get(session_id) if session_id else None
            if data is None:
                return MemorySession(secrets.token_urlsafe(32), {})
            return MemorySession(session_id, dict(data))

        def save_session(self, app: Any, session: Any, response: Any) -> None:
            if session.modified:
                sessions[session.session_id] = dict(session)
                response.set_cookie(
                    self.get_cookie_name(app),
                    session.session_id,
                    httponly=True,
                    path=self.get_cookie_path(app),
                    samesite=self.get_cookie_samesite(app),
                )

    return MemoryInterface()


def django_engine() -> Any:
    """A Django session engine class (a ``SessionBase``) over SESSIONS; ``SESSION_ENGINE`` names this module."""
    from django.contrib.sessions.backends.base import CreateError, SessionBase

    class SessionStore(SessionBase):  # type: ignore[misc]
        def load(self) -> dict[str, Any]:
            data = SESSIONS.get(self.session_key) if self.session_key else None
            if data is None:
                self._session_key = None
                return {}
            return dict(data)

        def exists(self, session_key: str) -> bool:
            return session_key in SESSIONS

        def create(self) -> None:
            while True:
                self._session_key = self._get_new_session_key()
                try:
                    self.save(must_create=True)
                except CreateError:
                    continue
                self.modified = True
                return

        def save(self, must_create: bool = False) -> None:
            if self.session_key is None:
                return self.create()
            if must_create and self.session_key in SESSIONS:
                raise CreateError
            SESSIONS[self.session_key] = dict(self._get_session(no_load=must_create))

        def delete(self, session_key: str | None = None) -> None:
            SESSIONS.pop(session_key or self.session_key, None)

        @classmethod
        def clear_expired(cls) -> None:
            pass

    return SessionStore


def __getattr__(name: str) -> Any:
    # Django imports SESSION_ENGINE's module and takes its SessionStore: made on first use (Django set up).
    if name == "SessionStore":
        store = globals()["SessionStore"] = django_engine()
        return store
    raise AttributeError(name)


class ASGIMiddleware:
    """An ASGI session middleware over SESSIONS, shaped like Starlette's: scope["session"], Set-Cookie when changed."""

    def __init__(self, app: Any, session_cookie: str = "session") -> None:
        self.app, self.cookie = app, session_cookie
        self.prefix = session_cookie.encode() + b"="

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session_id = None
        for key, value in scope["headers"]:
            if key == b"cookie":
                for part in value.split(b";"):
                    part = part.strip()
                    if part.startswith(self.prefix):
                        session_id = part[len(self.prefix) :].decode("latin-1")
        stored = await self.load(session_id) if session_id else None
        scope["session"] = dict(stored) if stored is not None else {}
        before = dict(scope["session"])

        async def send_with_cookie(message: dict[str, Any]) -> None:
            nonlocal session_id
            if message["type"] == "http.response.start" and scope["session"] != before:
                if stored is None:
                    session_id = secrets.token_urlsafe(32)
                await self.store(session_id, dict(scope["session"]))  # type: ignore[arg-type]
                cookie = f"{self.cookie}={session_id}; path=/; httponly; samesite=lax".encode("latin-1")
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def load(self, session_id: str) -> dict[str, Any] | None:
        return SESSIONS.get(session_id)

    async def store(self, session_id: str, data: dict[str, Any]) -> None:
        SESSIONS[session_id] = data


class ASGIRedisMiddleware(ASGIMiddleware):
    """ASGIMiddleware on Redis (a ``redis.asyncio`` client): one plain GET, one SET with a TTL, no lock."""

    def __init__(self, app: Any, client: Any, prefix: str, session_cookie: str = "session") -> None:
        super().__init__(app, session_cookie)
        self.client, self.key_prefix = client, prefix

    async def load(self, session_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(self.key_prefix + session_id)
        return None if raw is None else orjson.loads(raw)

    async def store(self, session_id: str, data: dict[str, Any]) -> None:
        await self.client.set(self.key_prefix + session_id, orjson.dumps(data), px=TTL_MS)
