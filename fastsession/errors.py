"""The one error hierarchy of fastsession."""


class SessionError(Exception):
    """Base of every error fastsession raises on its own account."""


class LockTimeout(SessionError):
    """The session's lock was not acquired within the store's ``timeout``."""


class SerializationError(SessionError, TypeError):
    """A session value that orjson cannot encode; the stored session is kept."""


class CorruptSession(SessionError, ValueError):
    """A stored session that cannot be decoded; the store treats it as absent."""
