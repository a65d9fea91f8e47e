"""The session object handed to applications."""

from __future__ import annotations

from typing import Any

from .errors import SessionError


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


class TrackedSession(Session):
    """A Session that notes every read in ``accessed``, for adapters that add ``Vary: Cookie``.

    A response that depends on the session in any way, even on ``"user" in
    session`` or ``len(session)``, varies by cookie. (Flask before 3.1.3 and
    the ASGI middleware, which loads the session before the app runs, rely
    on it.)
    """

    def __init__(self, session_id: str | None = None, data: Any = ()) -> None:
        Session.__init__(self, session_id, data)
        self.accessed = False

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return Session.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return Session.get(self, key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return Session.setdefault(self, key, default)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return Session.__contains__(self, key)

    def __len__(self) -> int:  # bool() too
        self.accessed = True
        return Session.__len__(self)

    def __iter__(self) -> Any:
        self.accessed = True
        return Session.__iter__(self)

    def keys(self) -> Any:
        self.accessed = True
        return Session.keys(self)

    def values(self) -> Any:
        self.accessed = True
        return Session.values(self)

    def items(self) -> Any:
        self.accessed = True
        return Session.items(self)


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
