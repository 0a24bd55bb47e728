"""Two WANs, one tunnel (issue 23), end to end: the real daemon in a lab with two ISPs.

wan0 (203.0.113.10, metric 100) and wan1 (198.51.100.10, metric 200) both reach HE's
namespace. Probes every second, fail_after 2: a failover takes a few seconds; the
failback waits `failback_after` (a few seconds here, minutes on a router).
"""

from __future__ import annotations

import json
import time
from typing import Any

from reconciler.lab.topology import (
    FIRST_WAN_ADDRESS,
    SECOND_WAN_ADDRESS,
    SECOND_WAN_INTERFACE,
    WAN_INTERFACE,
    Lab,
    wait_until,
)
from reconciler.model.facts import ActionStarted, WanChosen, WanProbed
from tests.lab.test_notify_metrics import hook_runs, recording_hook, samples
from tests.lab.test_scenarios import _assert_no_key_anywhere, _start_converged

PROBES = {
    "probe_ipv4__interval": 1.0,
    "probe_ipv4__timeout": 0.5,
    "probe_ipv4__fail_after": 2,
}


def _chosen(lab: Lab) -> list[Any]:
    return [e for e in lab.envelopes() if isinstance(e.fact, WanChosen)]


def _updates_started(lab: Lab) -> list[Any]:
    return [
        e
        for e in lab.envelopes()
        if isinstance(e.fact, ActionStarted) and e.fact.action == "update-he-endpoint"
    ]


def _on(lab: Lab, address: str) -> bool:
    """The tunnel runs from `address`, HE points at it and IPv6 crosses it."""
    return (
        lab.tunnel_local() == address
        and lab.he_tunnel_remote() == address
        and lab.ping6_through_tunnel(timeout=0.5)
    )


def _active_wan(textfile: Any) -> dict[str, float]:
    found = samples(textfile.read_text()) if textfile.exists() else {}
    return {
        dict(labels)["interface"]: value
        for (name, labels), value in found.items()
        if name == "reconciler_active_wan"
    }


def test_carrier_lost_fails_over_once_then_fails_back_after_failback_after(
    lab_available: None,
) -> None:
    """wan0 loses its carrier: within a few probe intervals the tunnel moves to wan1 with
    exactly one HE update and IPv6 crosses it; wan0 back: nothing moves before
    failback_after, then exactly one update back to wan0. The hook hears wan-failover and
    wan-failback, the metrics name the active WAN."""
    failback_after = 6.0
    with Lab(second_wan=True) as lab:
        program, runs = recording_hook(lab)
        textfile = lab.workdir / "reconciler.prom"
        _start_converged(
            lab,
            failover__failback_after=failback_after,
            notify__command=[str(program)],
            metrics__textfile=str(textfile),
            **PROBES,
        )
        wait_until(lambda: _active_wan(textfile) == {"wan0": 1.0, "wan1": 0.0}, timeout=10)
        assert _chosen(lab) == [] and _updates_started(lab) == []
        lost = time.monotonic()
        lab.isp_link(0, up=False)
        wait_until(lambda: _on(lab, SECOND_WAN_ADDRESS), timeout=20, what="IPv6 via wan1")
        repaired = time.monotonic() - lost
        (failover,) = _chosen(lab)
        assert (failover.fact.previous, failover.fact.interface) == (
            WAN_INTERFACE,
            SECOND_WAN_INTERFACE,
        )
        assert failover.fact.kind == "failover"
        assert f"{WAN_INTERFACE} failed 2 probes at" in failover.fact.reason
        assert "failover budget 3/4 left this hour" in failover.fact.reason
        assert [e.fact.key for e in _updates_started(lab)] == [
            f"update-he-endpoint:{SECOND_WAN_ADDRESS}"
        ]
        # The choice follows the probe that brought wan0 down at once (a probe interval at
        # most: a pass may be restarting wan0 meanwhile); the repair takes what an address
        # change takes (seconds, more in the UML guest).
        down = [
            e
            for e in lab.envelopes()
            if isinstance(e.fact, WanProbed) and e.fact.interface == WAN_INTERFACE
        ]
        failed = [e for e in down if not e.fact.ok]
        assert failover.at - failed[1].at < 2.0, lab.daemon_stderr()
        assert repaired < 30, lab.daemon_stderr()
        wait_until(lambda: _active_wan(textfile) == {"wan0": 0.0, "wan1": 1.0}, timeout=10)
        status = json.loads(lab.reconciler("status", "--json").stdout)["failover"]
        assert status["active"] == SECOND_WAN_INTERFACE
        assert status["why"] == failover.fact.reason
        assert [w["status"] for w in status["wans"]] == ["down", "up"]
        assert status["switches_last_hour"] == 1 and status["due"] is None
        shown = lab.reconciler("diff")
        assert f"active:   wan1 ({failover.fact.reason})" in shown.stdout
        assert shown.returncode == 0, shown.stdout + shown.stderr

        back = time.monotonic()
        lab.isp_link(0, up=True)
        wait_until(lambda: len(_chosen(lab)) == 2, timeout=30, what="the failback")
        waited = time.monotonic() - back
        assert waited >= failback_after
        failback_envelope = _chosen(lab)[1]
        failback = failback_envelope.fact
        # wan0 came up at its first good probe after the failover; nothing moved before it
        # had been up for failback_after
        came_up = next(
            e
            for e in lab.envelopes()
            if isinstance(e.fact, WanProbed)
            and e.fact.interface == WAN_INTERFACE
            and e.fact.ok
            and e.seq > failover.seq
        )
        assert failback_envelope.at - came_up.at >= failback_after
        assert (failback.kind, failback.interface) == ("failback", WAN_INTERFACE)
        wait_until(lambda: _on(lab, FIRST_WAN_ADDRESS), timeout=20, what="IPv6 via wan0")
        assert [e.fact.key for e in _updates_started(lab)] == [
            f"update-he-endpoint:{SECOND_WAN_ADDRESS}",
            f"update-he-endpoint:{FIRST_WAN_ADDRESS}",
        ]
        assert lab.he_update_calls() == 2
        assert lab.stop_daemon() == 0
        told = [r for r in hook_runs(runs) if r["RECONCILER_EVENT"].startswith("wan-")]
        assert [
            (
                r["RECONCILER_EVENT"],
                r["RECONCILER_PREVIOUS_INTERFACE"],
                r["RECONCILER_WAN_INTERFACE"],
            )
            for r in told
        ] == [("wan-failover", "wan0", "wan1"), ("wan-failback", "wan1", "wan0")]
        assert "failover budget" in told[0]["RECONCILER_MESSAGE"]
        replay = lab.reconciler("replay").stdout
        assert f"failover from wan0 to wan1: {failover.fact.reason}" in replay
        assert "failback from wan1 to wan0: " in replay
        _assert_no_key_anywhere(lab, lab.keys_used)


def test_both_wans_down_sends_nothing_and_repairs_when_one_returns(lab_available: None) -> None:
    """Both carriers lost: no switch, no HE update, the tunnel left as it was; wan1 back
    alone: the tunnel moves there with one update."""
    with Lab(second_wan=True) as lab:
        _start_converged(lab, failover__failback_after=60.0, **PROBES)
        lab.isp_link(0, up=False)
        lab.isp_link(1, up=False)
        time.sleep(4.0)  # four probe intervals
        assert _chosen(lab) == [] and _updates_started(lab) == []
        assert lab.tunnel_local() == FIRST_WAN_ADDRESS
        assert lab.he_update_calls() == 0
        lab.isp_link(1, up=True)
        wait_until(lambda: _on(lab, SECOND_WAN_ADDRESS), timeout=20, what="IPv6 via wan1")
        assert len(_chosen(lab)) == 1
        assert lab.he_update_calls() == 1
        assert lab.stop_daemon() == 0


def test_upstream_broken_with_the_link_up_fails_over(lab_available: None) -> None:
    """wan0's ISP stops forwarding (nothing gets back to it) while wan0 keeps its carrier,
    address and routes (the routing table still prefers it): wan0's own probes fail, the
    tunnel moves to wan1 with one HE update (the update and the tunnel leave through wan1,
    bound to it) and IPv6 crosses it."""
    with Lab(second_wan=True) as lab:
        _start_converged(lab, failover__failback_after=60.0, **PROBES)
        lab.break_upstream(0)
        wait_until(lambda: _on(lab, SECOND_WAN_ADDRESS), timeout=20, what="IPv6 via wan1")
        (failover,) = _chosen(lab)
        assert (failover.fact.kind, failover.fact.interface) == ("failover", "wan1")
        assert [e.fact.key for e in _updates_started(lab)] == [
            f"update-he-endpoint:{SECOND_WAN_ADDRESS}"
        ]
        assert lab.he_update_calls() == 1
        link = lab.tunnel_state()
        info = (link or {}).get("linkinfo", {}).get("info_data", {})
        assert info.get("link") == SECOND_WAN_INTERFACE, link
        assert lab.stop_daemon() == 0


def test_flapping_wan_spends_the_budget_then_stays_and_says_so_once(lab_available: None) -> None:
    """wan0 flaps (carrier lost and back every 3 s, for 30 s) with a budget of 2 switches an
    hour: at most 2 HE updates, then the tunnel stays where it is and needs-attention is told
    once (the issue's 5 s for 2 minutes, shortened; the model's property covers the rest)."""
    with Lab(second_wan=True) as lab:
        program, runs = recording_hook(lab)
        _start_converged(
            lab,
            failover__failback_after=1.0,
            failover__budget_per_hour=2,
            notify__command=[str(program)],
            **PROBES,
        )
        end = time.monotonic() + 30.0
        up = True
        while time.monotonic() < end:
            up = not up
            lab.isp_link(0, up=up)
            time.sleep(3.0)
        lab.isp_link(0, up=True)
        wait_until(
            lambda: any(e.fact.kind == "held" for e in _chosen(lab)),
            timeout=10,
            what=f"held; chosen: {[e.fact for e in _chosen(lab)]}",
        )
        time.sleep(2.0)
        kinds = [e.fact.kind for e in _chosen(lab)]
        assert kinds == ["failover", "failback", "held"], kinds
        assert len(_updates_started(lab)) <= 2
        assert lab.he_update_calls() <= 2
        assert lab.stop_daemon() == 0
        attention = [r for r in hook_runs(runs) if r["RECONCILER_EVENT"] == "needs-attention"]
        assert len(attention) == 1
        assert "failover budget 0/2 left this hour" in attention[0]["RECONCILER_MESSAGE"]
