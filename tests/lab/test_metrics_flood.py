"""/metrics flooded with idle connections while the daemon is held to 128 file descriptors
(as a login class or ulimit may hold it): a WAN change is still repaired within seconds, and
/metrics answers again once the flood ends. The flood runs in the router's namespace, over
its loopback, as any local user could."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.lab.topology import Lab, wait_until
from reconciler.model.facts import ProbeObserved
from tests.lab.test_notify_metrics import samples, scrape

NEW_ADDRESS = "203.0.113.11"
LISTEN_PORT = 9469
FD_LIMIT = 128
IDLE_CONNECTIONS = 150


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    with Lab() as built:
        yield built


def ipv6_ok(lab: Lab) -> bool:
    return any(
        isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" and e.fact.ok
        for e in lab.envelopes()
    )


def test_idle_metrics_connections_do_not_stop_a_repair_under_a_low_fd_limit(lab: Lab) -> None:
    lab.start_daemon(nofile=FD_LIMIT, metrics__listen=f"127.0.0.1:{LISTEN_PORT}")
    wait_until(lambda: ipv6_ok(lab), timeout=30, what="a good IPv6 probe")
    wait_until(lambda: "reconciler_up" in scrape(lab), timeout=10, what="/metrics")
    assert lab.daemon is not None
    limits = Path(f"/proc/{lab.daemon.pid}/limits").read_text()  # what it really runs under
    assert re.search(rf"^Max open files\s+{FD_LIMIT}\s+{FD_LIMIT}\s", limits, re.M), limits
    with lab.idle_connections(LISTEN_PORT, IDLE_CONNECTIONS) as held:
        assert held > 0
        time.sleep(1.0)  # the flood's reconnecting rounds running
        repair_seconds = lab.move_wan_and_time_repair(NEW_ADDRESS, timeout=20)
    # typically 0.3 s, as without the flood; the old server: no repair within 20 s
    assert repair_seconds < 10, f"the repair took {repair_seconds:.1f} s under the flood"
    assert "Too many open files" not in lab.daemon_stderr()
    wait_until(lambda: "reconciler_up" in scrape(lab), timeout=10, what="/metrics again")
    assert (
        samples(scrape(lab))[
            ("reconciler_wan_address_info", (("address", NEW_ADDRESS), ("interface", "wan0")))
        ]
        == 1
    )
    assert lab.stop_daemon() == 0
