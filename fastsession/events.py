"""Lifecycle events: a session created, regenerated, expired, revoked or deleted, told to the handlers subscribed.

``subscribe(handler)`` (also a decorator) registers a callable that gets a
``SessionEvent`` after the fact has happened in storage. An event names the
session by its stored name (a hash of its id: a log line or an audit table
of events opens nothing) and its user by the user hash, where known.
Handlers run inline, in the request's thread (or on the event loop of the
async stores) once the store's own storage call is done: keep them short
(queue the work). A handler that raises is logged and skipped; the request
and its locks go on as if it had not been there. With no handler
subscribed, nothing is built: the stores check ``handlers`` first.

Django sends them as the signal ``fastsession.contrib.django.session_event``,
Flask as the blinker signal ``fastsession.contrib.flask.session_event``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

__all__ = ["KINDS", "SessionEvent", "subscribe", "unsubscribe"]

logger = logging.getLogger(__name__)

KINDS = ("created", "regenerated", "expired", "revoked", "deleted")


class SessionEvent:
    """One lifecycle event of one session.

    ``kind``: one of KINDS. ``session``: the stored name. ``user``: the user
    hash it was bound to, None when unbound or unknown. ``previous``: for
    "regenerated", the stored name of the id it replaced. ``reason``: for
    "expired", "idle" (max_age) or "lifetime" (max_lifetime); for "revoked",
    "revoke", "revoke_all" or "max_sessions"; for "deleted", "logout".
    ``at``: seconds since the epoch.
    """

    __slots__ = ("at", "kind", "previous", "reason", "session", "user")

    def __init__(
        self,
        kind: str,
        session: str,
        user: str | None = None,
        previous: str | None = None,
        reason: str | None = None,
        at: float | None = None,
    ) -> None:
        self.kind, self.session, self.user, self.previous, self.reason = kind, session, user, previous, reason
        self.at = time.time() if at is None else at

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in ("kind", "session", "user", "previous", "reason", "at")}

    def __repr__(self) -> str:
        return f"SessionEvent({self.kind!r}, {self.session[:8]}…, reason={self.reason!r})"


Handler = Callable[[SessionEvent], object]

# The subscribed handlers, in order. The stores test it before building an event: empty, events cost nothing.
handlers: list[Handler] = []


def subscribe(handler: Handler) -> Handler:
    """Call ``handler(event)`` for every event from now on (once, however often subscribed); returns it."""
    if handler not in handlers:
        handlers.append(handler)
    return handler


def unsubscribe(handler: Handler) -> None:
    """Stop calling ``handler``; nothing if it was not subscribed."""
    if handler in handlers:
        handlers.remove(handler)


def emit(
    kind: str, session: str, user: str | None = None, previous: str | None = None, reason: str | None = None
) -> None:
    """Tell every handler; one that raises is logged and the others still hear of it."""
    event = SessionEvent(kind, session, user, previous, reason)
    for handler in list(handlers):
        try:
            handler(event)
        except Exception:
            logger.exception("a session event handler raised (%r, session %s…); ignored", kind, session[:8])
