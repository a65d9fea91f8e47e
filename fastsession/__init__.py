"""fastsession: a fast, safe server-side web session store.

A drop-in successor to WebStack's ``SessionStore``: the same documented
methods, with cryptographic session ids, O_EXCL locking that loses no
update, atomic commits and orjson, its hot paths compiled with Cython.
"""

from . import _origin  # first: refuses a folder that also holds the unrelated "fastsession" project
from ._kernels import EXTENSIONS, new_session_id
from .errors import LockTimeout, SerializationError, SessionConflict, SessionError, SessionTooLarge, TooManySessions
from .session import Session
from .store import SessionStore

DISTRIBUTION = _origin.DISTRIBUTION  # the name on the package index (the import name is "fastsession")
__version__ = "0.2.0"  # the one version source: pyproject.toml reads it (tool.setuptools.dynamic)

__all__ = [
    "DISTRIBUTION",
    "EXTENSIONS",
    "LockTimeout",
    "SerializationError",
    "Session",
    "SessionConflict",
    "SessionError",
    "SessionStore",
    "SessionTooLarge",
    "TooManySessions",
    "__version__",
    "new_session_id",
]
