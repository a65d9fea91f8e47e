"""What every adapter does when a session's lock is not had in time: 503, Retry-After, one log record.

A user whose own slow request holds the lock gets "try again in a second",
not a server error; the log says who held the lock (host, pid, age).
"""

from __future__ import annotations

import logging

from .errors import LockTimeout

logger = logging.getLogger("fastsession")

ADAPTER_TIMEOUT = 10.0  # seconds an adapter's request waits for its session's lock (the facade: forever)
RETRY_AFTER = "1"
STATUS = "503 Service Unavailable"
BODY = b"The session is busy with another request; try again.\n"


def answered_busy(exc: LockTimeout) -> None:
    """Log, once per refused request, the 503 answered for ``exc`` and who held the lock."""
    logger.warning("fastsession: answered 503 (Retry-After: %s): %s", RETRY_AFTER, exc)
