"""Several WANs in the config: [[wan]] tables in priority order and [failover]."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.configfile import load_config
from reconciler.errors import ConfigError
from tests.config.test_configfile import VALID, check, write_config

SINGLE_WAN = '[wan]\ninterface = "veth0"\npublic_address = "interface"\n'
TWO_WANS = """\
[[wan]]
interface = "veth0"
probe_target = "198.51.100.53"

[[wan]]
interface = "veth1"
restart_command = ["/sbin/ifup", "veth1"]
dhcp_grace = 10
address_in = "192.0.2.0/24"
probe_target = "192.0.2.1"

[failover]
failback_after = 300
budget_per_hour = 3
"""


def _with_wans(text: str) -> str:
    assert SINGLE_WAN in VALID
    return VALID.replace(SINGLE_WAN, text)


def test_two_wans_load_in_priority_order(tmp_path: Path) -> None:
    """[[wan]] tables are the WANs in the file's order; the first is the one the tunnel
    starts on; each keeps its own restart, grace, address choice and probe target."""
    config = load_config(write_config(tmp_path, _with_wans(TWO_WANS)))
    assert config.failover is not None
    first, second = config.failover.wans
    assert config.wan == first
    assert (first.interface, first.probe_target) == ("veth0", "198.51.100.53")
    assert second.interface == "veth1"
    assert second.restart_command == ("/sbin/ifup", "veth1")
    assert (second.dhcp_grace, second.address_in, second.probe_target) == (
        10.0,
        "192.0.2.0/24",
        "192.0.2.1",
    )
    assert (config.failover.failback_after, config.failover.budget_per_hour) == (300.0, 3)
    assert config.summary()["wan.interfaces"] == "veth0,veth1"


def test_failover_defaults_are_minutes_and_a_small_budget(tmp_path: Path) -> None:
    """Without [failover]: fail back after 10 minutes, at most 4 switches an hour."""
    text = _with_wans(TWO_WANS.split("[failover]")[0])
    config = load_config(write_config(tmp_path, text))
    assert config.failover is not None
    assert (config.failover.failback_after, config.failover.budget_per_hour) == (600.0, 4)
    assert config.failover.wans[0].probe_target == "198.51.100.53"


def test_single_wan_config_is_unchanged(tmp_path: Path) -> None:
    """[wan] alone, and one [[wan]] table, mean one WAN: no failover, the same WanConfig and
    the same summary as ever."""
    plain = load_config(write_config(tmp_path, VALID))
    assert plain.failover is None
    assert "wan.interfaces" not in plain.summary()
    table = _with_wans('[[wan]]\ninterface = "veth0"\npublic_address = "interface"\n')
    other = tmp_path / "other"
    other.mkdir()
    one = load_config(write_config(other, table))
    assert one.failover is None
    assert one.wan == plain.wan
    assert one.summary() == plain.summary()


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        (TWO_WANS.replace('"veth1"', '"veth0"', 1), "wan[1].interface", "veth0"),
        (
            TWO_WANS.replace("budget_per_hour = 3", "budget_per_hour = 0"),
            "failover.budget_per_hour",
            "between 1 and 60",
        ),
        (
            TWO_WANS.replace("failback_after = 300", 'failback_after = "5m"'),
            "failover.failback_after",
            "number of seconds",
        ),
        (
            TWO_WANS.replace("failback_after = 300", "failback_after = -1"),
            "failover.failback_after",
            "between",
        ),
        (
            TWO_WANS.replace('probe_target = "192.0.2.1"', 'probe_target = "192.0.2.0/24"'),
            "wan[1].probe_target",
            "not an IPv4",
        ),
        (
            TWO_WANS.replace('probe_target = "192.0.2.1"', "probe_targte = 1"),
            "wan[1].probe_targte",
            "unknown key",
        ),
        (TWO_WANS.replace("[failover]", "[failover]\nflap = 1"), "failover.flap", "unknown key"),
        (
            '[[wan]]\ninterface = "veth0"\nprobe_target = "192.0.2.1"\n',
            "wan.probe_target",
            "two WANs or more",
        ),
        (
            '[[wan]]\ninterface = "veth0"\n[failover]\nfailback_after = 60\n',
            "failover",
            "two [[wan]] tables",
        ),
        (
            TWO_WANS.replace('interface = "veth1"', 'interface = "he-ipv6"'),
            "tunnel.interface",
            "he-ipv6",
        ),
    ],
)
def test_bad_wan_values_are_one_line_each(tmp_path: Path, text: str, key: str, what: str) -> None:
    """Each bad value is one line naming its key; check-config exits 1 without a traceback."""
    path = write_config(tmp_path, _with_wans(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = [p for p in caught.value.problems if f": {key}: " in p]
    assert lines and what in lines[0], caught.value.problems
    code, _out, err = check(path, tmp_path)
    assert code == 1 and "Traceback" not in err
    assert all("\n" not in problem for problem in caught.value.problems)


def test_probe_source_is_refused_with_several_wans(tmp_path: Path) -> None:
    """A fixed IPv4 probe source would be wrong on every WAN but one: refused."""
    text = _with_wans(TWO_WANS).replace(
        "timeout = 1\n", 'timeout = 1\nsource = "198.51.100.9"\n', 1
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    assert any(": probe.ipv4.source: " in p for p in caught.value.problems)


def _on_openbsd(text: str) -> str:
    text = text.replace('platform = "linux"', 'platform = "openbsd"')
    text = text.replace('"veth0"', '"em0"').replace('"veth1"', '"em1"')
    text = text.replace('"he-ipv6"', '"gif0"').replace('mode = "vxlan"', 'mode = "gif"')
    return text.replace("vxlan_id = 42\n", "")


def test_several_wans_load_on_openbsd(tmp_path: Path) -> None:
    """OpenBSD moves the gif's source and the host route to HE's server
    (reconciler.world.openbsd): several WANs load there as on Linux."""
    text = _on_openbsd(_with_wans(TWO_WANS))
    config = load_config(write_config(tmp_path, text))
    assert config.failover is not None
    assert [w.interface for w in config.failover.wans] == ["em0", "em1"]
    assert config.wan.interface == "em0"


def test_behind_nat_several_wans_are_refused_on_openbsd(tmp_path: Path) -> None:
    """HE takes the address an update comes from behind NAT, and OpenBSD cannot send it
    through the active WAN (no SO_BINDTODEVICE): refused in one line, not left undone."""
    text = _on_openbsd(_with_wans(TWO_WANS))
    text = text.replace("dhcp_grace = 10\n", 'dhcp_grace = 10\npublic_address = "tunnelbroker"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    wanted = (
        'wan: public_address = "tunnelbroker" (em1) cannot be used with several WANs on '
        "OpenBSD: HE's update leaves by the default route, not necessarily through the "
        "active WAN"
    )
    path = tmp_path / "reconciler.conf"
    assert [p for p in caught.value.problems if ": wan: " in p] == [f"{path}: {wanted}"]
