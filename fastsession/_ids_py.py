"""Session ids, pure-Python twin of ``_ids_c``."""

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
