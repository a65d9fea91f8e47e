"""WSGI: a transaction for an environ, and a middleware giving each request its store."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from .busy import ADAPTER_TIMEOUT, refusal
from .errors import LockTimeout, SessionConflict
from .factory import StoreFactory
from .header_id import check_id_header, environ_key
from .store import SessionStore

__all__ = [
    "ClosingResponse",
    "Cookie",
    "SessionMiddleware",
    "WSGITransaction",
    "add_vary_cookie",
    "cookie_attributes",
    "parse_cookie_header",
    "vary_with_cookie",
]

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
DELETED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


class Cookie:
    """A request cookie, as WebStack's transactions return it."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"Cookie({self.name!r}, {self.value!r})"


def parse_cookie_header(header: str) -> dict[str, str]:
    """Name to value of a ``Cookie`` header; never raises, skips what is not ``name=value``.

    The first of two cookies with one name wins: browsers send the one with
    the most specific path first.
    """
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


def cookie_attributes(
    *,
    path: str = "/",
    domain: str | None = None,
    max_age: int | None = None,
    samesite: str | None = "Lax",
    secure: bool = False,
    httponly: bool = True,
    partitioned: bool = False,
) -> tuple[str, str]:
    """The attributes of the session cookie when set, and when deleted: ``"; Path=/; HttpOnly; ..."``.

    ``max_age`` None is a browser-session cookie. Refused at once (ValueError): a SameSite other than
    Lax, Strict or None (SameSite=None also needs ``secure``, or browsers drop the cookie), a negative
    or fractional max_age, and a path or domain holding ``;`` or a control character.
    """
    for name, value in (("path", path), ("domain", domain)):
        if value is not None and (not isinstance(value, str) or any(c in value for c in ";\r\n\x00")):
            raise ValueError(f"cookie {name} must be a plain string, not {value!r}")
    if samesite is not None and str(samesite).capitalize() not in ("Lax", "Strict", "None"):
        raise ValueError(f"cookie SameSite must be 'Lax', 'Strict', 'None' or None, not {samesite!r}")
    if samesite is not None and str(samesite).capitalize() == "None" and not secure:
        raise ValueError("a SameSite=None cookie must be secure (browsers drop it otherwise): pass secure=True")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
        raise ValueError(f"cookie max_age must be a whole number of seconds >= 0 or None, not {max_age!r}")
    where = f"; Path={path}" + (f"; Domain={domain}" if domain is not None else "")
    flags = ("; HttpOnly" if httponly else "") + (
        f"; SameSite={str(samesite).capitalize()}" if samesite is not None else ""
    )
    flags += ("; Secure" if secure else "") + ("; Partitioned" if partitioned else "")
    lifetime = f"; Max-Age={max_age}" if max_age is not None else ""
    return f"{where}{lifetime}{flags}", f"{where}; {DELETED}{flags}"


DEFAULT_COOKIE = cookie_attributes()
SECURE_COOKIE = cookie_attributes(secure=True)


class WSGITransaction:
    """WebStack's transaction protocol for a WSGI environ; collects the Set-Cookie headers.

    ``cookie``: the attributes of the session cookie when set and when deleted (cookie_attributes);
    ``secure=True`` alone is the default cookie marked Secure. ``id_header``
    (a header name, fastsession.header_id): a request that carries
    it, or every request when ``id_cookie`` is False, has its id read from
    and sent back in that header instead of the cookie.
    """

    def __init__(
        self,
        environ: dict[str, Any],
        *,
        secure: bool = False,
        cookie: tuple[str, str] | None = None,
        id_header: str | None = None,
        id_cookie: bool = True,
    ) -> None:
        self.environ = environ
        self.cookie = cookie if cookie is not None else SECURE_COOKIE if secure else DEFAULT_COOKIE
        self.outgoing: dict[str, str] = {}  # cookie name -> Set-Cookie value (or the id header's value)
        self._incoming: dict[str, str] | None = None
        # The header that carries this request's id (None: the cookie does).
        self.id_header = id_header if id_header and (environ_key(id_header) in environ or not id_cookie) else None

    def get_cookie(self, name: str) -> Cookie | None:
        if self.id_header is not None:
            value = self.environ.get(environ_key(self.id_header), "").strip()
            return Cookie(name, value) if value else None
        if self._incoming is None:
            self._incoming = parse_cookie_header(self.environ.get("HTTP_COOKIE", ""))
        value = self._incoming.get(name)
        return None if value is None else Cookie(name, value)

    def set_cookie_value(self, name: str, value: str) -> None:
        self.outgoing[name] = value if self.id_header is not None else f"{name}={value}{self.cookie[0]}"

    def delete_cookie(self, name: str) -> None:
        self.outgoing[name] = "" if self.id_header is not None else f"{name}={self.cookie[1]}"

    def cookie_headers(self) -> Headers:
        if self.id_header is not None:
            return [(self.id_header, value) for value in self.outgoing.values()]
        return [("Set-Cookie", value) for value in self.outgoing.values()]


def vary_with_cookie(value: str) -> str:
    """A Vary header's value with ``Cookie`` among its tokens (unless it is there, or ``*``)."""
    tokens = [token.strip().lower() for token in value.split(",")]
    return value if "cookie" in tokens or "*" in tokens else f"{value}, Cookie"


def vary_with(value: str, name: str) -> str:
    """A Vary header's value with header ``name`` among its tokens (unless it is there, or ``*``)."""
    tokens = [token.strip().lower() for token in value.split(",")]
    return value if name.lower() in tokens or "*" in tokens else f"{value}, {name}"


def add_vary_cookie(headers: Iterable[tuple[str, str]], also: str | None = None) -> Headers:
    """``headers`` with ``Cookie`` (and header ``also``) in their Vary header (added when there is none)."""
    out: Headers = []
    found = False
    for key, value in headers:
        if key.lower() == "vary":
            found = True
            value = vary_with_cookie(value)
            if also is not None:
                value = vary_with(value, also)
        out.append((key, value))
    if not found:
        out.append(("Vary", "Cookie" if also is None else f"Cookie, {also}"))
    return out


class SessionMiddleware:
    """Gives each request ``environ["fastsession.store"]``, a SessionStore.

    The store is closed (committed) when the response is done and rolled back
    when the application raises; the app may ``close()`` it early (write now,
    release the lock, carry on). The session is read, and locked, when the
    app first calls ``get_session``: a request that never does takes no lock
    and reads nothing. The cookie: ``cookie_path`` ("/"), ``cookie_domain``
    (None: this host), ``cookie_max_age`` (None: until the browser closes),
    ``cookie_samesite`` ("Lax"; "Strict", "None" or None), ``secure``
    (False), ``cookie_httponly`` (True), ``cookie_partitioned`` (False).
    ``read_only(environ)``, when given and true, makes that request take no
    lock (``store.read_only()``). The other options are SessionStore's
    (session_cookie_name, concurrent, delay, timeout, stale_after, max_age,
    fsync, locking, on_conflict, max_size, max_lifetime, encrypt); ``timeout``
    defaults to 10 s here, and a request whose session stays locked that long
    is answered 503 with Retry-After. ``id_header`` ("X-Session-Id", say):
    a request carrying that header gets its id from it and back in it, no
    cookie; ``id_cookie=False`` makes the header the only way
    (fastsession.header_id). Every option is checked when the middleware is
    made.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        session_directory: str,
        *,
        secure: bool = False,
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_max_age: int | None = None,
        cookie_samesite: str | None = "Lax",
        cookie_httponly: bool = True,
        cookie_partitioned: bool = False,
        store_factory: Callable[..., Any] = SessionStore,
        read_only: Callable[[dict[str, Any]], bool] | None = None,
        id_header: str | None = None,
        id_cookie: bool = True,
        **options: Any,
    ) -> None:
        self.id_header, self.id_cookie = check_id_header(id_header, id_cookie), id_cookie
        self.app = app
        self.session_directory = session_directory
        self.cookie = cookie_attributes(
            path=cookie_path,
            domain=cookie_domain,
            max_age=cookie_max_age,
            samesite=cookie_samesite,
            secure=secure,
            httponly=cookie_httponly,
            partitioned=cookie_partitioned,
        )
        self.store_factory = store_factory
        self.read_only = read_only
        self.options = dict({"timeout": ADAPTER_TIMEOUT}, **options)
        # Every option is checked now: a store is made with them (and dropped: it took nothing).
        store_factory(WSGITransaction({}), session_directory, **self.options).rollback()
        self._make = StoreFactory(store_factory, session_directory, **self.options).make

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        trans = WSGITransaction(environ, cookie=self.cookie, id_header=self.id_header, id_cookie=self.id_cookie)
        store = self._make(trans)
        if self.read_only is not None and self.read_only(environ):
            store.read_only()
        environ["fastsession.store"] = store
        started = False

        def session_start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
            nonlocal started
            started = True
            if store.accessed:
                name = store.session_cookie_name
                cookie = store.response_cookie()
                trans.outgoing.pop(name, None)  # superseded by what holds now
                if cookie == "":
                    trans.delete_cookie(name)
                elif cookie is not None:
                    trans.set_cookie_value(name, cookie)
                headers = add_vary_cookie(headers, self.id_header)
            return start_response(status, list(headers) + trans.cookie_headers(), exc_info)

        try:
            result = self.app(environ, session_start_response)
        except LockTimeout as exc:
            store.rollback()
            if started:
                raise
            return refused(start_response, exc)
        except BaseException:
            store.rollback()
            raise
        if started and isinstance(result, (list, tuple)) and not store.closed:
            # The whole body is here and nothing has gone out (a server sends the headers with the first
            # chunk): commit now, so that a change that cannot be stored is answered as such, never a 200.
            try:
                store.close()
            except (SessionConflict, LockTimeout) as exc:
                return refused(start_response, exc, sys.exc_info())
        return ClosingResponse(result, store)


def refused(
    start_response: Callable[..., Any], exc: LockTimeout | SessionConflict, exc_info: Any = None
) -> list[bytes]:
    """Start and give the 503 or 409 that answers ``exc`` (busy.refusal)."""
    _, line, body, headers = refusal(exc)
    start_response(line, headers, exc_info)
    return [body]


class ClosingResponse:
    """The application's response; closes the store after it, rolls it back if it raises.

    A server that drops the response without calling ``close()`` (PEP 3333
    says it must) would keep the session locked for the life of the process:
    when the response is garbage-collected, the store is rolled back (lock
    released, nothing written) and a warning names the session.
    """

    def __init__(self, result: Iterable[bytes], store: Any) -> None:
        self.result = result
        self.store = store
        self._chunks: Iterator[bytes] | None = None

    def __iter__(self) -> ClosingResponse:
        return self

    def __next__(self) -> bytes:
        try:
            if self._chunks is None:
                self._chunks = iter(self.result)
            return next(self._chunks)
        except StopIteration:
            raise
        except BaseException:
            self.store.rollback()
            raise

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.store.close()

    def __del__(self) -> None:
        store = self.store
        if not store.closed:
            store.rollback()
            logger.warning(
                "a WSGI response was dropped without close(); its session's lock "
                "was released and its changes discarded (the server must call close())"
            )
