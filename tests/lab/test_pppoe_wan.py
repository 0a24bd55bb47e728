"""A PPPoE WAN (issue 20, items 3 and 4): Debian's pppoe-server as the ISP in the HE
namespace, pppd with its pppoe plugin on the router (ppp0, a point-to-point link whose peer
is the ISP's end), the real daemon with no restart_command. Runs in the UML guest, whose
kernel has pppoe and ppp_generic.

The ISP ends the session and hands out another address on the redial: ppp0 is gone for a
moment (waited for, not "restarted": pppd owns it and redials by itself), then back with
the new address, which gets one HE update and a tunnel from it; our address is the link's
local one, never the peer's.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from reconciler.lab.topology import HE_ADDRESS, Lab, wait_until
from reconciler.lab.wan_owners import (
    PPP_INTERFACE,
    PPPOE_ADDRESSES,
    interface_address,
    pppoe_wan,
    time_repair,
)
from reconciler.model.facts import ActionStarted, WanAddressObserved
from reconciler.testing.pppoe import pppoe_unavailable_reason
from tests.conftest import IN_UML_GUEST

pytestmark = pytest.mark.sit  # the UML guest's kernel has pppoe; a container's has not

PPP = PPP_INTERFACE
FIRST, SECOND = PPPOE_ADDRESSES


def ppp_address(lab: Lab) -> str | None:
    return interface_address(lab, PPP)


def started(lab: Lab, kind: str) -> list[ActionStarted]:
    return [
        e.fact
        for e in lab.envelopes()
        if isinstance(e.fact, ActionStarted) and e.fact.action == kind
    ]


@pytest.fixture(scope="module")
def pppoe_story(lab_available: None) -> Iterator[SimpleNamespace]:
    reason = pppoe_unavailable_reason()
    if reason and IN_UML_GUEST:
        pytest.fail(reason)  # the guest loads pppoe: there it must work
    if reason:
        pytest.skip(reason)  # a host kernel with sit but without pppoe
    story = SimpleNamespace()
    with Lab(prebuild_tunnel=False) as lab, pppoe_wan(lab, FIRST) as isp:
        story.lab = lab
        story.first = ppp_address(lab)
        lab.start_daemon(wan__interface=PPP, wan__restart_command=None)
        wait_until(lambda: lab.ping6_through_tunnel(0.5), timeout=40, what="IPv6 over PPPoE")
        story.updates_at_start = started(lab, "update-he-endpoint")
        story.endpoint_at_start = lab.he_stats()["endpoint"]

        repair = time_repair(lab, lambda: isp.redial(SECOND), lambda: ppp_address(lab) == SECOND)
        story.redial_repair = repair.total
        story.updates = started(lab, "update-he-endpoint")
        story.wan_restarts = started(lab, "restart-wan")
        story.wan_facts = [
            e.fact for e in lab.envelopes() if isinstance(e.fact, WanAddressObserved)
        ]
        story.endpoint = lab.he_stats()["endpoint"]
        story.tunnel_local = lab.tunnel_local()
        story.stopped = lab.stop_daemon()
        yield story


def test_a_pppoe_wan_is_read_with_our_address_not_the_peer(pppoe_story: SimpleNamespace) -> None:
    """ppp0's address is ours (IFA_LOCAL), not the ISP's end (the peer): HE gets it, the
    tunnel starts from it, and the owner is pppd (observed only)."""
    assert pppoe_story.first == FIRST
    assert pppoe_story.endpoint_at_start == FIRST
    first_up = next(f for f in pppoe_story.wan_facts if f.address is not None)
    assert first_up.address == FIRST and HE_ADDRESS not in first_up.addresses
    assert first_up.owner == "none"


def test_a_redial_with_a_new_address_is_repaired_without_a_restart(
    pppoe_story: SimpleNamespace,
) -> None:
    """The redial: ppp0 gone, then back with another address; one more HE update, the tunnel
    from the new address, and no restart-wan at any time."""
    assert any(not f.exists for f in pppoe_story.wan_facts), "ppp0 was never seen gone"
    assert pppoe_story.wan_restarts == []
    assert len(pppoe_story.updates) == len(pppoe_story.updates_at_start) + 1
    assert pppoe_story.endpoint == SECOND
    assert pppoe_story.tunnel_local == SECOND
    assert pppoe_story.redial_repair < 40
    assert pppoe_story.stopped == 0
