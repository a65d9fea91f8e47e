"""A long-lived maker of a request's stores, for adapters and apps that make a store per request.

``StoreFactory(SessionStore, "/var/sessions", max_age=3600)(trans)`` is the
store ``SessionStore(trans, "/var/sessions", max_age=3600)`` would be. The
constructor checks its options, finds the shared backend and sets thirty
slots in Python on every request; the factory does that once, into a
template store that never serves a request, and each call copies the
template's slots into a new store and gives it its transaction (the
kernels' ``store_like``). The template's slots are a fresh store's: nothing
locked, read or decided yet. ``factory.make`` is the same call without the
factory's own Python frame (a ``functools.partial`` over the kernel): what
the adapters hold.

Only a class whose constructor is fastsession's own is copied so (a
subclass's ``__init__`` may make per-request state, which a copy would
share between requests), and only where the constructor shares its backend:
anything else, and a relative directory (which follows ``chdir``), is made
by calling the class each time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

from . import store as _store
from ._kernels import ACTIVE

store_like = ACTIVE.store_like

# The constructors a template may stand in for: they set slots only, each to a checked option or to a
# fresh store's value (added to by the modules of the other backends as they are imported).
PLAIN_CONSTRUCTORS: set[Any] = {_store.StoreCore.__init__, _store.OnFiles.__init__, object.__init__}


def _slot_members(template: Any) -> tuple[Any, ...]:
    """The slot descriptors of ``template``'s class and its bases that it has set, but the transaction and the
    fork mark."""
    members = []
    for cls in type(template).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("trans", "_born", "__dict__", "__weakref__") and hasattr(template, name):
                members.append(cls.__dict__[name])
    return tuple(members)


def _copyable(store_class: Any, where: Any) -> bool:
    """Whether stores of ``store_class`` over ``where`` may be copied from a template (see the module's doc)."""
    new: Any = getattr(store_class, "__new__", None)
    if type(store_class) is not type or new is not object.__new__:  # (a function; a metaclass; a __new__ of its own)
        return False
    if isinstance(where, (str, bytes, os.PathLike)) and not os.path.isabs(where):
        return False
    return all(cls.__dict__.get("__init__", object.__init__) in PLAIN_CONSTRUCTORS for cls in store_class.__mro__)


def _constructed(store_class: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any], trans: Any) -> Any:
    return store_class(trans, *args, **options)


class StoreFactory:
    """``factory(trans)``: the store ``store_class(trans, *args, **options)``, its options checked once, here.

    ``store_class`` may be any callable of that signature (WSGI's ``store_factory``): one that is not a
    store class of fastsession's constructors is called for each store. ``factory.make(trans)`` is the same
    call, made without this object's Python frame.
    """

    __slots__ = ("args", "make", "members", "options", "store_class", "template")

    def __init__(self, store_class: Callable[..., Any], *args: Any, **options: Any) -> None:
        self.store_class, self.args, self.options = store_class, args, options
        self.template: Any = None
        self.members: tuple[Any, ...] = ()
        self.make: Callable[[Any], Any] = partial(_constructed, store_class, args, options)
        if args and _copyable(store_class, args[0]):
            self.template = store_class(None, *args, **options)  # (raises now for a bad option)
            self.members = _slot_members(self.template)
            self.make = partial(store_like, self.template, self.members)

    def __call__(self, trans: Any) -> Any:
        return self.make(trans)
