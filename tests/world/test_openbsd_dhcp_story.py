"""The DHCP story on OpenBSD: the daemon, the scripted OpenBSD host with dhcpleased, and the
fake HE, in real time. A renumbering whose new lease arrives seconds after the link returns
must be waited out (dhcp_grace), not fought with restart-wan."""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.model.facts import ActionStarted, WanAddressObserved
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.openbsd_host import OpenBSDHost
from tests.daemon_helpers import HE_SERVER, TEST_KEY
from tests.test_daemon import InProcess, _wait_for

OLD, NEW = "203.0.113.7", "203.0.113.8"
LEASE_DELAY = 3.0


def test_story_renumbering_with_a_lease_3s_after_the_link_returns(tmp_path: Path) -> None:
    """The modem reboots and the ISP renumbers: the link goes and comes back, dhcpleased's
    old lease is NAKed and the new one arrives 3 s later. Within the grace no restart-wan
    runs; then exactly one HE update and one tunnel restart follow, for the new address."""
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "pf.conf").write_text("pass\n")
    host = OpenBSDHost(tmp_path / "root", wan_address=OLD, autoconf=True, dhcp_delay=LEASE_DELAY)
    with FakeTunnelbroker(key=TEST_KEY, endpoint="203.0.113.5") as fake:
        world = InProcess(tmp_path, fake, host)
        # The default dhcp_grace (30 s) covers the 3 s.
        world.thread.start()
        try:
            _wait_for(lambda: world.converged_on(OLD) and fake.endpoint == OLD)
            seen = len(world.facts())
            updates = fake.stats()["counts"]["update"]
            host.lease = NEW
            host.unplug("em0")
            time.sleep(0.5)
            host.plug("em0")
            plugged = time.time()
            _wait_for(lambda: world.converged_on(NEW) and fake.endpoint == NEW, timeout=30)
            after = world.facts()[seen:]
        finally:
            world.daemon.request_stop("test over")
            world.thread.join(10)
            world.log.close()
            host.stop_dhcp()
    started = [f.key for f in after if isinstance(f, ActionStarted)]
    assert not [k for k in started if k.startswith("restart-wan")], started
    assert started.count(f"update-he-endpoint:{NEW}") == 1
    assert started.count(f"restart-tunnel:{NEW}->{HE_SERVER}") == 1
    assert len([k for k in started if k.startswith("restart-tunnel")]) == 1
    assert fake.stats()["counts"]["update"] == updates + 1
    # The daemon did see the WAN without an address, autoconf, in between.
    wan = [f for f in after if isinstance(f, WanAddressObserved)]
    assert any(f.address is None and f.link_up and f.autoconf for f in wan)
    assert ("dhcpleasectl", "-w", "30", "em0") not in host.calls
    assert time.time() - plugged >= LEASE_DELAY
