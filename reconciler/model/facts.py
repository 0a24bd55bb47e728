"""Typed facts and their envelope: what reconciler records in its event log.

A fact is a frozen attrs class with a stable `TYPE` name and a schema `VERSION`. In the log
a fact is an opaque msgpack mapping:

    {"t": TYPE, "v": VERSION, "at": <UTC epoch seconds>, "src": <source>, "d": {<fields>}}

Old logs stay readable forever: a record written with an older version is brought up to
date by the upcasters registered in `UPCASTERS`; a record of a type (or a version) this
release does not know is kept as an `UnknownFact` and shown raw, never a crash. So is a
record of a known type whose fields do not have the types the class declares: one bad
record must not break replay, diff or the daemon's start-up for good.
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import attrs
from attrs import field, frozen

from reconciler.model.fastinit import twin_builder

__all__ = [
    "FACT_TYPES",
    "UPCASTERS",
    "ActionFailed",
    "ActionStarted",
    "ActionSucceeded",
    "ConfigLoaded",
    "DaemonStarted",
    "DaemonStopped",
    "EndpointObserved",
    "Envelope",
    "Fact",
    "HookRan",
    "HostnameFileObserved",
    "ObservationsCounted",
    "ProbeObserved",
    "TunnelObserved",
    "UnknownFact",
    "WanAddressObserved",
    "WanChosen",
    "WanProbed",
    "from_record",
    "to_record",
]

Family = Literal["ipv4", "ipv6"]
FailureKind = Literal["temporary", "permanent"]


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


# Facts and envelopes have no __weakref__ slot (nothing takes weak references to them): the
# replay decoder builds them through a mutable twin of the same layout (fastinit.twin_builder),
# which CPython refuses for classes whose weak reference slot follows named slots.


@frozen(weakref_slot=False)
class WanAddressObserved:
    """The WAN interface as seen now; `address` is the IPv4 address the tunnel should use.

    `autoconf` (v2): a DHCP client owns the address (OpenBSD's `inet autoconf`, AUTOCONF4):
    it may be missing for a while during a DHCP exchange, which the planner waits out.
    `default_route` (v3): whether the IPv4 default route leaves through the WAN; None where
    the platform does not observe it (OpenBSD, and every record before v3).
    `owner` (v4): who restart-wan would tell (see world/wanowner.py: "networkd",
    "dhclient", "command", ...); "none" when nobody can be told (then the WAN is only
    observed); None where the platform does not say (OpenBSD: netstart always can)."""

    TYPE: ClassVar[str] = "wan-address-observed"
    VERSION: ClassVar[int] = 4

    interface: str
    address: str | None
    link_up: bool
    exists: bool = True
    addresses: tuple[str, ...] = field(default=(), converter=_strs)
    autoconf: bool = False
    default_route: bool | None = None
    owner: str | None = None


@frozen(weakref_slot=False)
class ProbeObserved:
    """One probe (a ping) and its outcome; `rtt_ms` is None when it failed."""

    TYPE: ClassVar[str] = "probe-observed"
    VERSION: ClassVar[int] = 1

    family: Family
    target: str
    ok: bool
    rtt_ms: float | None = None
    detail: str = ""


@frozen(weakref_slot=False)
class WanProbed:
    """With several WANs: one IPv4 probe sent out of `interface` (ping -I) and its outcome;
    the fold keeps each WAN's health from these (reconciler.model.failover)."""

    TYPE: ClassVar[str] = "wan-probed"
    VERSION: ClassVar[int] = 1

    interface: str
    target: str
    ok: bool
    rtt_ms: float | None = None
    detail: str = ""


@frozen(weakref_slot=False)
class WanChosen:
    """With several WANs: the failover policy's choice and why (reconciler.model.failover).
    `kind` is "failover" (away from a failed WAN), "failback" (to a preferred WAN healthy
    long enough) or "held" (a switch was due but the hour's budget is spent: `interface`
    stays, said once)."""

    TYPE: ClassVar[str] = "wan-chosen"
    VERSION: ClassVar[int] = 1

    interface: str
    previous: str
    kind: str
    reason: str


@frozen(weakref_slot=False)
class TunnelObserved:
    """The tunnel interface as configured in the kernel now.

    `ttl` (v2): the TTL of the encapsulating IPv4 packets; None where the platform does not
    report it (or copies it from the inner packet).
    `default_route` (v3): the IPv6 default route (::/0 in the main table): "tunnel" through
    this interface, "other" only through another one (a native route we did not make),
    "none"; None where the platform does not report it."""

    TYPE: ClassVar[str] = "tunnel-observed"
    VERSION: ClassVar[int] = 3

    interface: str
    exists: bool
    up: bool
    local: str | None
    remote: str | None
    mode: str | None = None
    ttl: int | None = None
    default_route: str | None = None


@frozen(weakref_slot=False)
class HostnameFileObserved:
    """The digest (sha256, hex) of the tunnel's hostname file; None when it is missing."""

    TYPE: ClassVar[str] = "hostname-file-observed"
    VERSION: ClassVar[int] = 1

    path: str
    digest: str | None


@frozen(weakref_slot=False)
class EndpointObserved:
    """The client endpoint Hurricane Electric has for the tunnel.

    `source` says how we know: "update" (HE's answer to our update) or "tunnel-info".
    `for_local` is our WAN address when HE confirmed it: behind NAT the two differ.
    """

    TYPE: ClassVar[str] = "endpoint-observed"
    VERSION: ClassVar[int] = 1

    address: str | None
    source: str
    for_local: str | None = None


@frozen(weakref_slot=False)
class ActionStarted:
    """Recorded durably before an action runs, so a crash in the middle shows after restart.

    `causes` are the sequence numbers of the facts the decision rested on.
    """

    TYPE: ClassVar[str] = "action-started"
    VERSION: ClassVar[int] = 1

    key: str
    action: str
    reason: str
    causes: tuple[int, ...] = field(default=(), converter=_ints)


@frozen(weakref_slot=False)
class ActionSucceeded:
    """An action finished and did what it should."""

    TYPE: ClassVar[str] = "action-succeeded"
    VERSION: ClassVar[int] = 1

    key: str
    action: str
    message: str = ""
    causes: tuple[int, ...] = field(default=(), converter=_ints)


@frozen(weakref_slot=False)
class ActionFailed:
    """An action failed; `kind` decides whether and when the planner may try it again.

    `unconfirmed` (v2): a temporary failure that may have taken effect all the same (an HE
    update that went out and got no complete answer: HE may have applied it).
    """

    TYPE: ClassVar[str] = "action-failed"
    VERSION: ClassVar[int] = 2

    key: str
    action: str
    kind: FailureKind
    message: str
    retry_after: float | None = None
    causes: tuple[int, ...] = field(default=(), converter=_ints)
    unconfirmed: bool = False


@frozen(weakref_slot=False)
class ConfigLoaded:
    """A configuration took effect: its digest and a summary free of secrets.

    The probe thresholds travel in the fact so that the fold (and a replay, years later)
    applies the hysteresis the daemon applied at the time.
    """

    TYPE: ClassVar[str] = "config-loaded"
    VERSION: ClassVar[int] = 1

    digest: str
    path: str
    summary: dict[str, Any] = field(factory=dict, hash=False)
    fail_after: dict[str, int] = field(factory=dict, hash=False)
    recover_after: dict[str, int] = field(factory=dict, hash=False)


@frozen(weakref_slot=False)
class DaemonStarted:
    TYPE: ClassVar[str] = "daemon-started"
    VERSION: ClassVar[int] = 1

    pid: int
    version: str


@frozen(weakref_slot=False)
class DaemonStopped:
    TYPE: ClassVar[str] = "daemon-stopped"
    VERSION: ClassVar[int] = 1

    reason: str


@frozen(weakref_slot=False)
class HookRan:
    """The [notify] hook ran for one notification (reconciler.model.notices), and how it ended.

    `cause` is the sequence number of the fact the notification came from; `status` the
    hook's exit status (None when it could not start or was killed at its timeout);
    `outcome` "ok", "failed", "timeout" or "not-started". `dropped` counts the notifications
    a full queue dropped since the run before, so that a storm of them shows in the log.
    """

    TYPE: ClassVar[str] = "hook-ran"
    VERSION: ClassVar[int] = 1

    event: str
    cause: int
    outcome: str
    status: int | None
    seconds: float
    detail: str = ""
    dropped: int = 0


@frozen(weakref_slot=False)
class ObservationsCounted:
    """Observations of one source that changed nothing, counted instead of recorded one by one.

    The daemon records an observation when it is news (it changes something a decision reads,
    reconciler.model.news); the others are counted, and the counts recorded as this fact, one
    per source (the envelope's source), at most once per `[daemon] quiet_summary_interval`,
    before the next fact that changes something, and when the daemon stops. It proves the
    daemon was watching; the fold takes nothing from it. `observed` is the counted fact type.
    """

    TYPE: ClassVar[str] = "observations-counted"
    VERSION: ClassVar[int] = 1

    observed: str
    count: int
    first_at: float
    last_at: float


Fact = (
    WanAddressObserved
    | ProbeObserved
    | TunnelObserved
    | HostnameFileObserved
    | EndpointObserved
    | ActionStarted
    | ActionSucceeded
    | ActionFailed
    | ConfigLoaded
    | DaemonStarted
    | DaemonStopped
    | HookRan
    | ObservationsCounted
    | WanProbed
    | WanChosen
)

FACT_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        WanAddressObserved,
        ProbeObserved,
        TunnelObserved,
        HostnameFileObserved,
        EndpointObserved,
        ActionStarted,
        ActionSucceeded,
        ActionFailed,
        ConfigLoaded,
        DaemonStarted,
        DaemonStopped,
        HookRan,
        ObservationsCounted,
        WanProbed,
        WanChosen,
    )
}

# (type, version) -> function turning that version's fields into the next version's.
# When a fact's shape changes: bump VERSION, register the upcaster here, never edit history.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    # v1 did not know whether a DHCP client owned the WAN address: it was read as static.
    (WanAddressObserved.TYPE, 1): lambda d: {**d, "autoconf": False},
    # v2 did not observe the IPv4 default route: unknown.
    (WanAddressObserved.TYPE, 2): lambda d: {**d, "default_route": None},
    # v3 did not say who owns the WAN: the platform's own way, as before.
    (WanAddressObserved.TYPE, 3): lambda d: {**d, "owner": None},
    # v1 did not observe the tunnel's TTL: unknown.
    (TunnelObserved.TYPE, 1): lambda d: {**d, "ttl": None},
    # v2 did not observe the IPv6 default route: unknown.
    (TunnelObserved.TYPE, 2): lambda d: {**d, "default_route": None},
    # v1 recorded a failure without an answer as a plain failure.
    (ActionFailed.TYPE, 1): lambda d: {**d, "unconfirmed": False},
}


@frozen(weakref_slot=False)
class UnknownFact:
    """A record this release cannot type (written by a newer one, or malformed): kept raw."""

    type: str
    version: int
    data: Mapping[str, Any] = field(hash=False)
    problem: str = ""


@frozen(weakref_slot=False)
class Envelope:
    """A fact as it stands in the log: its sequence number, UTC time and source."""

    seq: int
    at: float
    source: str
    fact: Fact | UnknownFact


def to_record(fact: Fact, *, at: float, source: str) -> dict[str, Any]:
    """The msgpack-ready mapping for `fact` (tuples become lists in msgpack)."""
    return {
        "t": fact.TYPE,
        "v": fact.VERSION,
        "at": float(at),
        "src": source,
        "d": attrs.asdict(fact, recurse=False),
    }


def from_record(seq: int, record: Mapping[str, Any]) -> Envelope:
    """Type a record read from the log, upcasting old versions; unknown ones stay raw."""
    fast = _fast_envelope(seq, record)
    if fast is not None:
        return fast
    at = record.get("at", 0.0)
    source = record.get("src", "")
    type_name = record.get("t", "")
    version = record.get("v", 0)
    data = record.get("d", {})
    at = float(at) if isinstance(at, int | float) else 0.0
    source = source if isinstance(source, str) else repr(source)
    fact = _typed(type_name, version, data)
    return Envelope(seq=seq, at=at, source=source, fact=fact)


def _typed(type_name: Any, version: Any, data: Any) -> Fact | UnknownFact:
    raw = dict(data) if isinstance(data, Mapping) else {"value": data}
    if not isinstance(type_name, str) or not isinstance(version, int):
        return UnknownFact(str(type_name), -1, raw, "record without a type or version")
    cls = FACT_TYPES.get(type_name)
    if cls is None:
        return UnknownFact(type_name, version, raw, "unknown fact type")
    if version > cls.VERSION:
        return UnknownFact(type_name, version, raw, f"written by a newer schema (v{version})")
    fields = raw
    for step in range(version, cls.VERSION):
        upcast = UPCASTERS.get((type_name, step))
        if upcast is None:
            return UnknownFact(type_name, version, raw, f"no upcaster from v{step}")
        fields = upcast(fields)
    known = {a.name for a in attrs.fields(cls)}
    given = {k: v for k, v in fields.items() if k in known}
    problem = _field_problem(cls, given)
    if problem is not None:
        return UnknownFact(type_name, version, raw, f"malformed: {problem}")
    try:
        fact: Fact = cls(**given)
    except (TypeError, ValueError) as exc:
        return UnknownFact(type_name, version, raw, f"malformed: {exc}")
    return fact


# --- field types, checked on decoding ----------------------------------------------------
#
# Each field's annotation becomes a predicate over the value msgpack gives back (a tuple
# field arrives as a list; a float may arrive as an int). The general path names the first
# field that does not fit; the fast path asks one generated expression per type.

_Check = Callable[[Any], bool]


def _check_for(hint: Any) -> _Check:
    """A predicate accepting the msgpack values that fit the annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value: True
    if hint is type(None):
        return lambda value: value is None
    if hint is bool or hint is int or hint is str:
        return lambda value: type(value) is hint
    if hint is float:
        return lambda value: type(value) is float or type(value) is int
    if origin is Literal:
        allowed = frozenset(args)
        return lambda value: type(value) is str and value in allowed
    if origin is typing.Union or origin is types.UnionType:
        options = tuple(_check_for(arg) for arg in args)
        return lambda value: any(check(value) for check in options)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _check_for(args[0])
        return lambda value: type(value) in (list, tuple) and all(item(v) for v in value)
    if origin is dict and len(args) == 2:
        key, item = _check_for(args[0]), _check_for(args[1])
        return lambda value: (
            type(value) is dict and all(key(k) and item(v) for k, v in value.items())
        )
    raise TypeError(f"no decoding check for the annotation {hint!r}")


def _field_checks(cls: type[Any]) -> dict[str, tuple[_Check, str]]:
    hints = typing.get_type_hints(cls)
    return {a.name: (_check_for(hints[a.name]), str(a.type)) for a in attrs.fields(cls)}


_FIELD_CHECKS = {cls: _field_checks(cls) for cls in FACT_TYPES.values()}


def _field_problem(cls: type[Any], fields: Mapping[str, Any]) -> str | None:
    """The first field of `fields` whose value does not fit `cls`'s annotation, described."""
    checks = _FIELD_CHECKS[cls]
    for name, value in fields.items():
        check, wanted = checks[name]
        if not check(value):
            return f"{name} should be {wanted}, not {type(value).__name__} {value!r:.40}"
    return None


def _checked_builder(cls: type[Any], make: Callable[..., Any]) -> Callable[[tuple[Any, ...]], Any]:
    """`build(values)`: `make(*values)` when the field values (in field order) fit `cls`'s
    annotations, else None.

    Generated as one boolean expression over unpacked locals: plain types, None and literals
    inline (a few ns each), containers through their predicate (rarer facts only).
    """
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {"_make": make, "_str": str, "_int": int, "_bool": bool}
    namespace["_float"] = float
    names = [f"a{i}" for i in range(len(attrs.fields(cls)))]
    terms = [
        _fits_term(hints[a.name], name, f"_c{i}", namespace)
        for i, (a, name) in enumerate(zip(attrs.fields(cls), names, strict=True))
    ]
    lines = [
        "def build(v):",
        f"    {', '.join(names)}, = v",
        f"    if {' and '.join(terms) or 'True'}:",
        f"        return _make({', '.join(names)})",
        "    return None",
    ]
    exec("\n".join(lines), namespace)  # generated from field names and types only
    build: Callable[[tuple[Any, ...]], Any] = namespace["build"]
    build.__qualname__ = f"_checked_builder({cls.__qualname__})"
    return build


def _fits_term(hint: Any, value: str, name: str, namespace: dict[str, Any]) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (bool, int, str):
        return f"{value}.__class__ is _{hint.__name__}"
    if hint is float:
        return f"({value}.__class__ is _float or {value}.__class__ is _int)"
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return f"({value} is None or {_fits_term(rest[0], value, name, namespace)})"
    if origin is Literal:
        namespace[name] = frozenset(args)
        return f"({value}.__class__ is _str and {value} in {name})"
    namespace[name] = _check_for(hint)
    return f"{name}({value})"


# --- the fast path: a record exactly as `to_record` of this version writes it -------------
#
# Replay decodes a million records; the general path above filters every mapping through
# attrs.fields. A record of the current version whose fields are exactly the class's (the
# only kind this version writes) is built straight from its values instead. Anything else
# (old versions, extra or missing keys, odd types) takes the general path, so both agree.


class _Decoder:
    """How to build one fact type from a current-version field mapping."""

    __slots__ = ("build", "count", "values", "version")

    def __init__(self, cls: type[Any]) -> None:
        names = [a.name for a in attrs.fields(cls)]
        self.version: int = cls.VERSION
        self.count = len(names)
        # itemgetter of one name returns the bare value, not a 1-tuple: wrap it.
        getter = operator.itemgetter(*names)
        self.values: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            getter if len(names) > 1 else lambda d: (getter(d),)
        )
        try:
            make: Callable[..., Any] = twin_builder(cls)
        except TypeError:
            make = cls  # converters: attrs' own __init__ must run them
        # make(*values) when every value has its field's type, else None.
        self.build = _checked_builder(cls, make)


_DECODERS = {name: _Decoder(cls) for name, cls in FACT_TYPES.items()}
_make_envelope = twin_builder(Envelope)
_envelope_values = operator.itemgetter("t", "v", "at", "src", "d")


def _fast_envelope(seq: int, record: Mapping[str, Any]) -> Envelope | None:
    """The envelope for a well-formed current record, or None to take the general path."""
    try:
        type_name, version, at, source, data = _envelope_values(record)
    except (KeyError, TypeError):
        return None
    decoder = _DECODERS.get(type_name) if type(type_name) is str else None
    if (
        decoder is None
        or type(at) is not float
        or type(source) is not str
        or type(data) is not dict
        or type(version) is not int
        or version != decoder.version
        or len(data) != decoder.count
    ):
        return None
    try:
        values = decoder.values(data)
    except KeyError:
        return None  # a missing field: the general path says why
    try:
        fact = decoder.build(values)
    except (TypeError, ValueError):
        return None  # a converter's refusal: the general path says why
    if fact is None:
        return None  # a field of the wrong type: the general path says which
    return _make_envelope(seq, at, source, fact)
