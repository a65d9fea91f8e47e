"""The facade: WebStack's documented SessionStore, over a storage backend.

The store is one request's view of one user's session: it reads the cookie
through the transaction, locks and loads the session, and at ``close()``
writes it back if its encoded bytes changed. Storage (files, Redis) is a
backend with five calls: open (lock), open_load (lock and read), save,
release, delete, and peek (read without a lock, for ``locking="commit"``).
The logic is StoreCore's, free of I/O; BaseStore is its sync face,
fastsession.aio's stores its async one.

Locking: ``"request"`` (the default) holds the session's lock from
get_session to close, so overlapping requests of one user run one after the
other. ``"commit"`` reads without a lock; at close, an unchanged session is
left alone (no lock at all), a changed one is written under the lock if the
stored version is still the one read, else merged per key (fastsession.merge).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator
from typing import Any, Literal, TypeVar, overload

import orjson

from . import _kernels, events, record, sealed
from .checks import check_seconds
from .encoding import encode as encode  # (re-exported: adapters import it from here)
from .errors import LockTimeout, SerializationError, SessionError, SessionRevoked, SessionTooLarge
from .files import FileBackend
from .merge import Resolver, check_on_conflict, merge
from .names import stored_name
from .record import META as META  # (re-exported: record.META is where it lives)
from .session import CLOSED, Session
from .users import UserSession, bound, check_cap, chosen_cap, entry, make_room, user_hash

__all__ = ["BaseStore", "OnFiles", "SessionStore", "StoreCore", "encode", "shared_backend"]

logger = logging.getLogger(__name__)


def created_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    """``meta`` with a creation time: its own, or now (a new session, or one first seen since max_lifetime)."""
    return meta if meta is not None and "c" in meta else dict(meta or (), c=time.time())


def outlived(created: float | None, max_lifetime: float | None) -> bool:
    """Whether a session created at ``created`` is older than ``max_lifetime`` (None: no such limit)."""
    return max_lifetime is not None and created is not None and time.time() - created > max_lifetime


def check_max_size(max_size: Any) -> None:
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
        raise ValueError(f"max_size must be a positive number of bytes, not {max_size!r}")


def write_limit(max_size: int | None, backend: Any) -> int:
    """``max_size``, or less: the most bytes ``backend`` reads back as a session (its ``max_record``)."""
    limit: int = backend.max_record
    return limit if max_size is None or max_size > limit else max_size


# The core asks its face for one backend call at a time: it yields
# (method name, *arguments) and is sent the result, or has the error thrown
# in. The sync face (run) calls the backend at once; the async face
# (fastsession.aio) awaits it. One core, so a fix lands in both.
# OPEN_LOAD is OPEN then LOAD in one call (the lock released if the read fails).
# PEEK reads without a lock: (a handle holding nothing, what load gives).
OPEN, OPEN_LOAD, SAVE, RELEASE, DELETE, PEEK = "open", "open_load", "save", "release", "delete", "peek"
# The per-user index (fastsession.users): OPEN_STORED locks by stored name
# (what the index lists); INDEX_* keep a user's entries.
OPEN_STORED, INDEX_ADD, INDEX_REMOVE, INDEX_LIST = "open_stored", "index_add", "index_remove", "index_list"
# Revoking: LOAD reads what a handle locked; REVOKE_HELD revokes a session another request holds.
LOAD, REVOKE_HELD, EXISTS = "load", "revoke_held", "exists"
LOCKING = ("request", "commit")

T = TypeVar("T")
S = TypeVar("S", bound="BaseStore")  # a store's own class, kept by ``with``
# A core routine: yields backend calls, is sent their results, returns its own.
Steps = Generator[tuple[Any, ...], Any, T]


# The driver of the routines (the sync face, the Redis backend): _drive_c, or its pure twin _drive_py.
run = _kernels.ACTIVE.run


class StoreCore:
    """The facade's logic, free of I/O: what a request's store decides, and which backend calls it needs.

    Its ``_do_*`` routines are generators of backend calls (see ``run``);
    the faces (BaseStore here, fastsession.aio's stores) drive them.
    """

    session_class = Session  # what get_session returns (adapters use a subclass)

    __slots__ = (
        "_born",
        "_closed",
        "_cookie_after",
        "_doomed",
        "_doomed_ids",
        "_expired",
        "_handle",
        "_indexed",
        "_meta",
        "_optimistic",
        "_plain",
        "_previous",
        "_retired",
        "_session",
        "_stamp",
        "_stored",
        "accessed",
        "backend",
        "cap",
        "encrypt",
        "locking",
        "max_lifetime",
        "max_size",
        "on_conflict",
        "session_cookie_name",
        "trans",
    )

    def __init__(
        self,
        trans: Any,
        backend: Any,
        session_cookie_name: str = "SID",
        locking: str = "request",
        on_conflict: Resolver = "raise",
        max_size: int | None = None,
        max_lifetime: float | None = None,
        encrypt: bool = False,
        max_sessions: int | None = None,
        when_full: str = "evict",
    ) -> None:
        if locking != "request" or on_conflict != "raise":  # (the defaults cost no check per request)
            if locking not in LOCKING:
                raise ValueError(f"locking must be one of {LOCKING}, not {locking!r}")
            check_on_conflict(on_conflict)
        if max_size is not None:
            check_max_size(max_size)
        # Bytes of the encoded session a commit may write: never more than the backend reads back (a
        # session written and then read as corrupt would start its user over).
        limit = backend.max_record
        self.max_size = limit if max_size is None or max_size > limit else max_size
        if max_lifetime is not None:
            check_seconds("max_lifetime", max_lifetime)
        self.max_lifetime = max_lifetime  # seconds from creation after which a session is gone, however used
        if max_sessions is not None or when_full != "evict":
            check_cap(max_sessions, when_full)
        # bind_user's default cap on a user's sessions (fastsession.users.make_room): (max_sessions, when_full)
        self.cap = None if max_sessions is None else (max_sessions, when_full)
        self._meta: dict[str, Any] | None = None  # the session in hand's META (None: none stored, none needed)
        self._indexed: tuple[str, str] | None = None  # (user hash, stored name) of the stored record's entry
        # Seal the data under a key derived from the id (fastsession.sealed); an AcceptPlainUntil also opens
        # records stored before encryption, until its time (fastsession.record).
        self.encrypt: Any = False
        if encrypt:
            sealed.require()
            self.encrypt = encrypt if isinstance(encrypt, record.AcceptPlainUntil) else True
        # What a commit compares against when the stored bytes are not the plain encoding: the plain
        # encoding of an opened sealed record; b"" for a plain record encrypt=True must seal.
        self._plain: bytes | None = None
        self.locking = locking
        self.on_conflict = on_conflict
        self._optimistic = locking == "commit"  # this request reads without a lock
        self._cookie_after: str | None = None  # set once closed: what response_cookie answers then
        self.trans = trans
        self.session_cookie_name = session_cookie_name
        self.backend = backend  # what the face's calls go to; its .kernels give ids
        self.accessed = False  # get_session or expire_session was called: responses vary by cookie
        self._session: Session | None = None
        self._handle: Any = None
        self._stored: bytes | None = None  # the bytes in storage; None for a new id
        self._stamp = 0.0  # what the backend's load gave besides the data (files: mtime), for release
        self._retired: Any = None  # after regenerate_id, the old id's handle (optimistic: its id), deleted at close
        self._doomed: list[Any] | None = None  # (handle held for expiry, the event to tell then or None)
        self._doomed_ids: list[tuple[str, str, str]] | None = None  # (id, event, reason) to expire at close
        self._previous: str | None = None  # after regenerate_id of a stored session: the old id's stored name
        self._expired = False
        self._closed = False
        self._born = _generation  # which fork of the process made it: a child never releases its parent's locks

    def _do_get_session(self, create: Any) -> Steps[Session | None]:
        if self._closed:
            self._check_open()
        self.accessed = True
        return self._do_open(None if self._expired else self._cookie_id(), create, True)

    def expire_session(self) -> None:
        """Mark the session named by the cookie (and the one in hand) for removal at close()."""
        self._check_open()
        self._expire("deleted", "logout")

    def _expire(self, kind: str, reason: str) -> None:
        """expire_session, told to event handlers at close as ``kind`` for ``reason``."""
        self.accessed = True
        self._expired = True
        session = self._session
        if session is not None:
            if self._optimistic:  # nothing held: locked at close, like an id from the cookie
                self._doom(session.session_id, kind, reason)
            else:
                meta = self._meta
                # (an event only for a session that is stored: a new one never was)
                told = (
                    None
                    if self._stored is None
                    else (kind, session.session_id, meta.get("u") if meta else None, reason)
                )
                self._doomed = (self._doomed or []) + [(self._handle, told)]
            self._drop_current()
            return
        cookie_id = self._cookie_id()
        if cookie_id is not None:
            self._doom(cookie_id, kind, reason)

    def _doom(self, session_id: str, kind: str, reason: str) -> None:
        """Expire the session of ``session_id`` at close (locked then); told to event handlers as ``kind``."""
        self._doomed_ids = (self._doomed_ids or []) + [(session_id, kind, reason)]

    def _do_close(self) -> Steps[None]:
        if self._closed:
            return
        self._closed = True
        session = self._session
        if session is not None:
            session.__class__ = CLOSED[type(session)]  # what it holds now is stored: a later change raises
        if self._optimistic:
            stored_new, error = False, None
            try:
                stored_new = yield from self._do_commit_optimistic()
            except SessionRevoked:
                self._expired = True
            except BaseException as exc:  # re-raised below, once nothing is left locked
                error = exc
        else:
            session_meta = self._meta
            call, stored_new, error = self._commit_plan()
            if call is not None and call[0] == SAVE and self._retired is not None:
                # regenerate_id: the data goes on under the new id only if the old record still stands
                # (a revoke_all while this request held it leaves none).
                if not (yield EXISTS, self._retired):
                    call, stored_new, self._expired = (RELEASE, call[1]), False, True
            if call is not None:
                try:
                    if session_meta is None and self._indexed is None:  # bound to no user: the one call
                        yield call
                    else:
                        yield from self._saved_indexed(call, session, session_meta)  # type: ignore[arg-type]
                except SessionRevoked:  # logged out everywhere while this request ran: it ends logged out
                    stored_new, self._expired = False, True
                except BaseException as exc:  # re-raised below, once nothing is left locked
                    stored_new, error = False, exc
        if self._retired is not None:
            retired, self._retired = self._retired, None
            # Only once the new id holds the data may the old one go.
            if not self._optimistic:
                yield (RELEASE if error else DELETE), retired
            elif error is None:
                yield from self._do_expire(retired)
        doomed, self._doomed = self._doomed or (), None
        for handle, told in doomed:
            yield DELETE, handle
            if told is not None and events.handlers:
                events.emit(told[0], stored_name(told[1]), told[2], None, told[3])
        doomed_ids, self._doomed_ids = self._doomed_ids or (), None
        for session_id, kind, reason in doomed_ids:
            yield from self._do_expire(session_id, kind, reason)
        self._closed_with(session, stored_new, error)

    def _closed_with(self, session: Session | None, stored_new: bool, error: BaseException | None) -> None:
        """close()'s end, once nothing is left locked (the request path's too): the event of a new id stored,
        what the response's cookie becomes, and the error to raise."""
        if stored_new and events.handlers:
            meta = self._meta
            events.emit(
                "regenerated" if self._previous else "created",
                stored_name(session.session_id),  # type: ignore[union-attr]
                meta.get("u") if meta else None,
                self._previous,
            )
        self._cookie_after = session.session_id if session is not None and stored_new else "" if self._expired else None
        if self._expired and not stored_new:
            self.trans.delete_cookie(self.session_cookie_name)
        if error is not None:
            raise error

    def _saved_indexed(self, call: tuple[Any, ...], session: Session, meta: dict[str, Any] | None) -> Steps[Any]:
        """Make ``call`` (a SAVE, or a release); a SAVE that changes the user binding updates the index around it.

        The entry is written first, under the session's lock, so a committed
        bound session is always listed (and revoke_all, which takes the lock,
        finds the commit done); the old entry goes once the commit has landed.
        """
        add = remove = None
        if call[0] == SAVE:
            add, remove = self._index_plan(session, meta)
        if add is not None:
            try:
                yield add
            except BaseException:
                yield RELEASE, call[1]
                raise
        try:
            yield call
        except SessionRevoked:  # nothing stored: the entry just written names nothing
            if add is not None:
                yield INDEX_REMOVE, add[1], add[2]
            raise
        if remove is not None:
            try:
                yield remove
            except SessionError as exc:  # a stale entry: cleaned when the index is next read
                logger.warning("could not remove a user index entry: %s", exc)

    def _do_commit_optimistic(self) -> Steps[bool]:
        """close()'s commit for a session read without a lock; whether a new id got stored.

        Unchanged: no lock (a touch when max_age asks). Changed: lock, read
        again; written if the stored version is still the one read, else the
        merge of both is (or SessionConflict, nothing written). A session
        deleted meanwhile (a logout elsewhere, expiry) is not brought back.
        """
        session, handle, stored, stamp, meta = self._session, self._handle, self._stored, self._stamp, self._meta
        if session is None:
            return False
        self._drop_current()
        body = encode(session, self.max_size, meta)  # too large: nothing locked, nothing written
        if stored is None and not session:  # new and empty: bots must not fill the disk
            return False
        if self._unchanged(body, stored):
            yield RELEASE, handle, stamp
            return False
        retired, old_handle = self._retired, None
        if retired is not None:  # regenerate_id: the old record, locked, must still stand (not revoked meanwhile)
            old_handle, old_loaded = yield OPEN_LOAD, retired
            if old_loaded is None:
                self._retired = None
                yield RELEASE, old_handle
                raise SessionRevoked(
                    f"session {stored_name(retired)[:8]}… was deleted before its new id was stored: not stored"
                )
        try:
            stored_new = yield from self._commit_changed(session, stored, meta, body)
        except BaseException:
            if old_handle is not None:
                self._retired = None
                yield RELEASE, old_handle
            raise
        if old_handle is not None:  # the new id holds the data: the old one goes
            self._retired = None
            yield DELETE, old_handle
        return stored_new

    def _commit_changed(
        self, session: Session, stored: bytes | None, meta: dict[str, Any] | None, body: bytes
    ) -> Steps[bool]:
        """_do_commit_optimistic's write of a changed session: locked, merged if the stored version moved."""
        data: dict[str, Any] = session
        handle, loaded = yield OPEN_LOAD, session.session_id
        current = loaded[1] if loaded is not None else None
        if current != stored:
            try:
                if current is None:
                    logger.info(
                        "session %s… (stored name) was deleted while a request changed it; it stays deleted",
                        stored_name(session.session_id)[:8],
                    )
                    yield RELEASE, handle
                    return False
                base = orjson.loads(self._plain or stored) if stored is not None else {}
                base_meta = base.pop(META, None)
                theirs_opened = record.opened(session.session_id, loaded[0], self.encrypt)
                if theirs_opened is None:  # what is stored now does not open: left as it is
                    yield RELEASE, handle
                    return False
                theirs, their_meta, _ = theirs_opened
                data = merge(base, session, theirs, self.on_conflict)
                meta = meta if meta != base_meta else their_meta
                body = encode(data, self.max_size, meta)
            except BaseException:
                yield RELEASE, handle
                raise
        if self.encrypt:
            body = self._sealed(session.session_id, data, meta)
        yield from self._saved_indexed((SAVE, handle, body), session, meta)
        return stored is None

    def _do_expire(self, session_id: str, kind: str | None = None, reason: str | None = None) -> Steps[None]:
        """Delete the session of ``session_id``; with event handlers, tell them ``kind`` if it was there."""
        told, user = kind is not None and bool(events.handlers), None
        current = self._session
        if current is not None and current.session_id == session_id:
            handle = self._handle  # held by this very store: waiting for it would deadlock
            self._drop_current()
            if self._optimistic:  # read without a lock: it is locked like any other
                handle = yield OPEN, session_id
        elif told:  # read first: whether there was a session, and whose
            handle, loaded = yield OPEN_LOAD, session_id
            told = loaded is not None
            user = record.bound_to(loaded[0]) if loaded is not None else None
        else:
            handle = yield OPEN, session_id
        yield DELETE, handle
        if told:
            events.emit(kind, stored_name(session_id), user, None, reason)  # type: ignore[arg-type]

    def _do_load(self, session_id: str, create: Any) -> Steps[Session | None]:
        current = self._session
        if current is not None:
            if current.session_id == session_id:
                return _done(current)
            raise SessionError("this store already holds another session; close() it before opening one more")
        self._check_open()
        return self._do_open(session_id, create, False)

    def _do_open(self, session_id: str | None, create: Any, fresh: bool) -> Steps[Session | None]:
        """Lock and load the session of ``session_id``; None when absent (or no id) and not ``create``.

        Absent with ``create``: a session under a fresh id when ``fresh``
        (get_session: an unknown id is never adopted), else an empty one under
        ``session_id`` (_get_session).
        """
        if session_id is None:
            return (yield from self._do_new(create))
        handle, loaded = yield (PEEK if self._optimistic else OPEN_LOAD), session_id
        return (yield from self._do_opened(session_id, create, fresh, handle, loaded))

    def _do_opened(
        self, session_id: str, create: Any, fresh: bool, handle: Any, loaded: tuple[dict[str, Any], bytes, float] | None
    ) -> Steps[Session | None]:
        """_do_open once the session of ``session_id`` is locked (optimistic: peeked) and read as ``loaded``."""
        optimistic = self._optimistic
        if loaded is not None:
            data, stored, stamp = loaded
            meta = None
            self._plain = None
            if META in data or self.encrypt:
                try:
                    opened = record.opened(session_id, data, self.encrypt)
                except BaseException:  # (cryptography missing, ...): the lock goes with the error
                    if not optimistic:
                        yield RELEASE, handle
                    raise
                if opened is None:  # does not open: as absent (and never overwritten unread)
                    loaded = None
                else:
                    data, meta, self._plain = opened
        if loaded is not None:
            if meta is not None and "u" in meta:
                self._indexed = (meta["u"], stored_name(session_id))
            if self.max_lifetime is None:
                return self._hold(self.session_class(session_id, data), handle, stored, stamp, meta)
            meta = created_meta(meta)
            if not outlived(meta["c"], self.max_lifetime):
                return self._hold(self.session_class(session_id, data), handle, stored, stamp, meta)
            # Past its absolute lifetime: gone for good, however recently used.
            if optimistic:
                self._doom(session_id, "expired", "lifetime")
            else:
                yield DELETE, handle
                handle = None
                if events.handlers:
                    events.emit("expired", stored_name(session_id), meta.get("u"), None, "lifetime")
        if create and not fresh:
            if handle is None:  # deleted just now (past max_lifetime): locked again, empty
                handle = yield OPEN, session_id
            return self._hold(self.session_class(session_id, {}), handle, None, 0.0, self._new_meta())
        if not optimistic and handle is not None:
            yield RELEASE, handle
        return (yield from self._do_new(create))

    def _do_new(self, create: Any) -> Steps[Session | None]:
        """A session under a fresh id, its cookie set (None when not ``create``)."""
        if not create:
            return None
        new_id = self._get_session_identifier()
        # A fresh 256-bit id names no stored session: lock it (optimistic: at
        # commit), skip the read.
        handle = None if self._optimistic else (yield OPEN, new_id)
        session = self._hold(self.session_class(new_id), handle, None, 0.0, self._new_meta())
        self.trans.set_cookie_value(self.session_cookie_name, new_id)
        return session

    # -- the per-user index (fastsession.users) --------------------------------------------------

    def _do_bind_user(
        self, user_id: str | None, metadata: dict[str, Any] | None, cap: tuple[int, str] | None
    ) -> Steps[None]:
        """Bind the session (made if there is none) to ``user_id``, or unbind it (None); stored at close().

        ``cap``: (max_sessions, when_full) (users.chosen_cap), None for no
        cap. With a cap the user's other sessions are counted now, room made
        (or TooManySessions, nothing bound) and the entry written.
        """
        if self._session is None:
            yield from self._do_get_session(True)
        meta = bound(self._meta, user_id, metadata)
        if cap is not None and user_id is not None:
            name = stored_name(self._session.session_id)  # type: ignore[union-attr]
            # The entry make_room writes now is written again by the commit: a request slower than
            # users.GRACE would have this one swept by a listing meanwhile (its session not stored yet).
            yield from make_room(self, user_id, name, entry(meta), *cap)  # type: ignore[arg-type]
        self._meta = meta
        indexed = self._indexed
        if indexed is not None and meta is not None and meta.get("u") == indexed[0]:
            self._indexed = None  # bound again: the commit writes the listed entry again (its metadata may be new)

    def _do_sessions_of(self, user_id: str) -> Steps[list[UserSession]]:
        """The user's sessions (UserSession), newest first."""
        live, _ = yield from self._do_index_of(user_id)
        return live

    def _do_index_of(self, user_id: str) -> Steps[tuple[list[UserSession], list[UserSession]]]:
        """(the user's sessions, entries whose commit may not have landed yet), each newest first."""
        user = user_hash(user_id)
        found = yield INDEX_LIST, user
        live: list[UserSession] = []
        pending: list[UserSession] = []
        for name, info, last_seen, there in found:
            created = info.get("created")
            if isinstance(created, bool) or not isinstance(created, (int, float)):
                created = None  # (an entry not written by fastsession lists no creation time)
            if outlived(created, self.max_lifetime):
                continue  # past its lifetime: gone at its next read
            metadata = info.get("metadata")
            listed = UserSession(name, user, created, last_seen, metadata if type(metadata) is dict else {})
            (live if there else pending).append(listed)
        newest_first = sorted(live, key=lambda e: -(e.created or 0)), sorted(pending, key=lambda e: -(e.created or 0))
        return newest_first

    def _do_revoke(self, entry: UserSession, pending: bool = False, reason: str = "revoke") -> Steps[bool]:
        """Delete the session of ``entry`` if it is bound to ``entry.user``, and its index entry; whether it was.

        Never waits: a session another request holds is revoked at once (its
        data goes, and that request's commit writes nothing: REVOKE_HELD).
        ``pending``: the user's own index lists it as a commit about to land
        (a login mid-request): held, it is revoked though nothing is stored yet.
        ``reason``: what event handlers are told ("revoke", "revoke_all", "max_sessions").
        """
        current = self._session
        if current is not None and stored_name(current.session_id) == entry.session:
            if self._meta is None or self._meta.get("u") != entry.user:
                return False
            self._expire("revoked", reason)  # this very request's: deleted at close, never waited for
            yield INDEX_REMOVE, entry.user, entry.session
            return True
        try:
            handle = yield OPEN_STORED, entry.session, 0
        except LockTimeout:  # held by a request (perhaps this one's own, through another store)
            revoked = yield REVOKE_HELD, entry.session, entry.user, pending
        else:
            try:
                loaded = yield LOAD, handle
            except BaseException:
                yield RELEASE, handle
                raise
            revoked = loaded is not None and record.bound_to(loaded[0]) == entry.user
            yield (DELETE if revoked else RELEASE), handle
        if revoked:
            yield INDEX_REMOVE, entry.user, entry.session
            if events.handlers:
                events.emit("revoked", entry.session, entry.user, None, reason)
        return bool(revoked)

    def _do_revoke_all(self, user_id: str, keep: Any) -> Steps[int]:
        """Revoke every session of ``user_id`` but ``keep`` (a session id, a UserSession, or a list of them); how
        many."""
        kept = {
            item.session if isinstance(item, UserSession) else stored_name(item)
            for item in (keep if isinstance(keep, (list, tuple, set)) else [keep])
            if item
        }
        count = 0
        for _ in range(3):  # again: a session bound while this ran (a racing login) goes too
            live, pending = yield from self._do_index_of(user_id)
            # A pending entry's commit holds the session's lock: taking it waits for that commit to land.
            entries = [e for e in live + pending if e.session not in kept]
            if not entries:
                break
            for listed in entries:
                revoked = yield from self._do_revoke(listed, listed in pending, "revoke_all")
                if not revoked:  # not bound to this user (any more): the entry is stale
                    yield INDEX_REMOVE, listed.user, listed.session
                if revoked and listed in live:
                    count += 1
        return count

    def _get_session_identifier(self) -> str:
        """A new session id: 32 bytes from the OS CSPRNG, base64url, 43 characters."""
        return self.backend.kernels.new_session_id()  # type: ignore[no-any-return]

    def _do_regenerate_id(self) -> Steps[str]:
        session = self._session
        if session is None:
            session = yield from self._do_get_session(True)
            assert session is not None  # created
        new_id = self._get_session_identifier()
        if self._stored is not None:
            self._previous = stored_name(session.session_id)
        if self._optimistic:  # nothing held: the old id is locked and deleted once the new one is stored
            new_handle = None
            if self._stored is not None:
                self._retired = session.session_id
        else:
            new_handle = yield OPEN, new_id
            if self._stored is not None:
                self._retired = self._handle
            else:  # never stored: nothing to delete
                yield RELEASE, self._handle
        session.session_id = new_id
        self._hold(session, new_handle, None, 0.0, self._meta)  # the creation time stays (max_lifetime)
        self.trans.set_cookie_value(self.session_cookie_name, new_id)
        return new_id

    def _do_rollback(self) -> Steps[None]:
        if self._closed:
            return
        self._closed = True
        self._cookie_after = "" if self._expired else None
        if self._session is not None:
            self._session.__class__ = CLOSED[type(self._session)]
        held = [] if self._optimistic else [self._handle] if self._session is not None else []
        held += [self._retired] if self._retired is not None and not self._optimistic else []
        held += [handle for handle, _ in self._doomed or ()]
        self._drop_current()
        self._retired = self._doomed = self._doomed_ids = None
        error: BaseException | None = None
        for handle in held:  # every lock goes, even when releasing one fails
            try:
                yield RELEASE, handle
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    @property
    def closed(self) -> bool:
        """Whether close() or rollback() has run."""
        return self._closed

    def _settled_cookie(self) -> str | Literal[False] | None:
        """What response_cookie answers without a call to storage; False when it needs one (a new session still
        empty is dropped: its lock goes first)."""
        if self._closed:  # closed early (the view released it): what close() decided
            return self._cookie_after
        session = self._session
        if session is not None and self._stored is None:
            if session or self._retired is not None:
                return session.session_id
            return False
        return "" if self._expired else None

    def _do_response_cookie(self) -> Steps[str | None]:
        cookie = self._settled_cookie()
        if cookie is not False:
            return cookie
        handle = self._handle
        self._drop_current()
        if not self._optimistic:
            yield RELEASE, handle
        return "" if self._expired else None

    def read_only(self) -> None:
        """Take no lock for this request (call it before get_session).

        The session is read without a lock; if the request changes it after
        all, the change is committed as with ``locking="commit"`` (merged with
        what was stored meanwhile), never lost.
        """
        if self._session is not None and not self._optimistic:
            raise SessionError("read_only() comes before get_session(): the session is locked already")
        self._optimistic = True

    # -- internals ------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("the session store is closed")

    def _cookie_id(self) -> str | None:
        """The cookie's session id, or None when there is none or it is not a valid id."""
        cookie = self.trans.get_cookie(self.session_cookie_name)
        if cookie is None:
            return None
        try:
            value = cookie.value
        except AttributeError:  # a str would make a new session on every request, without a word
            raise TypeError(
                "trans.get_cookie() must return None or an object with .value (WebStack's Cookie; "
                f"fastsession.wsgi.Cookie), not {type(cookie).__name__}"
            ) from None
        return value if self.backend.kernels.is_valid_id(value) else None

    def _hold(
        self, session: Session, handle: Any, stored: bytes | None, stamp: float, meta: dict[str, Any] | None = None
    ) -> Session:
        self._session, self._handle, self._stored, self._stamp, self._meta = session, handle, stored, stamp, meta
        return session

    def _new_meta(self) -> dict[str, Any] | None:
        """A new session's META: its creation time when max_lifetime needs it."""
        return None if self.max_lifetime is None else created_meta(None)

    def _drop_current(self) -> None:
        self._session = self._handle = self._stored = None

    def _commit_plan(self) -> tuple[tuple[Any, ...] | None, bool, BaseException | None]:
        """How the session in hand ends: (the one backend call, whether a new id gets stored, an error to raise).

        The write if it changed, else the release; for a value that cannot be
        encoded, the release and the SerializationError.
        """
        session, handle, stored, stamp, meta = self._session, self._handle, self._stored, self._stamp, self._meta
        if session is None:
            return None, False, None
        self._drop_current()
        try:
            body = encode(session, self.max_size, meta)
        except (SerializationError, SessionTooLarge) as exc:
            return (RELEASE, handle), False, exc
        if stored is None and not session:  # new and empty: bots must not fill the disk
            return (RELEASE, handle), False, None
        plain = self._plain
        if stored is not None and body == (stored if plain is None else plain):  # unchanged (see _unchanged)
            return (RELEASE, handle, stamp), False, None
        if self.encrypt:
            body = self._sealed(session.session_id, session, meta)
        return (SAVE, handle, body), stored is None, None

    def _unchanged(self, body: bytes, stored: bytes | None) -> bool:
        """Whether ``body`` (the plain encoding) is what is stored (for a sealed record: what it opened to)."""
        plain = self._plain
        return stored is not None and body == (stored if plain is None else plain)

    def _sealed(self, session_id: str, data: dict[str, Any], meta: dict[str, Any] | None) -> bytes:
        """The stored document of ``data`` and its META, sealed under the id's key (fastsession.record)."""
        return record.sealed_document(session_id, data, meta)

    def _index_plan(
        self, session: Session, meta: dict[str, Any] | None
    ) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
        """The index calls around a commit of ``session``: the entry to add before it, the one to remove after."""
        indexed = self._indexed
        target = (meta["u"], stored_name(session.session_id)) if meta is not None and "u" in meta else None
        if target == indexed:
            return None, None
        add = (INDEX_ADD, target[0], target[1], entry(meta)) if target is not None else None  # type: ignore[arg-type]
        return add, (INDEX_REMOVE, *indexed) if indexed is not None else None


# Bumped in every forked child: a store made before a fork() holds its locks for the parent, and a child
# that drops it (at its exit) must not release them under the parent's feet.
_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def _holds_locks(store: StoreCore) -> bool:
    """Whether ``store`` is unclosed and holds a lock of this process's (False for one whose __init__ raised)."""
    try:
        return (
            not store._closed
            and not store._optimistic  # read without a lock: nothing held until close() commits
            and store._born == _generation
            and (store._handle is not None or store._retired is not None or bool(store._doomed))
        )
    except AttributeError:  # never fully made: never held anything
        return False


def _dropped_unclosed(store: StoreCore, run: Callable[[Steps[None]], Any]) -> None:
    """Roll back a store garbage-collected without close() (with ``run``, a sync driver), with a warning."""
    try:
        session = store._session
        name = stored_name(session.session_id)[:8] if session is not None else "?"
        run(store._do_rollback())
        logger.warning(
            "a store was dropped without close() or rollback(); session %s…'s lock was released "
            "and its changes discarded (close the store: use `with`)",
            name,
        )
    except Exception:  # (at interpreter exit, or a backend gone): nothing more can be done here
        pass


def _done(value: Any) -> Steps[Any]:
    """Steps that make no call and give ``value``."""
    return value
    yield  # a generator


class BaseStore(StoreCore):
    """The sync face of the facade, over a backend whose calls return when done."""

    __slots__ = ()

    def _run(self, steps: Steps[T]) -> T:
        backend = self.backend
        return backend.kernels.run(backend, steps)  # type: ignore[no-any-return]

    # -- WebStack's documented methods ---------------------------------

    @overload
    def get_session(self, create: Literal[True, 1]) -> Session: ...
    @overload
    def get_session(self, create: Any) -> Session | None: ...

    def get_session(self, create: Any) -> Session | None:
        """The session of this transaction; a new one with a fresh id when ``create``, else None."""
        session = self._session
        if session is not None:
            return session
        backend = self.backend  # (driven inline: the two calls every request makes)
        found: Session | None = backend.kernels.open_request(self, create)  # the common request's own path
        if found is NotImplemented:
            found = backend.kernels.run(backend, self._do_get_session(create))
        return found

    def close(self) -> None:
        """Commit: write back if changed, release the lock, carry out a pending expiry."""
        backend = self.backend
        if backend.kernels.close_request(self) is NotImplemented:
            backend.kernels.run(backend, self._do_close())

    def _held_open(
        self, session_id: str, create: Any, handle: Any, loaded: tuple[dict[str, Any], bytes, float]
    ) -> Session | None:
        """get_session's general rest, for open_request: the session of ``session_id`` is locked and ``loaded``."""
        return self._run(self._do_opened(session_id, create, True, handle, loaded))

    def _expire_session(self, session_id: str) -> None:
        """Delete that session now, waiting (when concurrent) for whoever is editing it."""
        self._run(self._do_expire(session_id))

    def _get_session(self, session_id: str, create: Any) -> Session | None:
        """Lock (when concurrent) and load that session; None if absent and not ``create``."""
        return self._run(self._do_load(session_id, create))

    # -- beyond 2005 ----------------------------------------------------

    def regenerate_id(self) -> str:
        """Move the session's data to a fresh id (after login); the old id is deleted at close()."""
        return self._run(self._do_regenerate_id())

    def rollback(self) -> None:
        """Release every lock and write nothing (what ``with`` does on an exception)."""
        self._run(self._do_rollback())

    def bind_user(self, user_id: str | None, *, max_sessions: Any = ..., when_full: Any = ..., **metadata: Any) -> None:
        """Bind this session to ``user_id`` (a str; None unbinds), listed by sessions_of once closed.

        ``metadata`` (a user agent, an IP, ...) is listed with it.
        ``max_sessions``/``when_full`` (the store's by default): at most that
        many sessions for the user; beyond it the least recently used go
        (``"evict"``), or this binding raises TooManySessions (``"refuse"``).
        """
        self._run(self._do_bind_user(user_id, metadata, chosen_cap(self.cap, max_sessions, when_full)))

    def sessions_of(self, user_id: str) -> list[UserSession]:
        """The sessions bound to ``user_id`` that exist: stored name, created, last seen, metadata."""
        return self._run(self._do_sessions_of(user_id))

    def revoke(self, entry: UserSession) -> bool:
        """Delete the session ``entry`` names (waiting for a request that holds it)."""
        return self._run(self._do_revoke(entry))

    def revoke_all(self, user_id: str, keep: Any = None) -> int:
        """Delete every session of ``user_id`` but ``keep`` (a session id, a UserSession, or a list of them);
        how many went."""
        return self._run(self._do_revoke_all(user_id, keep))

    def response_cookie(self) -> str | None:
        """For adapters, as response headers go out: what the session cookie must become.

        The id the client must now hold, "" when its cookie must be deleted, or
        None when it stays as it is. A new session that is still empty is
        dropped here: it is not stored and gets no cookie.
        """
        cookie = self._settled_cookie()  # (most adapters ask after close(): nothing to run)
        return self._run(self._do_response_cookie()) if cookie is False else cookie

    def __del__(self) -> None:
        # A store dropped unclosed would hold its lock for the life of the process: let it go, and say so.
        # (Inline, not _holds_locks: every request's store passes here.)
        try:
            if (
                self._closed
                or self._optimistic
                or (self._handle is None and self._retired is None and not self._doomed)
            ):
                return  # (read without a lock: nothing is held until close() commits)
            if self._born != _generation:  # made before a fork(): the parent's locks
                return
        except AttributeError:  # never fully made: never held anything
            return
        _dropped_unclosed(self, self._run)

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.rollback()


# Backends are configuration only: one per (class, directory, options), shared by
# every store (request) that asks for the same. Found by ``where`` first (a str
# keeps its hash; a tuple key would be built and hashed on every request), then
# by class and options. Bounded: apps use a handful.
_backends: dict[Any, list[tuple[type, tuple[Any, ...], Any]]] = {}


def shared_backend(backend_class: type, where: Any, *options: Any) -> Any:
    """The backend ``backend_class(where, *options)``, made once and then shared.

    ``where`` is a directory (files) or a client (Redis).
    """
    made = _backends.get(where)
    if made is not None:
        for made_class, made_options, backend in made:
            if made_class is backend_class and made_options == options:
                return backend
    backend = backend_class(where, *options)
    # A relative directory may mean another folder after a chdir: not shared.
    if not isinstance(where, (str, bytes, os.PathLike)) or os.path.isabs(where):
        if len(_backends) >= 64 or (made is not None and len(made) >= 8):
            _backends.clear()
        _backends.setdefault(where, []).append((backend_class, options, backend))
    return backend


class OnFiles(StoreCore):
    """The constructor of a store on files, WebStack's signature, for both faces.

    SessionStore and aio.AsyncSessionStore are this with their face's methods;
    the async face wraps the backend (``face_backend``).
    """

    __slots__ = ("concurrent", "delay", "session_directory")
    backend_class = FileBackend

    def __init__(
        self,
        trans: Any,
        session_directory: str,
        session_cookie_name: str = "SID",
        concurrent: Any = 1,
        delay: float = 1,
        *,
        timeout: float | None = None,
        stale_after: float = 30.0,
        max_age: float | None = None,
        fsync: bool = False,
        locking: str = "request",
        on_conflict: Resolver = "raise",
        max_size: int | None = None,
        max_lifetime: float | None = None,
        encrypt: bool = False,
        max_sessions: int | None = None,
        when_full: str = "evict",
    ) -> None:
        backend = shared_backend(
            self.backend_class, session_directory, concurrent, delay, timeout, stale_after, max_age, fsync
        )
        StoreCore.__init__(
            self,
            trans,
            backend if self.face_backend is None else self.face_backend(backend),
            session_cookie_name,
            locking,
            on_conflict,
            max_size,
            max_lifetime,
            encrypt,
            max_sessions,
            when_full,
        )
        self.session_directory = session_directory
        self.concurrent = concurrent
        self.delay = delay

    # What the face's calls go to, made of the shared backend (None: the backend itself; the async face wraps it).
    face_backend: Callable[[Any], Any] | None = None


class SessionStore(BaseStore, OnFiles):
    """WebStack's SessionStore on files: one file per session, O_EXCL lockfiles, atomic commits."""

    __slots__ = ()
