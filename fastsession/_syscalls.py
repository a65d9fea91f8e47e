"""The system calls the pure twins make, in one place.

The fault-injection seam of the test suite: a test replaces one of these to
make, say, the third write fail with ENOSPC, and checks what survives.
"""

from os import close, fstat, fsync, open, read, rename, unlink, write
from os import lstat as stat  # never follows a symlink: a path is judged as itself

__all__ = ["close", "fstat", "fsync", "named", "open", "read", "rename", "stat", "unlink", "write"]


def named(exc: OSError, path: bytes) -> OSError:
    """``exc`` with ``path`` as its filename when the failing call had none (a write to an fd)."""
    if exc.filename is None:
        return OSError(exc.errno, exc.strerror, path)
    return exc
