"""The closed set of actions the planner may ask for, and the outcome of running one.

Users know actions by their kind (`restart-wan`, `update-he-endpoint`, `rewrite-hostname`,
`restart-tunnel`, `reload-pf`): diff, replay, logs and idempotency keys all use it. The key
is built from the action's target only, so asking twice for the same effect is one action;
`reason` and `causes` explain the decision and take no part in equality.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from attrs import field, frozen

__all__ = [
    "ACTION_ORDER",
    "HE_ABUSE",
    "PRIVATE_ADDRESS_REFUSED",
    "Action",
    "Outcome",
    "ReloadPf",
    "RestartTunnel",
    "RestartWan",
    "RewriteHostname",
    "UpdateHeEndpoint",
    "holds_only_its_key",
    "is_abuse",
]


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@frozen
class RestartWan:
    """Bring the WAN interface back (OpenBSD: `sh /etc/netstart em0`)."""

    KIND: ClassVar[str] = "restart-wan"

    interface: str
    reason: str = field(default="", eq=False)
    causes: tuple[int, ...] = field(default=(), eq=False, converter=_ints)

    @property
    def key(self) -> str:
        return f"{self.KIND}:{self.interface}"


@frozen
class UpdateHeEndpoint:
    """Tell Hurricane Electric our new IPv4 endpoint.

    `address` is sent as `myip`; it is None behind NAT, where HE takes the request's source
    address. `local` is the WAN address the update is made for.
    """

    KIND: ClassVar[str] = "update-he-endpoint"

    address: str | None
    local: str
    reason: str = field(default="", eq=False)
    causes: tuple[int, ...] = field(default=(), eq=False, converter=_ints)

    @property
    def key(self) -> str:
        return f"{self.KIND}:{self.address or self.local}"

    @classmethod
    def local_of(cls, key: str) -> str:
        """The WAN address an update's `key` was made for: the key names the `myip` sent,
        which is only ever the WAN address itself (desired.myip), or that WAN address."""
        return key.removeprefix(f"{cls.KIND}:")


@frozen
class RewriteHostname:
    """Write the tunnel's hostname file (OpenBSD `/etc/hostname.gif0`) with `content`."""

    KIND: ClassVar[str] = "rewrite-hostname"

    path: str
    content: str
    digest: str
    reason: str = field(default="", eq=False)
    causes: tuple[int, ...] = field(default=(), eq=False, converter=_ints)

    @property
    def key(self) -> str:
        return f"{self.KIND}:{self.digest[:12]}"


@frozen
class RestartTunnel:
    """(Re)build the tunnel with this local and remote IPv4 end."""

    KIND: ClassVar[str] = "restart-tunnel"

    interface: str
    local: str
    remote: str
    reason: str = field(default="", eq=False)
    causes: tuple[int, ...] = field(default=(), eq=False, converter=_ints)

    @property
    def key(self) -> str:
        return f"{self.KIND}:{self.local}->{self.remote}"


@frozen
class ReloadPf:
    """Reload the firewall after the tunnel changed (OpenBSD `pfctl -f /etc/pf.conf`)."""

    KIND: ClassVar[str] = "reload-pf"

    tunnel_local: str
    reason: str = field(default="", eq=False)
    causes: tuple[int, ...] = field(default=(), eq=False, converter=_ints)

    @property
    def key(self) -> str:
        return f"{self.KIND}:{self.tunnel_local}"


Action = RestartWan | UpdateHeEndpoint | RewriteHostname | RestartTunnel | ReloadPf

# The order in which a plan lists (and the daemon runs) actions; each waits for the one
# before it to succeed: a pass stops at a failure, and plan() holds ("waiting") every action
# after one that is wanted but held back.
ACTION_ORDER: tuple[str, ...] = (
    RestartWan.KIND,
    UpdateHeEndpoint.KIND,
    RewriteHostname.KIND,
    RestartTunnel.KIND,
    ReloadPf.KIND,
)

OutcomeStatus = Literal["ok", "temporary", "permanent"]


@frozen
class Outcome:
    """What running an action came to. Executors return this; they never raise into the loop.

    `retry_after` (seconds) is a hint for temporary failures, e.g. hours after HE's `abuse`;
    None lets the planner's exponential backoff decide. `unconfirmed` marks a temporary
    failure that may have taken effect all the same: an HE update that went out and got no
    answer (HE may have applied it; see the planner's "unconfirmed" hold).
    """

    status: OutcomeStatus
    message: str = ""
    retry_after: float | None = None
    unconfirmed: bool = False

    @classmethod
    def ok(cls, message: str = "") -> Outcome:
        return cls("ok", message)

    @classmethod
    def temporary(
        cls, message: str, retry_after: float | None = None, *, unconfirmed: bool = False
    ) -> Outcome:
        return cls("temporary", message, retry_after, unconfirmed)

    @classmethod
    def permanent(cls, message: str) -> Outcome:
        return cls("permanent", message)

    @property
    def succeeded(self) -> bool:
        return self.status == "ok"


# HE's legacy refusal of a private (RFC 1918) address is about the address an update sent,
# not the account or the tunnel as badauth, nohost, !yours, notfqdn and numhost are. The
# tunnelbroker client words that outcome with this prefix; the log records the message, and
# the update's key names the address it sent (or, with no myip, the WAN address it was for).
PRIVATE_ADDRESS_REFUSED = "HE refuses the private address"


def holds_only_its_key(kind: str, message: str) -> bool:
    """Whether a permanent failure of an action of `kind` with `message` is about that
    action's target alone (HE refused the address an update sent), so that it holds only
    the action with the same key; any other permanent failure holds the whole kind.

    Read from the recorded message, which every release since the refusal was classified
    has worded so: logs written before this distinction was made plan the same way."""
    return kind == UpdateHeEndpoint.KIND and message.startswith(PRIVATE_ADDRESS_REFUSED)


# HE's `abuse`: it blocks the account's updates for hours. The tunnelbroker client words that
# outcome with this prefix (every release has); the planner tells it from server trouble (a
# 5xx, 911, a time-out), which backs off from seconds, by the recorded message.
HE_ABUSE = "HE blocked updates for too many requests (abuse)"


def is_abuse(kind: str, message: str) -> bool:
    """Whether a failure of an action of `kind` with `message` is HE's `abuse` answer."""
    return kind == UpdateHeEndpoint.KIND and message.startswith(HE_ABUSE)
