"""Session ids and their stored names, pure-Python twin of ``_ids_c``."""

from __future__ import annotations

import hashlib
import os
import re
from base64 import urlsafe_b64encode

_VALID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    """32 bytes from the OS CSPRNG (getrandom), base64url without padding: 43 characters."""
    return urlsafe_b64encode(os.urandom(32))[:43].decode("ascii")


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a str of exactly 43 characters of ``[A-Za-z0-9_-]``."""
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def stored_name(session_id: str) -> str:
    """SHA-256 of ``session_id``, base64url without padding (43 characters): what storage keeps it under."""
    return urlsafe_b64encode(hashlib.sha256(session_id.encode("ascii")).digest())[:43].decode("ascii")


def session_path(directory: bytes, key: object) -> bytes | None:
    """``<directory><name[:2]>/<name>`` for the stored name of ``key``; None when ``key`` is not an id."""
    if not is_valid_id(key):
        return None
    name = stored_name(key).encode("ascii")  # type: ignore[arg-type]
    return directory + name[:2] + b"/" + name
