"""A WAN back after IPv4 was judged down while it had no address (a renumbering, a PPPoE
redial): IPv4 down holds every action, so the daemon probes IPv4 at once when the WAN is
back, not at the probe's next interval (60 s by default)."""

from __future__ import annotations

import time

from reconciler.lab.topology import Lab, wait_until
from reconciler.model.facts import ProbeObserved

NEW_ADDRESS = "203.0.113.12"


def test_the_wan_back_is_probed_at_once(lab_available: None) -> None:
    """IPv4 probed every 30 s and judged down at the first failure (the WAN had no address
    at start-up): the new address is repaired in seconds, not at the next probe."""
    with Lab() as lab:
        lab.remove_wan_address()
        lab.start_daemon(probe_ipv4__interval=30.0, probe_ipv4__fail_after=1)
        wait_until(
            lambda: any(
                isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv4" and not e.fact.ok
                for e in lab.envelopes()
            ),
            timeout=20,
            what="the IPv4 probe failing",
        )
        time.sleep(1.0)
        seconds = lab.move_wan_and_time_repair(NEW_ADDRESS, timeout=25)
        assert seconds < 10, f"repaired after {seconds:.1f} s: waited for the next probe"
        assert lab.stop_daemon() == 0
