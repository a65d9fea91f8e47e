"""Flask: ``app.session_interface = FastSessionInterface(directory, **options)``.

The cookie carries only the session's opaque id; the data lives in the
store. Options are SessionStore's (concurrent, delay, timeout, stale_after,
max_age, fsync, locking, on_conflict, max_size, max_lifetime, encrypt;
``timeout`` defaults to 10 s here), checked when the interface is made.

Like Flask's own session:
- the session is read, and (``locking="request"``, the default) locked, on
  first use, never for a request that does not touch it; the lock is held
  until save_session and released at teardown whatever happened;
  ``session.release()`` ends it early;
- values round-trip through Flask's tagged JSON (tuple, bytes, Markup,
  UUID, datetime, and what is registered on ``serializer``);
- ``accessed`` and ``modified`` mean what they mean in Flask; Set-Cookie goes
  out when the session is new or modified, or is permanent and
  SESSION_REFRESH_EACH_REQUEST holds (an untouched request learns that by a
  read that takes no lock); ``SESSION_PERMANENT`` (Flask-Session's) makes
  new sessions permanent;
- sessions expire on the server after PERMANENT_SESSION_LIFETIME of disuse
  (the store's ``max_age``, unless given here).
A session still locked after ``timeout`` answers 503 with Retry-After: raised
where the view first touches it, or, when an after_request hook touches it
first (Flask-Login's does), set on the response by save_session.

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

from datetime import datetime, timezone
from typing import Any, Callable

from blinker import NamedSignal
from flask import Flask, Request, Response, after_this_request, has_app_context, has_request_context
from flask import request as current_request
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from flask.signals import request_tearing_down
from werkzeug.exceptions import ServiceUnavailable

from .. import events
from ..busy import ADAPTER_TIMEOUT, RETRY_AFTER, answered_busy, refusal
from ..errors import LockTimeout, SessionConflict, TooManySessions
from ..factory import StoreFactory
from ..header_id import check_id_header
from ..session import CLOSED, Session, TrackedSession
from ..store import SessionStore
from ..wsgi import vary_with

STORE_KEY = "fastsession.store"  # the request's store, once the session was opened
STORES_KEY = (
    "fastsession.stores"  # every store a request opened (session_transaction opens a second): released at teardown
)

__all__ = ["FastSessionInterface", "FlaskSession", "current_store"]
PLAIN = (str, int, float, bool, type(None))  # values Flask's tagged JSON leaves as they are


class FlaskSession(TrackedSession, SessionMixin):
    """``flask.session``: read (and locked) from the store on first use, with Flask's session attributes."""

    def __init__(self, session_id: str | None = None, data: Any = (), new: bool = False) -> None:
        TrackedSession.__init__(self, session_id, data)
        self.new = new
        self.regenerated = False
        self.released: str | None = None  # what release() did, for save_session's cookie
        self.store: Any = None
        self.app: Flask | None = None
        self.serializer = FastSessionInterface.serializer  # the opening interface's (FastSessionInterface._open)
        self.busy: LockTimeout | None = None  # the session stayed locked: nothing of it is read or stored
        self.answered = False  # the 503 for ``busy`` was raised already (the view touched it first)
        self.view_done = False  # the view returned: a 503 now is set by save_session, not raised
        self.migrated: tuple[Any, ...] | None = None  # (reader, old id): the old store's record, deleted once stored
        self.id_header: str | None = None  # the header this request's id came in and goes back in (None: cookie)

    def _view_finished(self, response: Response) -> Response:
        self.view_done = True
        return response

    def regenerate(self) -> None:
        """A fresh id for this session (call it after login); the old id is deleted."""
        self.open()
        if not self.new and self.busy is None:
            self.store.regenerate_id()
            self.regenerated = True

    def release(self) -> None:
        """Store the session now and release its lock; the view carries on (PHP's session_write_close).

        Changes made after this raise SessionError: they could not be stored.
        """
        store = self.store
        if store is not None and not store.closed and self.busy is None:
            try:
                self.released = commit(store, self, self.app)
            except BaseException:
                store.rollback()
                raise


def refuse(response: Response, exc: SessionConflict | LockTimeout) -> None:
    """Make ``response`` the 409 (a commit that met another's change) or 503 (no lock in time) for ``exc``."""
    response.status_code, _, body, headers = refusal(exc)
    response.set_data(body)
    for name, value in headers:
        response.headers[name] = value


def vary_on(response: Response, name: str) -> None:
    """``response.vary.add(name)``, cheaper: werkzeug's parses the header into a set and writes it back at every
    call (about a tenth of what a session adds to a request), and keeps only the first of several Vary lines."""
    headers = response.headers
    values = headers.getlist("Vary")
    if not values:
        headers.add("Vary", name)
        return
    value = ", ".join(values)  # several lines of a header are one list (RFC 9110, 5.3)
    merged = vary_with(value, name)
    if merged is not value or len(values) > 1:
        headers.set("Vary", merged)


def tagged(serializer: TaggedJSONSerializer, session: FlaskSession) -> dict[str, Any]:
    """The session's data as stored: each value in Flask's tagged JSON form."""
    return {key: value if type(value) in PLAIN else serializer.tag(value) for key, value in dict.items(session)}


def untagged(serializer: TaggedJSONSerializer, value: Any) -> Any:
    """A stored value back in the types Flask's tagged JSON names (tuple, bytes, Markup, UUID, datetime, ...)."""
    kind = type(value)
    if kind is dict:
        return serializer.untag({key: untagged(serializer, item) for key, item in value.items()})
    if kind is list:
        return [untagged(serializer, item) for item in value]
    return value


def commit(store: Any, session: FlaskSession, app: Flask | None) -> str:
    """Store ``session`` and close ``store``: "deleted" (emptied), "nothing" (new and empty), "issued" (a new id) or "kept".

    The session cannot be changed afterwards (ClosedSession): the change would not be stored.
    """
    data = tagged(session.serializer, session)
    try:
        if not data:
            if session.new:
                store.close()
                return "nothing"
            store.expire_session()  # cleared: the record and the cookie go
            store.close()
            return "deleted"
        if session.new and app is not None and app.config.get("SESSION_PERMANENT") and "_permanent" not in data:
            dict.__setitem__(session, "_permanent", True)  # Flask-Session's setting: new sessions are permanent
            data["_permanent"] = True
        issued = session.regenerated or session.new
        stored = store.get_session(True)  # the store's own session (held already, or new with a fresh id)
        dict.clear(stored)
        dict.update(stored, data)
        session.session_id = stored.session_id
        store.close()
    finally:
        session.__class__ = CLOSED[type(session)]
    if session.migrated is not None:  # stored here now: the old store's record may go
        (reader, old_id), session.migrated = session.migrated, None
        reader.delete(old_id)
    return "issued" if issued else "kept"


class FlaskTransaction:
    """The store's transaction: cookies (or the ``id_header``) come from the request; Set-Cookie is
    save_session's job."""

    def __init__(self, request: Request | None, id_header: str | None = None) -> None:
        self.request = request
        self.id_header = id_header

    def get_cookie(self, name: str) -> Any:
        if self.request is None:
            return None
        if self.id_header is not None:
            value = self.request.headers.get(self.id_header, "").strip() or None
        else:
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
    """A Flask SessionInterface on a fastsession store (files by default).

    ``directory``: the session folder; or ``postgres=`` a DSN (or a psycopg
    ConnectionPool) for PostgreSQL; or a client with ``store_class=``
    (``RedisSessionStore``).

    ``id_header`` ("X-Session-Id", say): a request carrying that header gets
    its id from it, and a new id back in it, no cookie; ``id_cookie=False``
    makes the header the only way (fastsession.header_id). The other
    keywords go to the store.
    """

    session_class = FlaskSession
    serializer = TaggedJSONSerializer()  # register tags here for more types, as on Flask's own interface

    def __init__(
        self,
        directory: Any = None,
        *,
        postgres: Any = None,
        store_class: type = SessionStore,
        read_only: Callable[[Request], bool] | None = None,
        migrate_from: Any = None,
        id_header: str | None = None,
        id_cookie: bool = True,
        **options: Any,
    ) -> None:
        self.id_header, self.id_cookie = check_id_header(id_header, id_cookie), id_cookie
        if (directory is None) == (postgres is None):
            raise TypeError("FastSessionInterface takes a session directory (or client) or postgres=, one of them")
        if postgres is not None:
            from ..postgres import PostgresSessionStore

            directory, store_class = postgres, PostgresSessionStore
        self.directory = directory
        self.read_only = read_only
        self.migrate_from = migrate_from
        self.options = dict({"timeout": ADAPTER_TIMEOUT}, **options)
        # The store's sessions are plain; the request sees the FlaskSession that opens one on first use.
        self.store_class = store_class
        # Every option is checked now, not at the first request: a store is made (and dropped) with them.
        store_class(FlaskTransaction(None), directory, "session", **dict({"max_age": 1.0}, **self.options)).rollback()
        # id(app) -> (its lifetime as set, its cookie name, the StoreFactory of its stores)
        self._app_options: dict[int, tuple[Any, str, StoreFactory]] = {}
        request_tearing_down.connect(_release_at_teardown, weak=False)  # (once: the same function)
        try:
            from flask_login import user_logged_in, user_logged_out
        except ImportError:
            pass
        else:
            user_logged_in.connect(self._bind_on_login)
            user_logged_out.connect(self._unbind_on_logout)

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        session = FlaskSession()
        session.defer(self._open, app, request)  # read on first use (TrackedSession.open)
        if self.id_header is not None and (not self.id_cookie or self.id_header in request.headers):
            session.id_header = self.id_header  # an API client: its id comes and goes in the header
        if has_request_context():
            after_this_request(session._view_finished)
        return session

    def _factory(self, app: Flask) -> StoreFactory:
        """What makes ``app``'s stores: max_age is PERMANENT_SESSION_LIFETIME unless given; made again when that
        setting or the cookie's name changes."""
        given = app.config["PERMANENT_SESSION_LIFETIME"]  # (as set: a timedelta or seconds, converted on change)
        name = self.get_cookie_name(app)
        made = self._app_options.get(id(app))
        if made is None or (made[0] is not given and made[0] != given) or made[1] != name:
            options = self.options
            if "max_age" not in options:
                options = dict(options, max_age=app.permanent_session_lifetime.total_seconds())
            made = self._app_options[id(app)] = (
                given,
                name,
                StoreFactory(self.store_class, self.directory, name, **options),
            )
        return made[2]

    def _store(self, app: Flask, request: Request, id_header: str | None = None) -> Any:
        store = self._factory(app).make(FlaskTransaction(request, id_header))
        request.environ.setdefault(STORES_KEY, []).append(store)
        return store

    def _open(self, session: FlaskSession, app: Flask, request: Request) -> None:
        """Fill ``session`` from the store (locked until save_session); a lock not had in time makes it busy."""
        store = session.store = request.environ[STORE_KEY] = self._store(app, request, session.id_header)
        session.app, session.serializer = app, self.serializer
        if self.read_only is not None and self.read_only(request):
            store.read_only()
        try:
            stored: Session | None = store.get_session(False)  # locks a stored session until save_session
            if stored is None and self.migrate_from is not None:
                stored = self._migrated(store, session, request.cookies.get(self.get_cookie_name(app)))
        except LockTimeout as exc:
            store.rollback()
            session.busy = exc
            if session.view_done:  # an after_request hook: raising here would be a 500; save_session answers 503
                return
            session.answered = True
            answered_busy(exc)
            raise ServiceUnavailable(retry_after=int(RETRY_AFTER)) from None
        except BaseException:
            store.rollback()
            raise
        if stored is None:
            session.new = True  # gets an id only if something is stored (it may hold Flask-Session's data)
            return
        session.session_id = stored.session_id
        serializer = session.serializer
        for key, value in dict.items(stored):
            dict.__setitem__(session, key, value if type(value) in PLAIN else untagged(serializer, value))

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        if session.pending is not None:  # the request never touched it: no lock was taken
            self._refresh_untouched(app, session, response)
            return
        store = session.store
        if session.busy is not None:
            if not session.answered:
                session.answered = True
                refuse(response, session.busy)
            return
        released = session.released
        if store.closed and released is None:  # already saved (Flask may call twice after an error)
            return
        cookie = self._cookie_settings(app)
        name = self.get_cookie_name(app)
        varied = session.accessed
        if varied:
            vary_on(response, "Cookie")
        if released is None:
            try:
                outcome = commit(store, session, app)
            except (SessionConflict, LockTimeout) as exc:  # nothing stored: the response says so, not a 200
                refuse(response, exc)
                return
            except BaseException:
                store.rollback()
                raise
        else:
            outcome, session.released = released, None  # stored by release(); the cookie is sent once
        if outcome == "deleted":
            if session.id_header is not None:
                self._send_id(response, session.id_header, "")
            else:
                response.delete_cookie(name, **cookie)
                vary_on(response, "Cookie")
        if outcome in ("deleted", "nothing"):
            return
        if session.id_header is not None:  # an id header goes back only when the id is new
            if outcome == "issued":
                self._send_id(response, session.id_header, session.session_id)
            return
        permanent = dict.get(session, "_permanent", False)
        if outcome == "issued" or session.modified or (permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            self._set_cookie(app, response, session.session_id, permanent, cookie, varied)

    @staticmethod
    def _send_id(response: Response, header: str, value: str) -> None:
        response.headers[header] = value
        vary_on(response, header)

    def _cookie_settings(self, app: Flask) -> dict[str, Any]:
        cookie: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }
        if hasattr(self, "get_cookie_partitioned"):
            cookie["partitioned"] = self.get_cookie_partitioned(app)
        return cookie

    def _set_cookie(
        self, app: Flask, response: Response, value: str, permanent: bool, cookie: dict[str, Any], varied: bool = False
    ) -> None:
        """Set the session cookie on ``response``; ``varied``: its Vary has Cookie already."""
        expires = datetime.now(timezone.utc) + app.permanent_session_lifetime if permanent else None
        response.set_cookie(self.get_cookie_name(app), value, expires=expires, **cookie)
        if not varied:
            vary_on(response, "Cookie")

    def _refresh_untouched(self, app: Flask, session: FlaskSession, response: Response) -> None:
        """Flask renews a permanent session's cookie on every request: learn whether it is one, without a lock."""
        _, _, request = session.pending  # type: ignore[misc]
        if session.id_header is not None:  # nothing to renew: an id header has no expiry
            return
        if not app.config["SESSION_REFRESH_EACH_REQUEST"] or self.get_cookie_name(app) not in request.cookies:
            return
        store = self._store(app, request)
        try:
            store.read_only()
            stored = store.get_session(False)
        finally:
            store.rollback()
        if stored is not None and dict.get(stored, "_permanent", False):
            self._set_cookie(app, response, stored.session_id, True, self._cookie_settings(app))

    def _migrated(self, store: Any, session: FlaskSession, cookie: str | None) -> Session | None:
        """The session the old store holds for ``cookie``, as this store's (stored at save_session); None if none."""
        found = self.migrate_from.load(cookie) if cookie else None
        if found is None:
            return None
        old_id, data = found
        session.migrated = (self.migrate_from, old_id)
        if store.backend.kernels.is_valid_id(old_id):
            stored: Session = store._get_session(old_id, True)  # locked; empty unless migrated meanwhile
            if not stored:
                dict.update(stored, data)
            session.regenerated = cookie != old_id  # a signed cookie: send the bare id from now on
            return stored
        session.new = True  # an id fastsession would not take: a new one
        dict.update(session, data)
        return None

    def regenerate(self, session: FlaskSession) -> None:
        """Flask-Session's spelling of ``session.regenerate()``."""
        session.regenerate()

    def _bind_on_login(self, app: Flask, user: Any, **extra: Any) -> None:
        """Flask-Login's user_logged_in: bind the session. Refused by the cap (``max_sessions=``,
        ``when_full="refuse"``): the login is undone and TooManySessions raised from ``login_user``."""
        if app.session_interface is self:
            try:
                current_store().bind_user(
                    str(user.get_id()), user_agent=current_request.headers.get("User-Agent", "")[:200]
                )
            except TooManySessions:
                from flask_login import logout_user

                logout_user()
                raise

    def _unbind_on_logout(self, app: Flask, user: Any, **extra: Any) -> None:
        if app.session_interface is self:
            current_store().bind_user(None)


def _release_at_teardown(app: Flask, **extra: Any) -> None:
    """Flask's request_tearing_down: the locks of a request whose session save_session never closed (an error
    before there was a response) go. One receiver for every interface, held strongly: blinker sends to it in
    two thirds of the time a weakly held method of each interface takes (1.6 against 2.4 µs)."""
    if isinstance(app.session_interface, FastSessionInterface):
        for store in current_request.environ.get(STORES_KEY, ()):
            if not store.closed:
                store.rollback()


class _EventSignal(NamedSignal):
    """A blinker signal that has fastsession's events forwarded to it once a receiver connects (none: no cost)."""

    def connect(self, receiver: Any, sender: Any = NamedSignal.ANY, weak: bool = True) -> Any:
        events.subscribe(_send_session_event)
        return super().connect(receiver, sender, weak)

    def disconnect(self, receiver: Any, sender: Any = NamedSignal.ANY) -> None:
        super().disconnect(receiver, sender)
        if not self.receivers:
            events.unsubscribe(_send_session_event)


# fastsession.events as a Flask (blinker) signal, sent by the app in hand: receivers get ``event``.
session_event = _EventSignal("fastsession-session-event")


def _send_session_event(event: Any) -> None:
    from flask import current_app

    session_event.send(current_app._get_current_object() if has_app_context() else None, event=event)  # type: ignore[attr-defined]


def current_store() -> Any:
    """The store of the request being handled (for sessions_of, revoke_all, bind_user); opens the session."""
    from flask import session

    front = session._get_current_object()  # type: ignore[attr-defined]
    front.open()
    return front.store
