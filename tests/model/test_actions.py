"""Actions: idempotency keys come from targets; reasons and causes do not change identity."""

from __future__ import annotations

from reconciler.model.actions import (
    ACTION_ORDER,
    Outcome,
    ReloadPf,
    RestartTunnel,
    RestartWan,
    RewriteHostname,
    UpdateHeEndpoint,
)


def test_keys_name_the_kind_and_the_target() -> None:
    """Keys read as `<kind>:<target>`, the form diff, replay and logs print."""
    assert RestartWan("em0").key == "restart-wan:em0"
    assert UpdateHeEndpoint("203.0.113.7", "203.0.113.7").key == "update-he-endpoint:203.0.113.7"
    assert UpdateHeEndpoint(None, "10.0.0.2").key == "update-he-endpoint:10.0.0.2"
    assert RewriteHostname("/etc/hostname.gif0", "x", "0123456789abcdef").key == (
        "rewrite-hostname:0123456789ab"
    )
    assert RestartTunnel("gif0", "203.0.113.7", "198.51.100.1").key == (
        "restart-tunnel:203.0.113.7->198.51.100.1"
    )
    assert ReloadPf("203.0.113.7").key == "reload-pf:203.0.113.7"


def test_reason_and_causes_do_not_make_a_different_action() -> None:
    """Asking for the same effect twice, for other reasons, is one action."""
    a = RestartWan("em0", reason="no address", causes=(1,))
    b = RestartWan("em0", reason="probes down", causes=(2, 3))
    assert a == b
    assert len({a, b}) == 1


def test_the_order_lists_every_kind_once() -> None:
    """The plan order covers the closed set of actions."""
    kinds = {RestartWan.KIND, UpdateHeEndpoint.KIND, RewriteHostname.KIND}
    kinds |= {RestartTunnel.KIND, ReloadPf.KIND}
    assert set(ACTION_ORDER) == kinds
    assert len(ACTION_ORDER) == len(kinds)


def test_outcomes_say_whether_they_succeeded() -> None:
    """Only an ok outcome counts as success; a retry hint rides on temporary ones."""
    assert Outcome.ok().succeeded
    assert not Outcome.temporary("911", 600).succeeded
    assert Outcome.temporary("911", 600).retry_after == 600
    assert not Outcome.permanent("badauth").succeeded
