"""What every adapter answers when the session cannot be had or kept: one status, one log record.

A lock not had in time is a 503 with Retry-After: a user whose own slow
request holds the lock gets "try again in a second", not a server error;
the log says who held the lock (host, pid, age). A ``locking="commit"``
change that met another request's change of the same key is a 409: the
change was not stored, and the client is told so, never a 200.
"""

from __future__ import annotations

import logging

from .errors import LockTimeout, SessionConflict

logger = logging.getLogger(__name__)

ADAPTER_TIMEOUT = 10.0  # seconds an adapter's request waits for its session's lock (the facade: forever)
RETRY_AFTER = "1"
BODY = b"The session is busy with another request; try again.\n"
CONFLICT_BODY = b"The session was changed by another request meanwhile; this change was not stored. Try again.\n"


def answered_busy(exc: LockTimeout) -> None:
    """Log, once per refused request, the 503 answered for ``exc`` and who held the lock."""
    logger.warning("answered 503 (Retry-After: %s): %s", RETRY_AFTER, exc)


def refusal(exc: LockTimeout | SessionConflict) -> tuple[int, str, bytes, list[tuple[str, str]]]:
    """What every adapter answers for ``exc``, logged once: (status, WSGI status line, body, headers).

    A LockTimeout is a 503 with Retry-After, a SessionConflict a 409.
    """
    if isinstance(exc, SessionConflict):
        logger.warning("answered 409: %s", exc)
        status, line, body, extra = 409, "409 Conflict", CONFLICT_BODY, []
    else:
        answered_busy(exc)
        status, line, body, extra = 503, "503 Service Unavailable", BODY, [("Retry-After", RETRY_AFTER)]
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *extra]
    return status, line, body, headers
