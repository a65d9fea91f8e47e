"""What the stores' durations may be: each checked once, when a store or backend is made.

A negative or NaN ``max_age`` would judge every session expired and delete
it on read; a NaN ``timeout`` would never time out. They are refused with
a ValueError naming the option, before any request runs.
"""

from __future__ import annotations

import math
from typing import Any


def check_seconds(name: str, value: Any, *, optional: bool = False, zero: bool = False, forever: bool = False) -> None:
    """ValueError unless ``value`` is a number of seconds above 0 (``zero``: 0 too; ``optional``: None too;
    ``forever``: infinity too)."""
    if value is None and optional:
        return
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and not math.isnan(value)
        and (value > 0 or (zero and value == 0))
        and (forever or math.isfinite(value))
    )
    if not ok:
        allowed = "a positive number of seconds" + (" or 0" if zero else "") + (" or None" if optional else "")
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
