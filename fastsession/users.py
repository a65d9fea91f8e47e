"""The per-user index: which sessions a user has, so that they can be listed and revoked ("log out everywhere").

A session bound to a user (``store.bind_user(user_id)``) carries the user's
hash in its stored META (``u``) and has an entry in that user's index: on
files ``<directory>/.users/<user hash>/<stored name>``, on Redis the set
``<prefix>user:{<user hash>}`` and the hash ``<prefix>user:{<user hash>}:info``
(one hash tag: one slot on Cluster). The entry is written before the commit
that binds the session, so a committed bound session is always listed; an
entry whose session is gone (deleted, expired, a commit that failed) is
removed when the index is next read, once older than GRACE, and never
listed. User ids are stored only as hashes, like session ids.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import orjson

__all__ = ["UserSession", "user_hash"]

# An entry may be written a moment before its session's commit lands: only
# older entries whose session is missing are removed.
GRACE = 30.0


def user_hash(user_id: str) -> str:
    """The name a user is indexed under: SHA-256 of the user id (domain-separated from session ids), base64url."""
    if not isinstance(user_id, str) or not user_id:
        raise TypeError(f"a user id is a non-empty str, not {user_id!r}")
    digest = hashlib.sha256(b"fastsession user\x00" + user_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)[:43].decode("ascii")


def bound(meta: dict[str, Any] | None, user_id: str | None, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """A session's META once bound to ``user_id`` (``u``, ``m``; a creation time if it had none), or unbound (None)."""
    meta = dict(meta or ())
    if user_id is None:
        meta.pop("u", None)
        meta.pop("m", None)
    else:
        meta["u"] = user_hash(user_id)
        meta.setdefault("c", time.time())
        meta.pop("m", None)
        if metadata:
            orjson.dumps(metadata)  # TypeError now, not at the commit
            meta["m"] = metadata
    return meta or None


def entry(meta: dict[str, Any]) -> bytes:
    """The index entry of a session bound with ``meta``: its creation time, when it was added, the metadata."""
    return orjson.dumps({"created": meta.get("c"), "added": time.time(), "metadata": meta.get("m") or {}})


class UserSession:
    """One session of a user, as ``sessions_of`` lists it.

    ``session``: its stored name (a hash of its id, never the id);
    ``user``: the user's hash; ``created`` and ``last_seen``: seconds since
    the epoch (``last_seen`` None where the store cannot tell); ``metadata``:
    what the app gave ``bind_user`` (a user agent, an IP, ...).
    """

    __slots__ = ("created", "last_seen", "metadata", "session", "user")

    def __init__(
        self, session: str, user: str, created: float | None, last_seen: float | None, metadata: dict[str, Any]
    ) -> None:
        self.session, self.user, self.created, self.last_seen, self.metadata = (
            session,
            user,
            created,
            last_seen,
            metadata,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "user": self.user,
            "created": self.created,
            "last_seen": self.last_seen,
            "metadata": self.metadata,
        }

    def __repr__(self) -> str:
        return f"UserSession({self.session[:8]}…, created={self.created}, last_seen={self.last_seen})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserSession) and self.as_dict() == other.as_dict()
