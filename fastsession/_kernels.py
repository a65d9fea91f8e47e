"""The one place that chooses between the compiled kernels and their pure twins.

``FASTSESSION_NO_EXTENSIONS=1`` (read once, at import) forces the pure twins;
so does a Python without the compiled modules (a build without a compiler).
A kernel set is a namespace of the seven kernel functions; ``ACTIVE`` is the
chosen one, ``twin("c")`` and ``twin("py")`` name one explicitly (tests,
benchmarks).
"""

import importlib
import os
import platform
from types import SimpleNamespace

NAMES = {
    "ids": ("new_session_id", "is_valid_id"),
    "lock": ("acquire", "unlock"),
    "io": ("read_session", "commit_locked", "write_unlocked"),
}


def twin(kind: str) -> SimpleNamespace:
    """The kernel set of one twin: ``"c"`` (compiled) or ``"py"`` (pure Python)."""
    functions = {}
    for module, names in NAMES.items():
        loaded = importlib.import_module(f"fastsession._{module}_{kind}")
        functions.update((name, getattr(loaded, name)) for name in names)
    return SimpleNamespace(kind=kind, **functions)


NO_EXTENSIONS = bool(os.environ.get("FASTSESSION_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)

if NO_EXTENSIONS:
    ACTIVE = twin("py")
else:
    try:
        ACTIVE = twin("c")
    except ImportError as exc:  # installed without a compiler: setup.py warned then
        import warnings

        warnings.warn(
            f"fastsession: compiled kernels unavailable ({exc}); using the slower "
            "pure-Python twins. Set FASTSESSION_NO_EXTENSIONS=1 to choose them quietly.",
            RuntimeWarning,
            stacklevel=2,
        )
        ACTIVE = twin("py")

EXTENSIONS = ACTIVE.kind == "c"
new_session_id = ACTIVE.new_session_id
