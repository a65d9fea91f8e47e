"""The name a session is kept under: a hash of its id, never the id.

A directory listing, a backup, a Redis ``SCAN``, the lock table or a log
line then hands out nothing a browser could present: the cookie holds the
id, storage holds SHA-256 of it (base64url, 43 characters, the shape of an
id, so every check of a stored name still applies). An id is 256 random
bits, so the hash needs no key and cannot be turned back.
"""

from __future__ import annotations

import base64
import hashlib


def stored_name_bytes(session_id: str) -> bytes:
    """SHA-256 of the id, base64url without padding: the session's file name (bytes) or key part."""
    return base64.urlsafe_b64encode(hashlib.sha256(session_id.encode("ascii")).digest())[:43]


def stored_name(session_id: str) -> str:
    """``stored_name_bytes`` as a str (Redis keys, the lock table)."""
    return stored_name_bytes(session_id).decode("ascii")
