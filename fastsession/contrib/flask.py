"""Flask: ``app.session_interface = FastSessionInterface(directory, **options)``.

The cookie carries only the session's opaque id; the data lives in the
store. Options are SessionStore's (concurrent, delay, timeout, stale_after,
max_age, fsync, locking, on_conflict, max_size, max_lifetime, encrypt;
``timeout`` defaults to 10 s here);
cookies follow Flask's SESSION_COOKIE_* settings and, for permanent
sessions, PERMANENT_SESSION_LIFETIME. With locking on (the default,
``concurrent=1``, ``locking="request"``) the session's lock is held from
open_session to save_session, and released at teardown whatever happened;
``session.release()`` ends it early. ``read_only(request)``, when given and
true, makes a request take no lock. A session still locked after
``timeout`` answers 503 with Retry-After when the view touches it.

``migrate_from``, a reader of fastsession.migrate (``FlaskSessionRedis``,
``FlaskSessionFiles``), switches from Flask-Session without logging anyone
out: a cookie that names no fastsession session is looked up there once,
stored here (under the same id when it is a valid fastsession id, else
under a new one with a new cookie), and the old record deleted once stored.
Keep SESSION_COOKIE_NAME as it was, so the old cookie comes back.

With Flask-Login installed, ``login_user`` binds the session to the user
(``store.bind_user(user.get_id(), user_agent=...)``) and ``logout_user``
unbinds it, so ``store.sessions_of(user_id)`` / ``store.revoke_all(user_id,
keep=session.session_id)`` ("log out my other devices") work; the request's
store is ``fastsession.contrib.flask.current_store()``.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from flask.signals import request_tearing_down
from werkzeug.exceptions import ServiceUnavailable

from ..busy import ADAPTER_TIMEOUT, RETRY_AFTER, answered_busy, refusal
from ..errors import LockTimeout, SessionConflict
from ..session import TrackedSession
from ..store import SessionStore

STORE_KEY = "fastsession.store"


class FlaskSession(TrackedSession, SessionMixin):
    """fastsession's Session with Flask's session attributes (permanent, new, accessed)."""

    modified = False  # changes are found by comparing encoded bytes, not by this flag

    def __init__(self, session_id: str | None = None, data: Any = (), new: bool = False) -> None:
        TrackedSession.__init__(self, session_id, data)
        self.new = new
        self.regenerated = False
        self.released: str | None = None  # what release() did, for save_session's cookie
        self.store: Any = None
        self.migrated: tuple[Any, ...] | None = None  # (reader, old id): the old store's record, deleted once stored

    def regenerate(self) -> None:
        """A fresh id for this session (call it after login); the old id is deleted."""
        if not self.new:
            self.store.regenerate_id()
            self.regenerated = True

    def release(self) -> None:
        """Store the session now and release its lock; the view carries on (PHP's session_write_close).

        Changes made after this are not stored.
        """
        store = self.store
        if store is not None and not store.closed:
            try:
                self.released = commit(store, self)
            except BaseException:
                store.rollback()
                raise


def refuse(response: Response, exc: SessionConflict | LockTimeout) -> None:
    """Make ``response`` the 409 (a commit that met another's change) or 503 (no lock in time) for ``exc``."""
    response.status_code, _, body, headers = refusal(exc)
    response.set_data(body)
    for name, value in headers:
        response.headers[name] = value


class BusySession(FlaskSession):
    """The session of a request whose session stayed locked: any use of it answers 503."""

    def __init__(self, error: LockTimeout) -> None:
        FlaskSession.__init__(self, new=True)
        self.error = error

    def _busy(self, *args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable(retry_after=int(RETRY_AFTER))


for _name in (
    "__getitem__",
    "get",
    "setdefault",
    "__contains__",
    "__len__",
    "__iter__",
    "keys",
    "values",
    "items",
    "__setitem__",
    "__delitem__",
    "update",
    "pop",
    "popitem",
    "clear",
    "release",
    "regenerate",
):
    setattr(BusySession, _name, BusySession._busy)


def commit(store: Any, session: FlaskSession) -> str:
    """Store ``session`` and close ``store``: "deleted" (emptied), "nothing" (new and empty), "issued" (a new id) or "kept"."""
    if not session:
        if session.new:
            store.close()
            return "nothing"
        store.expire_session()  # cleared: the record and the cookie go
        store.close()
        return "deleted"
    issued = session.regenerated
    if session.new:
        stored = store.get_session(True)
        stored.update(session)
        session.session_id = stored.session_id
        issued = True
    store.close()
    if session.migrated is not None:  # stored here now: the old store's record may go
        (reader, old_id), session.migrated = session.migrated, None
        reader.delete(old_id)
    return "issued" if issued else "kept"


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

    def __init__(
        self,
        directory: Any,
        *,
        store_class: type = SessionStore,
        read_only: Callable[[Request], bool] | None = None,
        migrate_from: Any = None,
        **options: Any,
    ) -> None:
        self.directory = directory
        self.read_only = read_only
        self.migrate_from = migrate_from
        self.options = dict({"timeout": ADAPTER_TIMEOUT}, **options)
        # The store hands out FlaskSession objects; storage stays the store's.
        self.store_class = type(f"Flask{store_class.__name__}", (store_class,), {"session_class": FlaskSession})
        request_tearing_down.connect(self._release_at_teardown)
        try:
            from flask_login import user_logged_in, user_logged_out
        except ImportError:
            pass
        else:
            user_logged_in.connect(self._bind_on_login)
            user_logged_out.connect(self._unbind_on_logout)

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        store = self.store_class(FlaskTransaction(request), self.directory, self.get_cookie_name(app), **self.options)
        request.environ[STORE_KEY] = store
        if self.read_only is not None and self.read_only(request):
            store.read_only()
        try:
            session: FlaskSession | None = store.get_session(False)  # locks a stored session until save_session
            if session is None and self.migrate_from is not None:
                session = self._migrated(store, request.cookies.get(self.get_cookie_name(app)))
        except LockTimeout as exc:
            store.rollback()
            answered_busy(exc)
            return BusySession(exc)
        except BaseException:
            store.rollback()
            raise
        if session is None:
            session = FlaskSession(new=True)  # gets an id only if something is stored
        session.store = store
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        store = getattr(session, "store", None)
        if store is None or isinstance(session, BusySession) or not isinstance(session, FlaskSession):
            return
        released = getattr(session, "released", None)
        if store.closed and released is None:  # already saved (Flask may call twice after an error)
            return
        cookie: dict[str, Any] = {
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
        if released is None:
            try:
                outcome = commit(store, session)
            except (SessionConflict, LockTimeout) as exc:  # nothing stored: the response says so, not a 200
                refuse(response, exc)
                return
            except BaseException:
                store.rollback()
                raise
        else:
            outcome, session.released = released, None  # stored by release(); the cookie is sent once
        if outcome == "deleted":
            response.delete_cookie(name, **cookie)
            response.vary.add("Cookie")
        if outcome in ("deleted", "nothing"):
            return
        if outcome == "issued" or (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            response.set_cookie(name, session.session_id, expires=self.get_expiration_time(app, session), **cookie)
            response.vary.add("Cookie")

    def _migrated(self, store: Any, cookie: str | None) -> FlaskSession | None:
        """The session the old store holds for ``cookie``, as this store's (stored at save_session); None if none."""
        found = self.migrate_from.load(cookie) if cookie else None
        if found is None:
            return None
        old_id, data = found
        if store.backend.kernels.is_valid_id(old_id):
            session: FlaskSession = store._get_session(old_id, True)  # locked; empty unless migrated meanwhile
            if not session:
                session.update(data)
            session.regenerated = cookie != old_id  # a signed cookie: send the bare id from now on
        else:
            session = FlaskSession(new=True)  # an id fastsession would not take: a new one
            session.update(data)
        session.migrated = (self.migrate_from, old_id)
        return session

    def regenerate(self, session: FlaskSession) -> None:
        """Flask-Session's spelling of ``session.regenerate()``."""
        session.regenerate()

    def _bind_on_login(self, app: Flask, user: Any, **extra: Any) -> None:
        if app.session_interface is self:
            from flask import request

            current_store().bind_user(str(user.get_id()), user_agent=request.headers.get("User-Agent", "")[:200])

    def _unbind_on_logout(self, app: Flask, user: Any, **extra: Any) -> None:
        if app.session_interface is self:
            current_store().bind_user(None)

    def _release_at_teardown(self, app: Flask, **extra: Any) -> None:
        if app.session_interface is not self:
            return
        from flask import request

        store = request.environ.get(STORE_KEY)
        if store is not None:
            store.rollback()  # nothing if save_session already closed it


def current_store() -> Any:
    """The store of the request being handled (for sessions_of, revoke_all, bind_user)."""
    from flask import request

    return request.environ[STORE_KEY]
