"""The lab with the tunnel's routes and owner as Linux has them (issue 21): the IPv6 default
route watched and repaired at once; systemd-networkd (run in the router namespace by
reconciler.testing.networkd) owning the tunnel link."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.lab.topology import TUNNEL_INTERFACE, Lab, wait_until
from reconciler.model.facts import ActionStarted, ActionSucceeded, ProbeObserved


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def _ipv6_default(lab: Lab) -> list[dict[str, Any]]:
    shown = subprocess.run(
        ["ip", "-n", lab.router_ns, "-6", "-j", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    routes: list[dict[str, Any]] = json.loads(shown.stdout)
    return routes


def _converged(lab: Lab) -> None:
    def ipv6_ok() -> bool:
        return any(
            isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" and e.fact.ok
            for e in lab.envelopes()
        )

    wait_until(ipv6_ok, timeout=30, what="a good IPv6 probe")
    assert lab.daemon_running(), lab.daemon_stderr()


def test_a_deleted_ipv6_default_route_is_back_within_a_second(lab: Lab) -> None:
    """`networkctl reconfigure` (or anyone) deletes ::/0: the route watch sees it and the
    tunnel is repaired at once, instead of after fail_after IPv6 probes (minutes)."""
    lab.start_daemon(probe_ipv6__interval=60.0, tunnel__observe_interval=60.0)
    _converged(lab)
    assert [r["dev"] for r in _ipv6_default(lab)] == [TUNNEL_INTERFACE]
    subprocess.run(
        ["ip", "-n", lab.router_ns, "-6", "route", "del", "default", "dev", TUNNEL_INTERFACE],
        check=True,
        timeout=10,
    )
    deleted = time.monotonic()
    wait_until(lambda: _ipv6_default(lab), timeout=5, interval=0.02, what="::/0 back")
    took = time.monotonic() - deleted
    assert took < 1.0, f"::/0 came back after {took:.2f} s"
    wait_until(lambda: _facts(lab, ActionSucceeded), timeout=5, what="the repair's outcome")
    reasons = [f.reason for f in _facts(lab, ActionStarted)]
    assert any("no IPv6 default route (::/0)" in reason for reason in reasons), reasons


def _facts(lab: Lab, cls: type[Any]) -> list[Any]:
    """The restart-tunnel facts of type `cls` in the log."""
    return [
        e.fact
        for e in lab.envelopes()
        if isinstance(e.fact, cls) and e.fact.action == "restart-tunnel"
    ]
