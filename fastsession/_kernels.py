"""The one place that chooses between the compiled kernels and their pure twins.

``FASTSESSION_NO_EXTENSIONS=1`` (read once, at import) forces the pure twins;
so does a Python without the compiled modules (a build without a compiler).
"""

import os
import platform
from typing import TYPE_CHECKING

NO_EXTENSIONS = bool(os.environ.get("FASTSESSION_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _ids_py as _ids
    from . import _io_py as _io
    from . import _lock_py as _lock

    EXTENSIONS = False
else:
    try:
        from . import _ids_c as _ids
        from . import _io_c as _io
        from . import _lock_c as _lock

        EXTENSIONS = True
    except ImportError as exc:  # installed without a compiler: setup.py warned then
        import warnings

        warnings.warn(
            f"fastsession: compiled kernels unavailable ({exc}); using the slower "
            "pure-Python twins. Set FASTSESSION_NO_EXTENSIONS=1 to choose them quietly.",
            RuntimeWarning,
            stacklevel=2,
        )
        from . import _ids_py as _ids
        from . import _io_py as _io
        from . import _lock_py as _lock

        EXTENSIONS = False

new_session_id = _ids.new_session_id
is_valid_id = _ids.is_valid_id
acquire = _lock.acquire
unlock = _lock.unlock
read_session = _io.read_session
commit_locked = _io.commit_locked
write_unlocked = _io.write_unlocked

__all__ = [
    "EXTENSIONS",
    "new_session_id",
    "is_valid_id",
    "acquire",
    "unlock",
    "read_session",
    "commit_locked",
    "write_unlocked",
]
