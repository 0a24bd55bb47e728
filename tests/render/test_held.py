"""The one JSON shape of a held-back action, shared by apply and status."""

from __future__ import annotations

from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.plan import Held
from reconciler.render.held import held_json


def test_a_timed_hold_says_until_when_in_utc() -> None:
    """A backoff hold carries key, kind, why, detail and an ISO 8601 "Z" time."""
    action = UpdateHeEndpoint("203.0.113.9", "203.0.113.9", reason="HE has 203.0.113.7")
    item = Held(action, "backoff", "1 failure(s), last: 911 from HE", 1_714_564_800.0)
    assert held_json(item) == {
        "key": "update-he-endpoint:203.0.113.9",
        "kind": "update-he-endpoint",
        "why": "backoff",
        "detail": "1 failure(s), last: 911 from HE",
        "until": "2024-05-01T12:00:00Z",
    }


def test_a_permanent_hold_has_no_until() -> None:
    """A permanent failure waits for the configuration, not for a time: until is None."""
    action = UpdateHeEndpoint("203.0.113.9", "203.0.113.9")
    assert held_json(Held(action, "permanent-failure", "badauth", None))["until"] is None
