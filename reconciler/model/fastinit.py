"""Positional constructors for slotted attrs classes on the replay hot path.

attrs' generated `__init__` for a frozen class sets each field through `object.__setattr__`,
which looks the name up on the type every time; on a replay of a million facts that is a
third of the fold. `slot_constructor(cls)` returns a function taking every field in
declaration order and setting the slots directly. The object it makes is an ordinary
instance of `cls` (same type, equality, hash, repr): only the way the slots are filled
differs. It refuses classes where that would not be the same as calling `cls(...)`:
converters, validators, `__attrs_pre_init__`/`__attrs_post_init__`, cached hashes, no slots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["slot_constructor"]

T = TypeVar("T")


def slot_constructor(cls: type[T]) -> Callable[..., T]:
    """`make(*fields)` equal to `cls(*fields)`, faster; TypeError when `cls` does not allow it."""
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    for hook in ("__attrs_pre_init__", "__attrs_post_init__"):
        if hasattr(cls, hook):
            raise TypeError(f"{cls.__name__} has {hook}")
    if "_attrs_cached_hash" in cls.__dict__["__slots__"]:
        raise TypeError(f"{cls.__name__} caches its hash")
    fields = attrs.fields(cls)
    for f in fields:
        if f.converter is not None or f.validator is not None or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} has a converter, validator or no init")
    names = [f"a{i}" for i in range(len(fields))]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    obj = _new(_cls)"]
    for i, f in enumerate(fields):
        # The slot's member descriptor: found on the class that declares the slot.
        owner = next(k for k in cls.__mro__ if f.name in k.__dict__.get("__slots__", ()))
        namespace[f"_set{i}"] = owner.__dict__[f.name].__set__
        lines.append(f"    _set{i}(obj, a{i})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # generated from field names only
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = f"slot_constructor({cls.__qualname__})"
    return make
