"""Build the C floor (floor.c) with the system compiler and call it through ctypes."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(__file__), "floor.c")


def load_floor() -> ctypes.CDLL | None:
    """The compiled floor library, built once per source version; None without a C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    target = os.path.join(tempfile.gettempdir(), f"fastsession-floor-{digest}.so")
    if not os.path.exists(target):
        partial = f"{target}.{os.getpid()}"
        result = subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", partial, SOURCE],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return None
        os.replace(partial, target)
    lib = ctypes.CDLL(target)
    c_str, c_size, c_long = ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long
    signatures = {
        "floor_modify": [c_str, c_str, c_str, c_size, c_str, c_size, c_long],
        "floor_read": [c_str, c_str, c_str, c_size, c_long],
        "floor_lock": [c_str, c_str, c_size, c_long],
        "floor_load": [c_str, c_long],
        "floor_commit": [c_str, c_str, c_str, c_size, c_str, c_size, c_long],
        "floor_ids": [c_long],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int64
    return lib


def checked(elapsed_ns: int) -> int:
    """The floor's elapsed nanoseconds; OSError when it reported -errno."""
    if elapsed_ns < 0:
        raise OSError(-elapsed_ns, os.strerror(-elapsed_ns), "C floor")
    return elapsed_ns
