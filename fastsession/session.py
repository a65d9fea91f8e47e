"""The session object handed to applications."""

from __future__ import annotations

from typing import Optional


class Session(dict):
    """A session's data: a dict of str keys to values orjson can encode.

    ``session_id`` names it. Changes, nested ones included, are found at
    ``close()`` by comparing the encoded bytes, so no flag needs setting.
    """

    __slots__ = ("session_id",)

    def __init__(self, session_id: Optional[str], data=()) -> None:
        dict.__init__(self, data)  # not super(): this runs once per request
        self.session_id = session_id

    def __repr__(self) -> str:
        shown = f"{self.session_id[:6]}…" if self.session_id else "(no id yet)"
        return f"<{type(self).__name__} {shown} {dict.__repr__(self)}>"
