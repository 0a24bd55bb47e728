"""Twin builders: the same objects attrs' __init__ makes, or a refusal."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from attrs import field, frozen

from reconciler.model import facts, state
from reconciler.model.fastinit import twin_builder

EXAMPLES: list[tuple[type[Any], tuple[Any, ...]]] = [
    (facts.ProbeObserved, ("ipv6", "2001:db8::1", False, None, "100% packet loss")),
    (facts.TunnelObserved, ("gif0", True, True, "203.0.113.7", "198.51.100.1", "gif", 64, "none")),
    (facts.Envelope, (3, 5.0, "probe", facts.DaemonStopped("SIGTERM"))),
    (state.ProbeView, ("ipv4", "up", 2, 0, "198.51.100.53", True, 9, 4.0, 8, 3.0, None, 0, 1.0, 7)),
    (state.ObservedState, tuple(getattr(state.ObservedState(), n) for n in state._STATE_FIELDS)),
]


def test_wrong_argument_count_is_a_type_error() -> None:
    """Every field is required, in order: too few arguments raise TypeError."""
    with pytest.raises(TypeError):
        twin_builder(facts.ProbeObserved)("ipv4", "t")


def test_classes_with_post_init_or_no_slots_are_refused() -> None:
    """Hooks and dict-based classes would not be built the same way: refused."""

    @frozen(weakref_slot=False)
    class WithHook:
        value: int = field()

        def __attrs_post_init__(self) -> None:
            pass

    @attrs.define(slots=False, frozen=True)
    class NoSlots:
        value: int

    for cls in (WithHook, NoSlots, int):
        with pytest.raises(TypeError):
            twin_builder(cls)


@pytest.mark.parametrize(("cls", "values"), EXAMPLES, ids=lambda x: getattr(x, "__name__", ""))
def test_twin_built_object_equals_the_attrs_constructed_one(
    cls: type[Any], values: tuple[Any, ...]
) -> None:
    """A twin builder's object has the class, fields, equality, hash and repr of cls(...)."""
    made = twin_builder(cls)(*values)
    reference = cls(*values)
    assert type(made) is cls
    assert made == reference
    assert repr(made) == repr(reference)
    assert attrs.asdict(made, recurse=False) == attrs.asdict(reference, recurse=False)
    if cls.__hash__ is not None and cls not in (state.ObservedState,):
        assert hash(made) == hash(reference)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.seq = 1


def test_twin_builder_with_given_fields_copies_the_rest() -> None:
    """build(old, *values) replaces the given fields and keeps every other field of old."""
    old = state.ObservedState(seq=4, at=2.0, config_digest="abc", config_seq=3)
    moved = twin_builder(state.ObservedState, ("seq", "probes"))(old, 5, {})
    assert moved == attrs.evolve(old, seq=5, probes={})
    assert old.seq == 4 and old.probes != {}


def test_twin_builder_refuses_weakref_slots_and_unknown_fields() -> None:
    """A class with a __weakref__ slot, or a field it does not have, gets no twin builder."""

    @frozen
    class WithWeakref:
        value: int

    with pytest.raises(TypeError, match="__weakref__"):
        twin_builder(WithWeakref)
    with pytest.raises(TypeError, match="no fields"):
        twin_builder(facts.DaemonStopped, ("nope",))
    with pytest.raises(TypeError, match="converter"):
        twin_builder(facts.ActionStarted)
