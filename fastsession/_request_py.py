"""The common request, pure-Python twin of ``_request_c``: on files, Redis and PostgreSQL.

Most requests open the session by its cookie, read it, perhaps change it,
and close: locked with ``locking="request"``, no encryption, no absolute
lifetime, no user binding, nothing expired or regenerated. These two
routines do that request straight against the backend, without the core's
generators and driver. Anything else (a store or backend that is not this
case, or a session whose record holds metadata) they answer
``NotImplemented`` before doing anything, and the facade runs the general
core (store.StoreCore), which owns every rule they do not need. What they
do is the core's ``_do_get_session`` and ``_do_close`` for this case, no
more: tests/test_request_path.py drives both with the same random requests
and compares stored bytes, cookies and errors.
"""

from __future__ import annotations

from types import MemberDescriptorType
from typing import Any

from .encoding import META, encode
from .errors import SessionRevoked
from .session import CLOSED


def copied(template: Any, members: tuple[Any, ...]) -> Any:
    """A new object of ``template``'s type, each of ``members`` (its slot descriptors) set to ``template``'s value."""
    cls: Any = type(template)
    if cls.__new__ is not object.__new__:
        raise TypeError(f"copied: {cls.__name__} objects are not made by object.__new__")
    for member in members:
        if type(member) is not MemberDescriptorType or not issubclass(cls, member.__objclass__):
            raise TypeError(f"copied: {member!r} is not a slot of {cls.__name__} objects")
    values = [member.__get__(template) for member in members]  # (AttributeError for one not set)
    made = object.__new__(cls)
    for member, value in zip(members, values):
        member.__set__(made, value)
    return made


def store_like(template: Any, members: tuple[Any, ...], trans: Any) -> Any:
    """``copied(template, members)`` of a store, given ``trans`` and this process's fork mark: the store its
    constructor would make for ``trans`` (StoreFactory's)."""
    from . import store  # (which imports the kernels)

    if not isinstance(template, store.StoreCore):
        raise TypeError(f"store_like takes a store (a StoreCore), not {type(template).__name__}")
    made = copied(template, members)
    made.trans = trans
    made._born = store._generation  # made in this process, after any fork: its locks are its own
    return made


def open_request(store: Any, create: Any, files: Any = None) -> Any:
    """``get_session(create)`` of a store that holds no session yet; NotImplemented when not the common case.

    ``files``: the FileBackend of an async store, called inline on its event loop: a lock someone holds is
    never waited for here (NotImplemented, nothing held: the async core waits on the loop).
    """
    backend = store.backend if files is None else files
    if (
        not getattr(backend, "request_path", None)
        or store._closed
        or store._expired
        or store._optimistic
        or store.encrypt
        or store.max_lifetime is not None
    ):
        return NotImplemented
    store.accessed = True
    session_id = store._cookie_id()
    if session_id is not None:
        opened = backend.open_load(session_id) if files is None else backend.open_load(session_id, False)
        if opened is None:
            return NotImplemented
        handle, loaded = opened
        if loaded is not None:
            data, stored, stamp = loaded
            if META in data:  # (a user binding, a creation time: the general core's, from this lock on)
                return store._held_open(session_id, create, handle, loaded)
            return store._hold(store.session_class(session_id, data), handle, stored, stamp)
        backend.release(handle)
    if not create:
        return None
    new_id = backend.kernels.new_session_id()
    handle = backend.open(new_id) if files is None else backend.try_open(new_id)
    if handle is None:
        return NotImplemented
    session = store._hold(store.session_class(new_id), handle, None, 0.0)
    store.trans.set_cookie_value(store.session_cookie_name, new_id)
    return session


def close_request(store: Any, files: Any = None) -> Any:
    """``close()`` of a store in the common case (None when done); NotImplemented, having done nothing, otherwise.

    ``files``: the FileBackend of an async store, called inline on its event loop.
    """
    backend = store.backend if files is None else files
    if (
        not getattr(backend, "request_path", None)
        or store._optimistic
        or store.encrypt
        or store._meta is not None
        or store._indexed is not None
        or store._retired is not None
        or store._doomed is not None
        or store._doomed_ids is not None
    ):
        return NotImplemented
    if store._closed:
        return None
    store._closed = True
    session = store._session
    stored_new = False
    error: BaseException | None = None
    if session is not None:
        session.__class__ = CLOSED[type(session)]
        handle, stored, stamp = store._handle, store._stored, store._stamp
        store._drop_current()
        try:
            body = encode(session, store.max_size, None)
        except BaseException as exc:  # (SerializationError, SessionTooLarge): the lock goes first
            error = exc
            body = None
        try:
            if body is None or (stored is None and not session):  # new and empty: never stored
                backend.release(handle)
            elif store._unchanged(body, stored):
                backend.release(handle, stamp)
            else:
                backend.save(handle, body)
                stored_new = stored is None
        except SessionRevoked:  # logged out everywhere while this request ran: it ends logged out
            store._expired = True
        except BaseException as exc:
            error = exc
    store._closed_with(session, stored_new, error)
    return None
