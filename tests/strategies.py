"""Hypothesis strategies for typed facts and envelopes (shared by every test area)."""

from __future__ import annotations

from hypothesis import strategies as st

from reconciler.model import facts as f
from reconciler.model.actions import HE_ABUSE

__all__ = [
    "action_facts",
    "envelopes",
    "facts",
    "ipv4_addresses",
    "observation_facts",
]

ipv4_addresses = st.sampled_from(
    ["203.0.113.7", "203.0.113.9", "198.51.100.4", "192.168.1.20", "100.64.3.3"]
)
_keys = st.sampled_from(
    [
        "restart-wan:em0",
        "update-he-endpoint:203.0.113.7",
        "update-he-endpoint:203.0.113.9",
        "rewrite-hostname:0123456789ab",
        "restart-tunnel:203.0.113.7->198.51.100.1",
        "reload-pf:203.0.113.7",
    ]
)
_maybe_addr = st.none() | ipv4_addresses


observation_facts = st.one_of(
    st.builds(
        f.WanAddressObserved,
        interface=st.just("em0"),
        address=_maybe_addr,
        link_up=st.booleans(),
        exists=st.booleans(),
        autoconf=st.booleans(),
        default_route=st.none() | st.booleans(),
        owner=st.sampled_from([None, "none", "dhclient", "command"]),
    ),
    st.builds(
        f.ProbeObserved,
        family=st.sampled_from(["ipv4", "ipv6"]),
        target=st.sampled_from(["198.51.100.53", "2001:db8::53"]),
        ok=st.booleans(),
        rtt_ms=st.none() | st.floats(0.1, 500),
    ),
    st.builds(
        f.TunnelObserved,
        interface=st.just("gif0"),
        exists=st.booleans(),
        up=st.booleans(),
        local=_maybe_addr,
        remote=st.just("198.51.100.1") | st.none(),
        ttl=st.none() | st.sampled_from([64, 255]),
    ),
    st.builds(
        f.HostnameFileObserved,
        path=st.just("/etc/hostname.gif0"),
        digest=st.none() | st.sampled_from(["a" * 64, "b" * 64]),
    ),
    st.builds(
        f.EndpointObserved,
        address=_maybe_addr,
        source=st.sampled_from(["update", "tunnel-info", "probe"]),
        for_local=_maybe_addr,
    ),
)


def _action_kind(key: str) -> str:
    return key.split(":", 1)[0]


action_facts = st.one_of(
    _keys.flatmap(
        lambda k: st.builds(
            f.ActionStarted,
            key=st.just(k),
            action=st.just(_action_kind(k)),
            reason=st.text(max_size=10),
            causes=st.lists(st.integers(1, 100), max_size=3),
        )
    ),
    _keys.flatmap(
        lambda k: st.builds(f.ActionSucceeded, key=st.just(k), action=st.just(_action_kind(k)))
    ),
    _keys.flatmap(
        lambda k: st.builds(
            f.ActionFailed,
            key=st.just(k),
            action=st.just(_action_kind(k)),
            kind=st.sampled_from(["temporary", "permanent"]),
            message=st.sampled_from(["911", "badauth", f"{HE_ABUSE}; waiting hours", "timeout"]),
            retry_after=st.none() | st.floats(1, 20000),
            unconfirmed=st.booleans(),
        )
    ),
    st.builds(
        f.ConfigLoaded,
        digest=st.sampled_from(["c1" * 32, "c2" * 32]),
        path=st.just("/etc/reconciler.conf"),
        fail_after=st.fixed_dictionaries({"ipv4": st.integers(1, 4), "ipv6": st.integers(1, 4)}),
        recover_after=st.fixed_dictionaries({"ipv4": st.integers(1, 3), "ipv6": st.integers(1, 3)}),
    ),
)

facts = st.one_of(observation_facts, action_facts)


@st.composite
def envelopes(draw: st.DrawFn, max_size: int = 40) -> list[f.Envelope]:
    """A run of envelopes with contiguous seqs from 1 and non-decreasing times."""
    items = draw(st.lists(facts, max_size=max_size))
    steps = draw(st.lists(st.floats(0, 120), min_size=len(items), max_size=len(items)))
    result = []
    at = 1_700_000_000.0
    for seq, (fact, step) in enumerate(zip(items, steps, strict=True), start=1):
        at += step
        result.append(f.Envelope(seq=seq, at=at, source="test", fact=fact))
    return result
