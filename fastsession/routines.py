"""A server backend's calls as routines of its core, free of I/O (Redis, PostgreSQL).

Such a core (redis.RedisCore, postgres.PostgresCore) writes each of the
store's backend calls as a generator of I/O steps, like the store's own
routines. ``SyncCalls`` gives the store those calls, each driven to its end
by the backend's ``_run``; ``routines`` maps the calls to the generators, for
an async backend to drive them on its event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .store import (
    DELETE,
    EXISTS,
    INDEX_ADD,
    INDEX_LIST,
    INDEX_REMOVE,
    LOAD,
    OPEN,
    OPEN_LOAD,
    OPEN_STORED,
    PEEK,
    RELEASE,
    REVOKE_HELD,
    SAVE,
)

__all__ = ["SyncCalls", "routines"]

Loaded = tuple[dict[str, Any], bytes, float]


class SyncCalls:
    """The store's backend calls, each the core's routine of the same name driven by ``_run``."""

    # The common request may take its own path (the kernels' open_request, close_request), making these calls.
    request_path: str | None = "calls"

    _run: Callable[[Any], Any]
    _open: Callable[..., Any]
    _open_load: Callable[..., Any]
    _load: Callable[..., Any]
    _peek: Callable[..., Any]
    _save: Callable[..., Any]
    _release: Callable[..., Any]
    _delete: Callable[..., Any]
    _open_stored: Callable[..., Any]
    _revoke_held: Callable[..., Any]
    _exists: Callable[..., Any]
    _index_add: Callable[..., Any]
    _index_remove: Callable[..., Any]
    _index_list: Callable[..., Any]

    def open(self, key: str) -> Any:
        return self._run(self._open(key))

    def open_load(self, key: str) -> tuple[Any, Loaded | None]:
        return self._run(self._open_load(key))  # type: ignore[no-any-return]

    def load(self, handle: Any, want_mtime: bool = False) -> Loaded | None:
        return self._run(self._load(handle))  # type: ignore[no-any-return]

    def peek(self, key: str) -> tuple[Any, Loaded | None]:
        return self._run(self._peek(key))  # type: ignore[no-any-return]

    def save(self, handle: Any, body: bytes) -> None:
        self._run(self._save(handle, body))

    def release(self, handle: Any, stamp: float = 0.0) -> None:
        self._run(self._release(handle, stamp))

    def delete(self, handle: Any) -> None:
        self._run(self._delete(handle))

    def open_stored(self, name: str, timeout: Any = ...) -> Any:
        return self._run(self._open_stored(name, timeout))

    def revoke_held(self, name: str, user: str, pending: bool = False) -> bool:
        return self._run(self._revoke_held(name, user, pending))  # type: ignore[no-any-return]

    def exists(self, handle: Any) -> bool:
        return self._run(self._exists(handle))  # type: ignore[no-any-return]

    def index_add(self, user: str, name: str, info: bytes) -> None:
        self._run(self._index_add(user, name, info))

    def index_remove(self, user: str, name: str) -> None:
        self._run(self._index_remove(user, name))

    def index_list(self, user: str) -> list[tuple[str, dict[str, Any], float | None, bool]]:
        return self._run(self._index_list(user))  # type: ignore[no-any-return]


def routines(core: Any) -> dict[str, Callable[..., Any]]:
    """The store's calls (store.OPEN, ...) to the core's routines that make them."""
    return {
        OPEN: core._open,
        OPEN_LOAD: core._open_load,
        SAVE: core._save,
        RELEASE: core._release,
        DELETE: core._delete,
        PEEK: core._peek,
        OPEN_STORED: core._open_stored,
        LOAD: core._load,
        REVOKE_HELD: core._revoke_held,
        EXISTS: core._exists,
        INDEX_ADD: core._index_add,
        INDEX_REMOVE: core._index_remove,
        INDEX_LIST: core._index_list,
    }
