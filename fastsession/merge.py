"""The three-way merge of an optimistic commit (``locking="commit"``), per top-level key.

A request read version *base* without a lock; at commit the stored version
is *theirs* and the request's is *ours*. Keys ours changed (against base)
are applied onto theirs; a key both sides changed is a conflict that
``on_conflict`` resolves, whatever the values (two requests that each
raise a counter from 1 to 2 made two updates, not one). Values are compared by their
orjson bytes, so ``1``, ``1.0`` and ``True`` are three different values.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import orjson

from .errors import SessionConflict

__all__ = ["check_on_conflict", "merge"]


class _Absent:
    """A key's value where the key is not in that version (given to and taken from an on_conflict callable)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

Resolver = Union[str, Callable[[str, Any, Any, Any], Any]]
POLICIES = ("raise", "ours", "theirs")


def check_on_conflict(on_conflict: Resolver) -> Resolver:
    if not callable(on_conflict) and on_conflict not in POLICIES:
        raise ValueError(f"on_conflict must be one of {POLICIES} or a callable, not {on_conflict!r}")
    return on_conflict


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return orjson.dumps(a) == orjson.dumps(b)


def merge(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], on_conflict: Resolver) -> dict[str, Any]:
    """Theirs with our changes to base applied; SessionConflict (``"raise"``) naming the keys both changed."""
    merged = dict(theirs)
    conflicts: list[str] = []
    for key in list(ours) + [key for key in base if key not in ours]:
        mine, was = ours.get(key, ABSENT), base.get(key, ABSENT)
        if _same(mine, was):
            continue  # we did not change it: theirs stands
        other = theirs.get(key, ABSENT)
        if _same(other, was):
            value = mine
        # Changed on both sides, even to the same value: two increments of 1 to 2 are two updates,
        # and taking them as one would lose one silently.
        elif on_conflict == "raise":
            conflicts.append(key)
            continue
        elif on_conflict == "ours":
            value = mine
        elif on_conflict == "theirs":
            value = other
        else:
            value = on_conflict(key, was, mine, other)  # type: ignore[operator]  # checked: a callable
        if value is ABSENT:
            merged.pop(key, None)
        else:
            merged[key] = value
    if conflicts:
        raise SessionConflict(
            "the session changed meanwhile: key(s) "
            + ", ".join(repr(key) for key in conflicts)
            + " changed by this request and by another meanwhile; nothing was written",
            tuple(conflicts),
        )
    return merged
