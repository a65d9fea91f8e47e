"""A session's stored bytes: orjson, with errors that name what cannot be stored."""

from __future__ import annotations

from typing import Any, NoReturn

import orjson

from .errors import SerializationError, SessionTooLarge

__all__ = ["META", "encode", "too_large"]

# The stored document's reserved top-level key (fastsession.record); never in the dict an app sees.
META = "\x00fastsession"


def encode(session: dict[str, Any], max_size: int | None = None, meta: dict[str, Any] | None = None) -> bytes:
    """The session's orjson bytes (with ``meta`` under META, last); SerializationError naming the key that
    cannot be stored.

    Longer than ``max_size``: SessionTooLarge naming the largest keys.
    """
    try:
        body = orjson.dumps(session if meta is None else {**session, META: meta})
    except orjson.JSONEncodeError as exc:
        _name_unencodable(session, exc)
    if max_size is not None and len(body) > max_size:
        raise too_large(session, len(body), max_size)
    return body


def too_large(session: dict[str, Any], size: int, max_size: int) -> SessionTooLarge:
    """The error for a session of ``size`` bytes over ``max_size``, naming its three largest keys."""
    sizes = sorted(((key, len(orjson.dumps(value))) for key, value in session.items()), key=lambda kv: -kv[1])
    largest = tuple(sizes[:3])
    named = ", ".join(f"{key!r} ({n} bytes)" for key, n in largest)
    return SessionTooLarge(
        f"session is {size} bytes, over max_size={max_size}; largest keys: {named}; nothing was written",
        size,
        max_size,
        largest,
    )


def _name_unencodable(session: dict[str, Any], exc: Exception) -> NoReturn:
    """Raise SerializationError naming what in ``session`` orjson could not encode."""
    for key, value in session.items():
        if not isinstance(key, str):
            raise SerializationError(f"session key {key!r} is not a str") from exc
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError as inner:
            raise SerializationError(
                f"session value for key {key!r} ({type(value).__name__}) cannot be stored: {inner}"
            ) from exc
    raise SerializationError(f"session cannot be stored: {exc}") from exc
