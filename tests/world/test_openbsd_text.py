"""Tests for the parsers of OpenBSD's `ifconfig` and `route -n monitor` output."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.world.openbsd_text import (
    Inet6Address,
    RouteGot,
    is_missing_interface,
    parse_default_gateway,
    parse_ifconfig,
    parse_lease,
    parse_lease_gateway,
    parse_monitor_line,
    parse_route_get,
)
from reconciler.world.platform import ChangeNotice

FIXTURES = Path(__file__).parent / "fixtures" / "openbsd"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_wan_address_netmask_and_broadcast() -> None:
    """The WAN's inet line yields its address, netmask and broadcast; link is up."""
    em0 = parse_ifconfig(fixture("ifconfig_em0.txt"))
    assert em0.name == "em0"
    assert em0.mtu == 1500
    assert em0.link_up
    assert [a.address for a in em0.inet] == ["95.163.182.60"]
    assert em0.inet[0].netmask == "0xfffffe00"
    assert em0.inet[0].broadcast == "95.163.183.255"
    assert em0.inet6[0].address == "fe80::20d:b9ff:fe41:6fe4%em0"


def test_several_inet_lines_keep_the_kernels_order() -> None:
    """Several inet lines are all reported, in the order ifconfig lists them."""
    em0 = parse_ifconfig(fixture("ifconfig_em0_two_inet.txt"))
    assert [a.address for a in em0.inet] == ["203.0.113.7", "198.51.100.20"]


def test_no_address_and_no_carrier() -> None:
    """An interface without inet lines has no IPv4 address; "no carrier" means link down."""
    em0 = parse_ifconfig(fixture("ifconfig_em0_no_carrier.txt"))
    assert em0.inet == ()
    assert em0.up
    assert not em0.link_up


@pytest.mark.parametrize("name", ["ifconfig_gif0.txt", "ifconfig_gif0_arrow.txt"])
def test_tunnel_ends_with_either_arrow(name: str) -> None:
    """Both `-->` (current) and `->` (older releases) give the tunnel's ends and inet6 peer."""
    gif0 = parse_ifconfig(fixture(name))
    assert gif0.up
    assert (gif0.tunnel_local, gif0.tunnel_remote) == ("95.163.182.60", "209.51.161.14")
    assert gif0.inet6[0] == Inet6Address("fe80::20d:b9ff:fe41:6fe4%gif0", 64, None)
    assert gif0.inet6[1] == Inet6Address("2001:470:1f06:abc::2", 128, "2001:470:1f06:abc::1")


def test_very_old_physical_address_line() -> None:
    """OpenBSD 4.x's `physical address inet A --> B` line also gives the tunnel's ends."""
    text = (
        "gif0: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1280\n"
        "\tphysical address inet 198.51.100.7 --> 203.0.113.1\n"
    )
    gif0 = parse_ifconfig(text)
    assert (gif0.tunnel_local, gif0.tunnel_remote) == ("198.51.100.7", "203.0.113.1")


def test_unconfigured_tunnel_is_down_without_ends() -> None:
    """A created but unconfigured gif is down and has no tunnel ends."""
    gif0 = parse_ifconfig(fixture("ifconfig_gif0_down_unconfigured.txt"))
    assert not gif0.up
    assert gif0.tunnel_local is None
    assert gif0.tunnel_remote is None


def test_not_ifconfig_output_is_a_value_error() -> None:
    """Text that is not ifconfig output raises ValueError naming what was seen."""
    with pytest.raises(ValueError, match="not ifconfig output"):
        parse_ifconfig("ksh: ifconfig: not found\n")
    with pytest.raises(ValueError):
        parse_ifconfig("")


def test_missing_interface_message() -> None:
    """ifconfig's "no such interface" complaint is recognised, other errors are not."""
    assert is_missing_interface("ifconfig: gif0: no such interface\n")
    assert not is_missing_interface("ifconfig: SIOCSIFFLAGS: Operation not permitted\n")


def test_route_monitor_messages_become_notices() -> None:
    """Address, link, announce and desync messages become notices; route changes do not."""
    notices = [
        notice
        for line in fixture("route_monitor.txt").splitlines()
        if (notice := parse_monitor_line(line)) is not None
    ]
    assert notices == [
        ChangeNotice("address", "em0"),
        ChangeNotice("address", "em0"),
        ChangeNotice("link", "gif0"),
        ChangeNotice("announce", "gif0"),
        ChangeNotice("desync"),
        ChangeNotice("address", None),  # the interface had gone: route(8) prints no name
    ]


@pytest.mark.parametrize(
    "line",
    [
        "got message of size 104 on Mon Jun  3 12:00:00 2024",
        "sockaddrs: <NETMASK,IFP,IFA,BRD>",
        " 255.255.254.0 em0 95.163.182.60 95.163.183.255",
        "RTM_PROPOSAL: config proposal: len 200, source dhcp, table 0, if# 1, name em0, pid: 1",
        "",
    ],
)
def test_other_monitor_lines_are_ignored(line: str) -> None:
    """Headers of other messages, address lines and timestamps are not notices."""
    assert parse_monitor_line(line) is None


def test_route_monitor_ifinfo_is_printed_as_route_prints_it() -> None:
    """RTM_IFINFO carries route(8)'s flag names (PTP) and is followed by the next message
    header, not a blank line (pmsg_addrs ends the line; no addresses follow)."""
    lines = fixture("route_monitor.txt").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("RTM_IFINFO"))
    assert lines[at].endswith("flags:<PTP,MULTICAST>")
    assert lines[at + 1].startswith("got message of size ")
    assert "" not in lines


def test_autoconf4_flag_marks_a_dhcp_interface() -> None:
    """`inet autoconf` shows as AUTOCONF4 (an extended flag, shifted 16 bits) in the header."""
    em0 = parse_ifconfig(fixture("ifconfig_em0_autoconf.txt"))
    assert em0.autoconf4 and em0.link_up
    assert [a.address for a in em0.inet] == ["95.163.182.60"]
    assert not parse_ifconfig(fixture("ifconfig_em0.txt")).autoconf4


def test_an_inet_alias_is_listed_like_any_address() -> None:
    """A static alias before the DHCP lease: both inet lines, in the kernel's order."""
    em0 = parse_ifconfig(fixture("ifconfig_em0_autoconf_alias.txt"))
    assert [a.address for a in em0.inet] == ["192.168.1.2", "95.163.182.60"]


def test_tunnel_ttl_is_read_from_the_tunnel_line() -> None:
    """`ttl 64` on the tunnel line is the TTL; `ttl copy` and the older format give None."""
    assert parse_ifconfig(fixture("ifconfig_gif0.txt")).tunnel_ttl == 64
    assert parse_ifconfig(fixture("ifconfig_gif0_arrow.txt")).tunnel_ttl is None
    copy = fixture("ifconfig_gif0.txt").replace("ttl 64", "ttl copy")
    assert parse_ifconfig(copy).tunnel_ttl is None


def test_dhcpleasectl_lease_address() -> None:
    """`dhcpleasectl -l em0` names the leased address; an interface in Init has none."""
    assert parse_lease(fixture("dhcpleasectl_em0.txt")) == "95.163.182.60"
    assert parse_lease("em0 [Init]\n") is None


def test_dhcpleasectl_lease_gateway() -> None:
    assert parse_lease_gateway(fixture("dhcpleasectl_em0.txt")) == "95.163.182.1"
    assert parse_lease_gateway("em0 [Init]\n") is None


ROUTE_SHOW = """\
Routing tables

Internet:
Destination        Gateway            Flags   Refs      Use   Mtu  Prio Iface
default            198.51.100.1       UGS        5   123456     -     8 em0
default            192.0.2.1          UGS        0        0     -    12 em1
127/8              127.0.0.1          UGRS       0        0 32768     8 lo0
192.0.2/24         192.0.2.10         UCn        1        0     -     4 em1
"""


def test_default_gateway_of_each_wan_from_route_show() -> None:
    assert parse_default_gateway(ROUTE_SHOW, "em1") == "192.0.2.1"
    assert parse_default_gateway(ROUTE_SHOW, "em0") == "198.51.100.1"
    assert parse_default_gateway(ROUTE_SHOW, "em2") is None


def test_route_get_of_a_labelled_host_route_and_of_the_default() -> None:
    host = """\
   route to: 203.0.113.1
destination: 203.0.113.1
    gateway: 192.0.2.1
  interface: em1
 if address: 192.0.2.10
   priority: 8 (static)
      flags: <UP,GATEWAY,HOST,DONE,STATIC>
      label: reconciler
     use       mtu    expire
       0         0         0
"""
    assert parse_route_get(host) == RouteGot("203.0.113.1", "192.0.2.1", True, "reconciler")
    default = host.replace("destination: 203.0.113.1", "destination: default\n       mask: default")
    default = default.replace("HOST,", "").replace("      label: reconciler\n", "")
    assert parse_route_get(default) == RouteGot("default", "192.0.2.1", False, None)
    with pytest.raises(ValueError):
        parse_route_get("route: writing to routing socket: No such process\n")


def test_missing_interface_as_ifconfig_prints_it() -> None:
    """ifconfig prints `gif0: no such interface` without an `ifconfig:` prefix."""
    assert is_missing_interface(fixture("ifconfig_gif0_missing.stderr"))
