"""The session object handed to applications."""

from __future__ import annotations


class Session(dict):
    """A session's data: a dict of str keys to values orjson can encode.

    ``session_id`` names it. Changes, nested ones included, are found at
    ``close()`` by comparing the encoded bytes, so no flag needs setting.
    """

    __slots__ = ("session_id",)

    def __init__(self, session_id: str, data=()) -> None:
        dict.__init__(self, data)  # not super(): this runs once per request
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"<Session {self.session_id[:6]}… {dict.__repr__(self)}>"
