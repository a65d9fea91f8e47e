"""The session object handed to applications."""

from __future__ import annotations

from typing import Any


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
