"""What a stored record opens to: the app's data, and what the store keeps beside it (META).

A record is one JSON object: the app's keys, and under the reserved key
META what the store needs (``c``: creation time, for max_lifetime; ``u``
and ``m``: the bound user's hash and metadata, fastsession.users). Sealed
(``encrypt=True``, fastsession.sealed), it is ``{META: {"x": token}}``
(plus ``u``, an unauthenticated copy that only lets ``revoke`` check whom
a record names), and the token holds the whole record, META included: a
creation time or a user binding is as authenticated as the data.

Read by the sync and async stores and by the Django engine alike, so one
rule decides what opens: a record whose META is not what the store writes
reads as absent (logged), as does, with ``encrypt=True``, any record that
is not sealed for this id, unless an ``AcceptPlainUntil`` migration window
is still open.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from typing import Any

import orjson

from . import sealed
from .encoding import META
from .names import stored_name

__all__ = ["META", "AcceptPlainUntil"]

logger = logging.getLogger(__name__)

# META's keys and the types the store writes there.
META_TYPES: dict[str, tuple[type, ...]] = {"c": (int, float), "u": (str,), "m": (dict,), "x": (str,)}


class AcceptPlainUntil:
    """``encrypt=AcceptPlainUntil(when)``: seal every write, and until ``when`` also open records stored
    before encryption was turned on (each is sealed by its next write).

    ``when``: a UNIX time or an aware datetime. After it, such a record reads
    as absent, as with ``encrypt=True``: set it to the longest a session
    lives (max_age, or max_lifetime) after the switch, then drop it.
    """

    __slots__ = ("until",)

    def __init__(self, when: float | datetime.datetime) -> None:
        until = when.timestamp() if isinstance(when, datetime.datetime) else when
        if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
            raise ValueError(f"AcceptPlainUntil takes a UNIX time or a datetime, not {when!r}")
        self.until = float(until)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"AcceptPlainUntil({self.until!r})"


def plain_accepted(encrypt: Any) -> bool:
    """Whether a record with no seal opens under this ``encrypt`` setting (and now)."""
    return not encrypt or (isinstance(encrypt, AcceptPlainUntil) and time.time() < encrypt.until)


def valid_meta(meta: Any) -> bool:
    """Whether ``meta`` is what the store writes under META: a dict whose known keys hold their types."""
    if type(meta) is not dict:
        return False
    for key, types in META_TYPES.items():
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return False
    created = meta.get("c")
    return created is None or math.isfinite(created)


def opened(
    session_id: str, data: dict[str, Any], encrypt: Any
) -> tuple[dict[str, Any], dict[str, Any] | None, bytes | None] | None:
    """(the app's data, META, the plain encoding a commit compares against) of a record just read; None
    (logged) when it does not open.

    The plain encoding is None when the stored bytes are it, b"" for a plain
    record that ``encrypt`` must seal at the next commit.
    """
    meta = data.pop(META, None)
    if meta is not None and not valid_meta(meta):
        logger.warning(
            "session %s… has malformed metadata (not written by fastsession): read as absent",
            stored_name(session_id)[:8],
        )
        return None
    if meta is not None and "x" in meta:
        return _unsealed(session_id, meta, encrypt)
    if not encrypt:
        return data, meta, None
    if plain_accepted(encrypt):
        return data, meta, b""
    logger.warning(
        "session %s… is not sealed and encrypt=True: read as absent (planted, or stored before "
        "encryption; see AcceptPlainUntil)",
        stored_name(session_id)[:8],
    )
    return None


def _unsealed(
    session_id: str, meta: dict[str, Any], encrypt: Any
) -> tuple[dict[str, Any], dict[str, Any] | None, bytes | None] | None:
    sealed.require()
    plain = sealed.unseal(session_id, stored_name(session_id), meta["x"])
    try:
        data = orjson.loads(plain) if plain is not None else None
    except orjson.JSONDecodeError:
        data = None
    if type(data) is not dict:
        logger.warning(
            "sealed session %s… does not open (tampered, or not its record): read as absent",
            stored_name(session_id)[:8],
        )
        return None
    if META in data:
        inner = data.pop(META)
        if not valid_meta(inner):
            logger.warning("sealed session %s… holds malformed metadata", stored_name(session_id)[:8])
            return None
        inner = inner or None
    elif plain_accepted(encrypt):  # sealed by 0.2.0, whose META was outside the seal: a migration reads it
        inner = {key: value for key, value in meta.items() if key != "x"} or None
    else:
        logger.warning(
            "session %s… was sealed by 0.2.0 (its metadata is not authenticated): read as absent "
            "(see AcceptPlainUntil)",
            stored_name(session_id)[:8],
        )
        return None
    return data, inner, encode_plain(data, inner)


def encode_plain(data: dict[str, Any], meta: dict[str, Any] | None) -> bytes:
    """The bytes of ``data`` with ``meta`` under META (last), as a plain record stores them."""
    return orjson.dumps(data if meta is None else {**data, META: meta})


def sealed_document(session_id: str, data: dict[str, Any], meta: dict[str, Any] | None) -> bytes:
    """The stored document of ``data`` and ``meta``, both sealed under the id's key."""
    token = sealed.seal(session_id, stored_name(session_id), orjson.dumps({**data, META: meta or {}}))
    outside: dict[str, Any] = {"x": token}
    if meta is not None and "u" in meta:
        outside["u"] = meta["u"]
    return orjson.dumps({META: outside})


def bound_to(data: dict[str, Any]) -> str | None:
    """The user hash a stored record (as read, not opened) names, for a revoke that has no id; None if none."""
    meta = data.get(META)
    user = meta.get("u") if type(meta) is dict else None
    return user if isinstance(user, str) else None
