"""What counts as news: whether folding an observation changed anything a decision reads.

The daemon records an observation only when it is news (reconciler.recorder); one that
changes nothing is counted and summarised. "Changes nothing" is judged on the folded state,
not on the fact: `changes_nothing(before, after)` compares the two states through
`decision_view`, which keeps every value the planner and the fold read and drops only what
neither reads:

- the state's own `seq` and `at` (the position of the last fact, read by neither);
- a probe family's `consecutive_ok` while it is up: the fold reads it only to bring a family
  up (`recover_after`), and a failure resets it;
- a successful probe's `last_seq` and `last_at`: read only while the last probe failed (the
  update-missed-HE rule, the causes of a restart), and, as an order, by the proof "IPv6
  worked across a tunnel observed up before the probe" (`_local_proven_by_probe`). That
  order is kept: the view holds whether the probe came after the tunnel's observation, so a
  first success after a new tunnel observation is news, and the ones after it are not.

- HE's endpoint view's `seq` and `at`: the planner reads the seq only as an order against
  each update's last success ("HE accepted this address and has said nothing different
  since") and last start ("an update of unknown outcome went out since"), and names it as a
  cause; the view keeps both orders, so the same endpoint seen again after a successful or
  a started update is news, and seen again otherwise is not (its cause is then the first
  fact that showed it, as for the WAN and the tunnel).

Everything else (a status, a failure count, a view's seq, an action record, the endpoint's
address, the thresholds, a family's outage marks) takes part, so any change to it is news:
the success that ends an outage begun by an address change is news even while the verdict
stayed up, so that the log (and `reconciler report`) holds the end the hooks were told.
The property test in tests/test_recorder_news.py checks the claim the daemon rests on:
recording every observation and recording only news give the same plan at every point.
"""

from __future__ import annotations

import operator
from typing import Any

import attrs

from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.state import EndpointView, ObservedState, ProbeView

__all__ = ["changes_nothing", "decision_view"]


# The state's and a probe view's fields as tuples, in declaration order: a field added to
# either takes part in the comparison by default (news), and only the ones named here are
# dropped or replaced.
_STATE_FIELDS = [a.name for a in attrs.fields(ObservedState)]
_KEPT = [name for name in _STATE_FIELDS if name not in ("seq", "at", "probes", "endpoint")]
_kept_values = operator.attrgetter(*_KEPT)
_PROBE_FIELDS = [a.name for a in attrs.fields(ProbeView)]
_probe_values = operator.attrgetter(*_PROBE_FIELDS)
_OK, _LAST_SEQ, _LAST_AT = (
    _PROBE_FIELDS.index(name) for name in ("consecutive_ok", "last_seq", "last_at")
)
_ENDPOINT_FIELDS = [a.name for a in attrs.fields(EndpointView) if a.name not in ("seq", "at")]
_endpoint_values = operator.attrgetter(*_ENDPOINT_FIELDS)


def decision_view(state: ObservedState) -> tuple[Any, ...]:
    """`state` without the values no decision reads (see the module docstring), as a value
    to compare."""
    probes = tuple(
        sorted((family, _probe_view(view, state)) for family, view in state.probes.items())
    )
    endpoint = state.endpoint
    if endpoint is None:
        return _kept_values(state), probes, None, ()
    order = tuple(
        sorted(
            (key, record.last_success_seq > endpoint.seq, record.last_started_seq > endpoint.seq)
            for key, record in state.actions.items()
            if record.kind == UpdateHeEndpoint.KIND
        )
    )
    return _kept_values(state), probes, _endpoint_values(endpoint), order


def changes_nothing(before: ObservedState, after: ObservedState) -> bool:
    """Whether `after` (the fold of one more fact onto `before`) decides nothing differently."""
    if after.wan != before.wan or after.tunnel != before.tunnel:
        return False  # the common news, found without building the views
    return decision_view(before) == decision_view(after)


def _probe_view(view: ProbeView, state: ObservedState) -> tuple[Any, ...]:
    values = list(_probe_values(view))
    if view.status == "up":
        values[_OK] = 0
    if view.last_ok is True:
        tunnel = state.tunnel
        values[_LAST_SEQ] = tunnel is not None and view.last_seq > tunnel.seq
        values[_LAST_AT] = 0.0
    return tuple(values)
