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

A cap (``bind_user(..., max_sessions=N)``) is kept under a lock per user
(``cap_lock_name``, taken like a session's lock by stored name): the one
binding at a time counts the user's sessions, makes room (evicting the least
recently used, or refusing) and writes its entry, so N+1 logins at once
leave exactly N.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Generator
from typing import Any

import orjson

from . import events
from .errors import TooManySessions

__all__ = ["WHEN_FULL", "UserSession", "user_hash"]

# An entry may be written a moment before its session's commit lands: only
# older entries whose session is missing are removed.
GRACE = 30.0


def user_hash(user_id: str) -> str:
    """The name a user is indexed under: SHA-256 of the user id (domain-separated from session ids), base64url."""
    if not isinstance(user_id, str) or not user_id:
        raise TypeError(f"a user id is a non-empty str, not {user_id!r}")
    digest = hashlib.sha256(b"fastsession user\x00" + user_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)[:43].decode("ascii")


# What bind_user does when the user has max_sessions sessions already.
WHEN_FULL = ("evict", "refuse")


def check_cap(max_sessions: Any, when_full: Any) -> None:
    """ValueError/TypeError for a cap no binding could keep."""
    if max_sessions is not None and (isinstance(max_sessions, bool) or not isinstance(max_sessions, int)):
        raise TypeError(f"max_sessions must be a whole number or None, not {max_sessions!r}")
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1 (or None: no cap), not {max_sessions!r}")
    if when_full not in WHEN_FULL:
        raise ValueError(f"when_full must be one of {WHEN_FULL}, not {when_full!r}")


def chosen_cap(default: tuple[int, str] | None, max_sessions: Any, when_full: Any) -> tuple[int, str] | None:
    """bind_user's cap: the store's ``default`` where an argument is ``...``; (max_sessions, when_full) or None."""
    if max_sessions is ... and when_full is ...:
        return default
    if max_sessions is ...:
        max_sessions = default[0] if default is not None else None
    if when_full is ...:
        when_full = default[1] if default is not None else "evict"
    check_cap(max_sessions, when_full)
    return None if max_sessions is None else (max_sessions, when_full)


def cap_lock_name(user: str) -> str:
    """The stored name locked while a binding of ``user`` (a user hash) keeps the cap: no session's name."""
    digest = hashlib.sha256(b"fastsession user cap\x00" + user.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest)[:43].decode("ascii")


def make_room(
    core: Any, user_id: str, name: str, info: bytes, max_sessions: int, when_full: str
) -> Generator[tuple[Any, ...], Any, list[UserSession]]:
    """Under the user's cap lock: room for session ``name`` among ``max_sessions``, and its index entry written.

    ``core``: the StoreCore whose index and revoke routines are used. Other
    sessions beyond the cap go least recently used first (a login still in
    flight counts as just used); with ``when_full="refuse"``, TooManySessions
    instead and nothing changes. Returns the sessions evicted.
    """
    from .store import INDEX_ADD, INDEX_REMOVE, OPEN_STORED, RELEASE, REVOKE_HELD

    user = user_hash(user_id)
    lock = yield OPEN_STORED, cap_lock_name(user)
    try:
        live, pending = yield from core._do_index_of(user_id)
        others = [e for e in live + pending if e.session != name]
        excess = len(others) + 1 - max_sessions
        evicted: list[UserSession] = []
        if excess > 0:
            if when_full == "refuse":
                raise TooManySessions(
                    f"user {user[:8]}… has {len(others)} sessions already (max_sessions={max_sessions})",
                    user,
                    max_sessions,
                )
            now = time.time()
            # Least recently used first: last_seen where the store knows it, else the login time.
            used = {id(e): e.last_seen or e.created or 0.0 for e in live}
            in_flight = {id(e) for e in pending}
            used.update((key, now) for key in in_flight)
            # (ties, as file times within a clock tick: the older login first)
            for victim in sorted(others, key=lambda e: (used[id(e)], e.created or 0.0))[:excess]:
                if id(victim) in in_flight:  # its commit has not landed: marked, so that it never does
                    yield REVOKE_HELD, victim.session, user, True
                    yield INDEX_REMOVE, user, victim.session
                    if events.handlers:
                        events.emit("revoked", victim.session, user, None, "max_sessions")
                elif not (yield from core._do_revoke(victim, False, "max_sessions")):  # not bound to it any more
                    yield INDEX_REMOVE, user, victim.session
                evicted.append(victim)
        yield INDEX_ADD, user, name, info
    except BaseException:
        yield RELEASE, lock
        raise
    yield RELEASE, lock
    return evicted


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
