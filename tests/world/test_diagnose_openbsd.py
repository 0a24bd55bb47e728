"""`doctor` on OpenBSD, against the scripted host: the WAN and the tunnel through ifconfig,
the default routes through `route -n get`, pf's rules through `pfctl -sr`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from reconciler.model.config import ProbeConfig
from reconciler.model.verdict import CheckResult, Diagnosis
from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.world.diagnose.checks import Doctor
from reconciler.world.openbsd import OpenBSDPlatform
from reconciler.world.runner import Completed

from .test_openbsd import HE_SERVER, OLD_ADDRESS, bring_tunnel_up, make_config, make_root

PING_OK = "PING x: 56 data bytes\n64 bytes from x: icmp_seq=0 ttl=64 time=0.512 ms\n"
ROUTE_GET = """\
   route to: default
destination: default
       mask: default
    gateway: {gateway}
  interface: {interface}
 if address: {address}
   priority: 8 (static)
      flags: <UP,GATEWAY,DONE,STATIC>
"""


class Router(OpenBSDHost):
    """The scripted host, also answering route get, pfctl -sr and ping(6)."""

    pf_rules = "pass all flags S/SA\n"

    def _answer(self, argv: tuple[str, ...], timeout: float) -> Completed:
        match argv:
            case ("route", "-n", "get", "-inet", "default"):
                out = ROUTE_GET.format(gateway="198.51.100.1", interface="em0", address=OLD_ADDRESS)
                return Completed(argv, 0, out, "", 0.001)
            case ("route", "-n", "get", "-inet6", "default"):
                out = ROUTE_GET.format(
                    gateway="2001:db8:1f06:abc::1", interface="gif0", address="2001:db8:1f06:abc::2"
                )
                return Completed(argv, 0, out, "", 0.001)
            case ("pfctl", "-sr"):
                return Completed(argv, 0, self.pf_rules, "", 0.001)
            case ("ping" | "ping6", *_):
                return Completed(argv, 0, PING_OK, "", 0.001)
        return super()._answer(argv, timeout)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[Doctor, Router]]:
    host = Router(make_root(tmp_path), wan_address=OLD_ADDRESS)
    config = attrs.evolve(
        make_config(tmp_path),
        probes={
            "ipv4": ProbeConfig("ipv4", HE_SERVER),
            "ipv6": ProbeConfig("ipv6", "2001:db8::53"),
        },
    )
    platform = OpenBSDPlatform(config, host, host.root, monitor_restart_delay=0.05)
    bring_tunnel_up(platform, host)
    yield Doctor(config, runner=host, platform=platform), host


def run(doctor: Doctor) -> Diagnosis:
    return doctor.run(CheckResult.of("config", "pass", "given"))


def test_a_working_openbsd_router_passes_every_check(router: tuple[Doctor, Router]) -> None:
    doctor, _host = router
    checks = run(doctor).checks
    statuses = {c.name: c.status for c in checks}
    assert statuses.pop("he-endpoint") == "unknown"  # no info_url, no daemon log
    assert set(statuses.values()) == {"pass"}, checks
    assert "default route via 198.51.100.1" in checks[1].evidence
    assert "via 2001:db8:1f06:abc::1 dev gif0" in checks[8].evidence


def test_pf_blocking_hes_ping_fails_check_5_naming_the_rule(router: tuple[Doctor, Router]) -> None:
    doctor, host = router
    host.pf_rules = (
        "block drop in log on egress all\n"
        f"pass in quick on egress inet proto ipv6 from {HE_SERVER} to any keep state\n"
        "pass out all flags S/SA\n"
    )
    diagnosis = run(doctor)
    failed = diagnosis.failed
    assert failed is not None and (failed.number, failed.name) == (5, "he-ping")
    assert "block drop in log on egress all" in failed.evidence
    assert ("pfctl", "-sr") in host.calls


def test_pf_blocking_protocol_41_fails_check_6(router: tuple[Doctor, Router]) -> None:
    doctor, host = router
    host.pf_rules = "pass all flags S/SA\nblock return in quick on em0 inet proto ipv6 all\n"
    failed = run(doctor).failed
    assert failed is not None and failed.number == 6
    assert f"protocol 41 from {HE_SERVER}" in failed.evidence


def test_pf_rules_it_cannot_read_are_said_so_and_the_run_goes_on(
    router: tuple[Doctor, Router],
) -> None:
    doctor, host = router
    host.pf_rules = "block in all\npass in from <he> to any\n"
    checks = run(doctor).checks
    assert checks[4].status == "unknown" and "<he>" in checks[4].evidence
    assert checks[10].status == "pass"
