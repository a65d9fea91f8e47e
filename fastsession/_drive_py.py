"""The core's driver, pure-Python twin of ``_drive_c``.

A core routine (store.StoreCore's ``_do_*``) is a generator of backend
calls: it yields ``(method name, *arguments)``, is sent each call's result
(or has its exception thrown in), and returns its own result.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")


def run(backend: Any, steps: Generator[tuple[Any, ...], Any, T]) -> T:
    """Carry out a core routine's backend calls one after another; its result."""
    try:
        call = next(steps)
        while True:
            try:
                result = getattr(backend, call[0])(*call[1:])
            except BaseException as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # what the routine returned: its T
