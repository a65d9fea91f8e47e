"""Flask: ``app.session_interface = FastSessionInterface(directory, **options)``.

The cookie carries only the session's opaque id; the data lives in the
store. Options are SessionStore's (concurrent, delay, timeout, stale_after,
max_age, fsync); cookies follow Flask's SESSION_COOKIE_* settings and, for
permanent sessions, PERMANENT_SESSION_LIFETIME. With locking on (the
default, ``concurrent=1``) the session's lock is held from open_session to
save_session, and released at teardown whatever happened.
"""

from __future__ import annotations

from typing import Any, Optional

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from flask.signals import request_tearing_down

from ..session import TrackedSession
from ..store import SessionStore

STORE_KEY = "fastsession.store"


class FlaskSession(TrackedSession, SessionMixin):
    """fastsession's Session with Flask's session attributes (permanent, new, accessed)."""

    modified = False  # changes are found by comparing encoded bytes, not by this flag

    def __init__(self, session_id: Optional[str] = None, data: Any = (), new: bool = False) -> None:
        TrackedSession.__init__(self, session_id, data)
        self.new = new
        self.regenerated = False
        self.store: Any = None

    def regenerate(self) -> None:
        """A fresh id for this session (call it after login); the old id is deleted."""
        if not self.new:
            self.store.regenerate_id()
            self.regenerated = True


class FlaskTransaction:
    """The store's transaction: cookies come from the request; Set-Cookie is save_session's job."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def get_cookie(self, name: str) -> Any:
        value = self.request.cookies.get(name)
        return None if value is None else _Cookie(value)

    def set_cookie_value(self, name: str, value: str) -> None:
        pass

    def delete_cookie(self, name: str) -> None:
        pass


class _Cookie:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


class FastSessionInterface(SessionInterface):
    """A Flask SessionInterface on a fastsession store (files by default)."""

    session_class = FlaskSession

    def __init__(self, directory: Any, *, store_class: type = SessionStore, **options: Any) -> None:
        self.directory = directory
        self.options = options
        # The store hands out FlaskSession objects; storage stays the store's.
        self.store_class = type(f"Flask{store_class.__name__}", (store_class,), {"session_class": FlaskSession})
        request_tearing_down.connect(self._release_at_teardown)

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        store = self.store_class(FlaskTransaction(request), self.directory, self.get_cookie_name(app), **self.options)
        request.environ[STORE_KEY] = store
        try:
            session = store.get_session(False)  # locks a stored session until save_session
        except BaseException:
            store.rollback()
            raise
        if session is None:
            session = FlaskSession(new=True)  # gets an id only if something is stored
        session.store = store
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        store = getattr(session, "store", None)
        if store is None or store.closed:  # already saved (Flask may call twice after an error)
            return
        cookie = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }
        if hasattr(self, "get_cookie_partitioned"):
            cookie["partitioned"] = self.get_cookie_partitioned(app)
        name = self.get_cookie_name(app)
        if session.accessed:
            response.vary.add("Cookie")
        try:
            if not session:
                if not session.new:  # cleared: the record and the cookie go
                    store.expire_session()
                    response.delete_cookie(name, **cookie)
                    response.vary.add("Cookie")
                store.close()
                return
            issued = session.regenerated
            if session.new:
                stored = store.get_session(True)
                stored.update(session)
                session.session_id = stored.session_id
                issued = True
            store.close()
        except BaseException:
            store.rollback()
            raise
        if issued or (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            response.set_cookie(
                name, session.session_id, expires=self.get_expiration_time(app, session), **cookie
            )
            response.vary.add("Cookie")

    def regenerate(self, session: FlaskSession) -> None:
        """Flask-Session's spelling of ``session.regenerate()``."""
        session.regenerate()

    def _release_at_teardown(self, app: Flask, **extra: Any) -> None:
        if app.session_interface is not self:
            return
        from flask import request

        store = request.environ.get(STORE_KEY)
        if store is not None:
            store.rollback()  # nothing if save_session already closed it
