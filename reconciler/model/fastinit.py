"""Positional builders for slotted attrs classes on the replay hot path.

attrs' generated `__init__` for a frozen class sets each field through `object.__setattr__`,
which looks the name up on the type every time; on a replay of a million facts that was a
third of the fold (issue 2 asks for 1M facts in 5 s). `twin_builder(cls)` returns a function
taking every field in declaration order that makes the same object faster. The object is an
ordinary instance of `cls` (same type, equality, hash, repr): only the way the slots are
filled differs. It refuses classes where that would not be the same as calling `cls(...)`:
converters, validators, `__attrs_pre_init__`/`__attrs_post_init__`, cached hashes, no slots.
Use it only where a profile shows construction matters; everywhere else, call the class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["twin_builder"]

T = TypeVar("T")


def _plain_fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    """`cls`'s fields; TypeError unless filling its slots directly equals calling `cls(...)`."""
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    for hook in ("__attrs_pre_init__", "__attrs_post_init__"):
        if hasattr(cls, hook):
            raise TypeError(f"{cls.__name__} has {hook}")
    if "_attrs_cached_hash" in cls.__dict__["__slots__"]:
        raise TypeError(f"{cls.__name__} caches its hash")
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)
    for f in fields:
        if f.converter is not None or f.validator is not None or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} has a converter, validator or no init")
    return fields


def twin_builder(cls: type[T], given: tuple[str, ...] | None = None) -> Callable[..., T]:
    """`build(*values)` equal to `cls(*values)`; with `given`, `build(old, *values)` copies.

    Filling a slot through its descriptor is a call (about 60 ns); an attribute store on an
    ordinary slotted class is specialised by the interpreter (a few ns). So the object is
    made as an instance of a plain twin class with the very same slots, filled with attribute
    stores, then given its real class by `__class__` assignment. CPython allows that only
    between classes of identical layout and checks it on every assignment: a layout that
    drifted raises TypeError, never corrupts.
    The object is an ordinary instance of `cls`.

    With `given` (a subset of the fields), `build(old, *values)` sets those fields to
    `values` and copies the others from `old`, an instance of `cls`: a changed copy for the
    price of one construction. `cls` must have plain fields (see `_plain_fields`) and no
    `__weakref__` slot (attrs' `weakref_slot=False`): CPython's layout check refuses classes
    whose weak reference slot follows named slots.
    """
    fields = tuple(f.name for f in _plain_fields(cls))
    if cls.__dict__["__slots__"] != fields:
        raise TypeError(f"{cls.__name__}'s slots are not exactly its fields (a __weakref__ slot?)")
    if any(name.startswith("_") for name in fields):
        raise TypeError(f"{cls.__name__} has a field name that could clash with the builder's")
    chosen = fields if given is None else given
    if not set(chosen) <= set(fields):
        raise TypeError(f"{cls.__name__} has no fields {sorted(set(chosen) - set(fields))}")
    twin = type(f"_Mutable{cls.__name__}", (), {"__slots__": fields})
    params = list(chosen) if given is None else ["_old", *chosen]
    lines = [f"def build({', '.join(params)}):", "    _obj = _new(_twin)"]
    for name in fields:
        lines.append(f"    _obj.{name} = {name if name in chosen else '_old.' + name}")
    lines += ["    _obj.__class__ = _cls", "    return _obj"]
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    exec("\n".join(lines), namespace)  # generated from field names only
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"twin_builder({cls.__qualname__})"
    return build
