"""Which project this import name belongs to: fastsession-store on the package index.

"fastsession" on the index is an unrelated project with the same import name. Installed beside this
one, its files land in this folder, and uninstalling either deletes the other's ``__init__.py``: both
break. This module, imported first by ``__init__``, refuses a folder that holds that project's files;
``_kernels`` refuses to load when this module was not imported (that project's ``__init__`` replaced
this one's).
"""

from __future__ import annotations

import os

DISTRIBUTION = "fastsession-store"
FIX = "Fix: pip uninstall -y fastsession fastsession-store && pip install fastsession-store"
STRANGER_FILES = ("fast_session_middleware.py", "memory_store.py", "timed_signature_serializer.py")

_here = os.path.dirname(os.path.abspath(__file__))
if any(os.path.exists(os.path.join(_here, name)) for name in STRANGER_FILES):
    raise ImportError(
        f"{_here} also holds the files of the unrelated project 'fastsession' (pip install fastsession), "
        f"which shares this import name; this package is {DISTRIBUTION}. {FIX}"
    )
