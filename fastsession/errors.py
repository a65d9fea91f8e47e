"""The one error hierarchy of fastsession."""

from typing import Any

__all__ = [
    "CorruptSession",
    "LockTimeout",
    "SerializationError",
    "SessionConflict",
    "SessionError",
    "SessionRevoked",
    "SessionTooLarge",
    "TooManySessions",
]


class SessionError(Exception):
    """Base of every error fastsession raises on its own account."""


class LockTimeout(SessionError):
    """The session's lock was not acquired within the store's ``timeout``.

    ``holder``: who held it then (``host``, ``pid``, ``age`` in seconds,
    ``alive``), as far as is known; adapters answer 503 and log it.
    """

    def __init__(self, message: str, holder: "dict[str, Any] | None" = None) -> None:
        super().__init__(message)
        self.holder = holder or {"host": None, "pid": None, "age": None, "alive": None}


class SerializationError(SessionError, TypeError):
    """A session value that orjson cannot encode; the stored session is kept."""


class CorruptSession(SessionError, ValueError):
    """A stored session that cannot be decoded; the store treats it as absent."""


class SessionConflict(SessionError):
    """An optimistic commit (``locking="commit"``) met a key changed meanwhile to another value.

    ``keys`` names them; nothing was written.
    """

    def __init__(self, message: str, keys: "tuple[str, ...]" = ()) -> None:
        super().__init__(message)
        self.keys = keys


class SessionTooLarge(SessionError):
    """A session whose encoded bytes exceed the store's ``max_size``; nothing was written, the lock released.

    ``size`` and ``max_size`` in bytes; ``largest``: the biggest keys, (key, encoded bytes) pairs.
    """

    def __init__(
        self, message: str, size: int = 0, max_size: int = 0, largest: "tuple[tuple[str, int], ...]" = ()
    ) -> None:
        super().__init__(message)
        self.size, self.max_size, self.largest = size, max_size, largest


class SessionRevoked(SessionError):
    """A commit met its session revoked while the request held it ("log out everywhere"); nothing was
    written, the lock released. The faces end such a request as logged out (the cookie deleted)."""


class TooManySessions(SessionError):
    """``bind_user`` with ``max_sessions`` and ``when_full="refuse"`` met a user who has that many sessions already.

    Nothing was bound: the session stays as it was (not logged in). ``user``:
    the user's hash; ``max_sessions``: the cap. Show "log out elsewhere first".
    """

    def __init__(self, message: str, user: str = "", max_sessions: int = 0) -> None:
        super().__init__(message)
        self.user, self.max_sessions = user, max_sessions
