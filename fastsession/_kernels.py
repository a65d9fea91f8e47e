"""The one place that chooses between the compiled kernels and their pure twins.

``FASTSESSION_NO_EXTENSIONS=1`` (read once, at import) forces the pure twins;
so does a Python without the compiled modules (a build without a compiler).
A kernel set is a namespace of the fifteen kernel functions; ``ACTIVE`` is the
chosen one, ``twin("c")`` and ``twin("py")`` name one explicitly (tests,
benchmarks).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar, cast

if f"{__package__}._origin" not in sys.modules:  # the package's __init__ did not run: another project's did
    from . import _origin  # (it raises first when that project's files are in this folder)

    raise ImportError(
        f"{os.path.dirname(os.path.abspath(__file__))}/__init__.py is not {_origin.DISTRIBUTION}'s: another "
        f"project's with the same import name replaced it. {_origin.FIX}"
    )

T = TypeVar("T")

NAMES = {
    "ids": ("new_session_id", "is_valid_id", "stored_name", "session_path"),
    "lock": ("acquire", "try_lock", "unlock"),
    "io": ("read_session", "open_session", "commit_locked", "write_unlocked"),
    "drive": ("run",),
    "request": ("open_request", "close_request", "copied", "store_like"),
    "resp": ("packed", "reply_of"),
}


class KernelSet(Protocol):
    """What a twin set offers (the signatures of the .pyi stubs and of the pure twins)."""

    kind: str

    def new_session_id(self) -> str: ...
    def is_valid_id(self, value: object) -> bool: ...
    def stored_name(self, session_id: str) -> str: ...
    def session_path(self, directory: bytes, key: object) -> bytes | None: ...
    def try_lock(self, lock_path: bytes, record: bytes) -> int: ...
    def acquire(
        self, lock_path: bytes, record: bytes, delay: float, timeout: float | None, stale_after: float
    ) -> int: ...
    def unlock(self, fd: int, lock_path: bytes) -> None: ...
    def read_session(self, path: bytes, want_mtime: bool) -> tuple[dict[str, Any], bytes, float] | None: ...
    def open_session(
        self, directory: bytes, key: object, record: bytes, want_mtime: bool
    ) -> tuple[tuple[bytes, bytes, int, str], tuple[dict[str, Any], bytes, float] | None] | None: ...
    def commit_locked(self, fd: int, lock_path: bytes, path: bytes, body: bytes, fsync: bool) -> None: ...
    def write_unlocked(self, temp_path: bytes, path: bytes, record: bytes, body: bytes, fsync: bool) -> None: ...
    def run(self, backend: Any, steps: Generator[tuple[Any, ...], Any, T]) -> T: ...
    def open_request(self, store: Any, create: Any, files: Any = None) -> Any: ...
    def close_request(self, store: Any, files: Any = None) -> Any: ...
    def copied(self, template: Any, members: tuple[Any, ...]) -> Any: ...
    def store_like(self, template: Any, members: tuple[Any, ...], trans: Any) -> Any: ...
    def packed(self, *args: Any) -> bytes: ...
    def reply_of(self, data: bytes) -> tuple[Any, int, bool]: ...


def twin(kind: str) -> KernelSet:
    """The kernel set of one twin: ``"c"`` (compiled) or ``"py"`` (pure Python)."""
    functions: dict[str, Any] = {}
    for module, names in NAMES.items():
        loaded = importlib.import_module(f"fastsession._{module}_{kind}")
        functions.update((name, getattr(loaded, name)) for name in names)
    return cast(KernelSet, SimpleNamespace(kind=kind, **functions))


def why_pure(error: ImportError) -> str:
    """The import warning: why the compiled kernels are missing, and what to do about it."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(here, "_ids_c.pyx")) and os.path.exists(
        os.path.join(os.path.dirname(here), "pyproject.toml")
    ):
        return (
            f"imported from the source folder {here}, where nothing is compiled (python -m run "
            "from the checkout imports it instead of the installed package); using the slower "
            "pure-Python twins. Run the installed command instead (pip install . && fastsession "
            "demo), or run Python from another folder."
        )
    return (
        f"compiled kernels unavailable ({error}): this install was built without a C compiler; "
        "using the slower pure-Python twins. Install a C compiler and the Python headers, then "
        "pip install --force-reinstall --no-binary fastsession-store fastsession-store (or pip install . again "
        "from the checkout). Set FASTSESSION_NO_EXTENSIONS=1 to choose the pure twins quietly."
    )


NO_EXTENSIONS = bool(os.environ.get("FASTSESSION_NO_EXTENSIONS")) or (platform.python_implementation() != "CPython")

if NO_EXTENSIONS:
    ACTIVE = twin("py")
else:
    try:
        ACTIVE = twin("c")
    except ImportError as exc:  # installed without a compiler (pip hid the build's warning)
        import warnings

        warnings.warn(f"fastsession: {why_pure(exc)}", RuntimeWarning, stacklevel=2)
        ACTIVE = twin("py")

EXTENSIONS = ACTIVE.kind == "c"
new_session_id = ACTIVE.new_session_id
