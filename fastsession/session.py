"""The session object handed to applications."""

from __future__ import annotations

from typing import Any, Callable

from .errors import SessionError

__all__ = ["ClosedSession", "Session", "TrackedSession"]

_MISSING: Any = object()


class Session(dict[str, Any]):
    """A session's data: a dict of str keys to values orjson can encode.

    ``session_id`` names it. Changes, nested ones included, are found at
    ``close()`` by comparing the encoded bytes, so no flag needs setting.
    """

    __slots__ = ("session_id",)
    session_id: str  # None only in ASGI's placeholder, before anything is stored

    def __init__(self, session_id: str | None, data: Any = ()) -> None:
        dict.__init__(self, data)  # not super(): this runs once per request
        self.session_id = session_id  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = f"{self.session_id[:6]}…" if self.session_id else "(no id yet)"
        return f"<{type(self).__name__} {shown} {dict.__repr__(self)}>"


class NotReadYet:
    """The value a session still to be read holds under ``UNREAD``, where C code reads the dict directly.

    ``json.dumps`` calls a dict's own ``items()`` only when the dict is not
    empty at C level: this entry makes that call, which reads the session,
    happen. orjson reads the entries without calling anything, and stops at
    this value ("Type is not JSON serializable: NotReadYet") instead of
    writing ``{}`` for a session it never read: use the session once first.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the session, not read yet>"


UNREAD = "\x00fastsession: the session is read on first use"
NOT_READ_YET = NotReadYet()


class TrackedSession(Session):
    """A Session that notes reads in ``accessed`` and changes in ``modified``, opened on first use.

    A response that depends on the session in any way, even on ``"user" in
    session`` or ``len(session)``, varies by cookie (``accessed``); a change
    made through the session's own methods sets ``modified`` (Flask's and
    Starlette's flags: an adapter sends Set-Cookie for it). A change inside a
    value (a list appended to) is stored all the same: the commit compares
    encoded bytes. After ``defer(opener, *args)``, the first read or change
    calls ``opener(session, *args)`` to fill it from the store: a request
    that never touches its session never reads or locks it. Until then
    ``pending`` holds ``(opener, *args)`` and the dict holds one entry of its
    own (``UNREAD``, see NotReadYet); every method of the session reads it
    first, so no caller sees that entry.
    """

    def __init__(self, session_id: str | None = None, data: Any = ()) -> None:
        Session.__init__(self, session_id, data)
        self.accessed = False
        self.modified = False
        self.pending: tuple[Any, ...] | None = None

    def defer(self, opener: Callable[..., None], *args: Any) -> None:
        """Read this (empty) session on first use with ``opener(self, *args)``."""
        self.pending = (opener, *args)
        dict.__setitem__(self, UNREAD, NOT_READ_YET)

    def undefer(self) -> tuple[Any, ...] | None:
        """What ``defer`` was given (None: nothing), no longer pending: the caller reads the session now."""
        pending, self.pending = self.pending, None
        if pending is not None:
            dict.pop(self, UNREAD, None)
        return pending

    def open(self) -> None:
        """Fill the session from the store now, if that is still to be done (the first use does it)."""
        pending = self.undefer()
        if pending is not None:
            pending[0](self, *pending[1:])

    def __repr__(self) -> str:
        if self.pending is not None:
            return f"<{type(self).__name__} (not read yet)>"
        return Session.__repr__(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        if self.pending is not None:
            self.open()
        if not dict.__contains__(self, key):
            self.modified = True
        return dict.setdefault(self, key, default)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if self.pending is not None:
            self.open()
        if dict.__contains__(self, key):  # Starlette's and werkzeug's rule: a pop of nothing changes nothing
            self.accessed = self.modified = True
        return dict.pop(self, key) if default is _MISSING else dict.pop(self, key, default)

    __hash__ = None  # type: ignore[assignment]  # (a dict: __eq__ is wrapped below)


def _reader(name: str) -> Callable[..., Any]:
    plain = getattr(dict, name)

    def read(self: TrackedSession, *args: Any) -> Any:
        self.accessed = True
        if self.pending is not None:
            self.open()
        return plain(self, *args)

    read.__name__ = read.__qualname__ = name
    return read


def _writer(name: str) -> Callable[..., Any]:
    plain = getattr(dict, name)

    def write(self: TrackedSession, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        if self.pending is not None:
            self.open()
        self.modified = True
        return plain(self, *args, **kwargs)

    write.__name__ = write.__qualname__ = name
    return write


for _name in (
    "__getitem__", "get", "__contains__", "__len__", "__iter__", "__reversed__",
    "keys", "values", "items", "copy", "__eq__", "__ne__", "__or__", "__ror__",
):  # fmt: skip
    setattr(TrackedSession, _name, _reader(_name))
for _name in ("__setitem__", "__delitem__", "update", "popitem", "clear", "__ior__"):
    setattr(TrackedSession, _name, _writer(_name))


class ClosedSession:
    """What a Session becomes when its store is closed (``closed``): reads work, a change raises.

    A change made after close() could never be stored; raising says so where
    it is made, instead of losing it without a word. (A mixin: each Session
    class gets a closed twin of its own layout, so isinstance checks hold.)
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise SessionError(
            "this session's store is closed (committed or rolled back): a change now would never be stored"
        )

    __setitem__ = __delitem__ = update = pop = popitem = clear = __ior__ = _refuse

    def setdefault(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):  # type: ignore[operator]
            return dict.__getitem__(self, key)  # type: ignore[index]
        return self._refuse()


class _ClosedTwins(dict[type, type]):
    """Each Session class's ClosedSession twin, made on first use (the same layout: ``__class__`` may switch)."""

    def __missing__(self, kind: type) -> type:
        made = self[kind] = type(f"Closed{kind.__name__}", (ClosedSession, kind), {"__slots__": ()})
        return made


# What close() turns a session into: ``session.__class__ = CLOSED[type(session)]`` (one lookup on the hot path).
CLOSED = _ClosedTwins()
