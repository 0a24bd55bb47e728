"""The old setup's files, read: hostname.gif0 in both spellings, ifstated.conf, update URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.init.sources import (
    SourceError,
    parse_hostname_if,
    parse_ifstated,
    parse_update_url,
)

FIXTURES = Path(__file__).parent / "fixtures"

TUNNEL = {
    "tunnel.interface": "gif0",
    "tunnel.server_ipv4": "216.66.22.2",
    "tunnel.client_ipv6": "2001:db8:1f06:abc::2",
    "tunnel.server_ipv6": "2001:db8:1f06:abc::1",
    "tunnel.prefixlen": 128,
}


def values(findings: list) -> dict:  # type: ignore[type-arg]
    return {f.key: f.value for f in findings}


def test_the_original_scripts_hostname_file_gives_the_tunnel() -> None:
    """The `!ifconfig gif0 tunnel A B` spelling the original script generates."""
    text = (FIXTURES / "script/hostname.gif0").read_text()
    found = parse_hostname_if(text, "/etc/hostname.gif0")
    assert values(found) == TUNNEL
    source = {f.key: f.source for f in found}
    assert source["tunnel.server_ipv4"] == "/etc/hostname.gif0:4"


def test_a_plain_hostname_file_gives_the_same_tunnel_with_mtu_and_ttl() -> None:
    """The hostname.if(5) spelling: `tunnel A B`, `inet6 alias A 128` and `dest B`."""
    text = (FIXTURES / "plain/hostname.gif0").read_text()
    found = values(parse_hostname_if(text, "/etc/hostname.gif0"))
    assert found == {**TUNNEL, "tunnel.mtu": 1480, "tunnel.ttl": 255}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("inet6 alias 2001:db8::2 2001:db8::1 prefixlen 128", ("2001:db8::1", 128)),
        ("inet6 2001:db8::2/64", (None, 64)),
        ("inet6 alias 2001:db8::2 64 dest 2001:db8::1", ("2001:db8::1", 64)),
    ],
)
def test_inet6_line_forms(line: str, expected: tuple[str | None, int]) -> None:
    """Each inet6 form netstart accepts yields the client address, the peer and the length."""
    found = values(parse_hostname_if(f"tunnel 192.0.2.1 192.0.2.9\n{line}\n", "hostname.gif0"))
    assert found["tunnel.client_ipv6"] == "2001:db8::2"
    assert (found.get("tunnel.server_ipv6"), found["tunnel.prefixlen"]) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tunnel 192.0.2.1 192.0.2.9\nfrobnicate 3\n", "hostname.gif0:2: cannot understand"),
        ("!ifconfig gif0 inet6 alias $IPV6_SUBNET::2 128\n", "'$IPV6_SUBNET::2' is not an IPv6"),
        ("inet6 alias 2001:db8::2 128\n", "no tunnel line"),
        ("tunnel 192.0.2.1 not-an-address\n", "hostname.gif0:1: 'not-an-address' is not an IPv4"),
        ("tunnel 192.0.2.1 192.0.2.9\n!curl http://x/\n", "hostname.gif0:2: cannot understand"),
        ("!ifconfig gif1 tunnel 192.0.2.1 192.0.2.9\n", "configures gif1, not gif0"),
    ],
)
def test_a_line_it_cannot_understand_is_named(text: str, message: str) -> None:
    """Never a guess at a tunnel: the error names the file, the line and what is wrong."""
    with pytest.raises(SourceError, match=message.replace("$", r"\$")):
        parse_hostname_if(text, "/etc/hostname.gif0")


def test_the_seeds_ifstated_gives_intervals_timeouts_and_the_wan() -> None:
    """The original ifstated.conf: both ping tests every 60 s, em0 from its netstart line; the
    IPv4 test names no target (the post lost it), so none is claimed."""
    text = (FIXTURES / "ifstated.conf").read_text()
    found = values(parse_ifstated(text, "/etc/ifstated.conf"))
    assert found == {
        "probe.ipv6.interval": 60,
        "probe.ipv6.target": "2001:4860:4860::8888",
        "probe.ipv6.timeout": 1,
        "probe.ipv4.interval": 60,
        "probe.ipv4.timeout": 1,
        "wan.interface": "em0",
    }


def test_ifstated_targets_and_linux_style_ping() -> None:
    """A target given to ping is taken, its family from the address (`ping -6` too)."""
    text = (
        "a = '( \"ping -c 1 -W 2 192.0.2.53 >/dev/null\" every 30 )'\n"
        "b = '( \"/sbin/ping -6 -c1 2001:db8::53\" every 45 )'\n"
    )
    found = values(parse_ifstated(text, "x.conf"))
    assert found["probe.ipv4.target"] == "192.0.2.53"
    assert found["probe.ipv4.interval"] == 30
    assert found["probe.ipv6.target"] == "2001:db8::53"
    assert found["probe.ipv6.interval"] == 45


def test_an_ifstated_without_ping_tests_is_an_error() -> None:
    """Nothing to take the probes from: one line naming the file."""
    with pytest.raises(SourceError, match=r"/etc/ifstated.conf: no ping or ping6 test"):
        parse_ifstated("up = '( \"true\" every 10 )'\ninit-state auto\n", "/etc/ifstated.conf")


def test_an_update_url_gives_id_username_and_a_key_kept_apart() -> None:
    """The script's HE_UPDATE_URL: id and login as findings; the key only in `.key`, never in
    a finding or the repr."""
    text = (FIXTURES / "restart_ipv6.sh").read_text()
    credentials = parse_update_url(text, "/root/restart_ipv6.sh")
    assert credentials is not None
    assert values(list(credentials.findings)) == {
        "tunnelbroker.username": "oldadmin",
        "tunnelbroker.tunnel_id": "654321",
    }
    assert credentials.key == "0ld-Upd4te-K3y"
    assert "0ld-Upd4te-K3y" not in repr(credentials)
    assert all("0ld-Upd4te-K3y" not in f.source for f in credentials.findings)


def test_query_string_credentials_and_no_url() -> None:
    """username=/password= query parameters count as well; a file without a URL gives None."""
    url = "https://ipv4.tunnelbroker.net/nic/update?username=u1&password=p1&hostname=42"
    credentials = parse_update_url(f'curl "{url}"\n', "s.sh")
    assert credentials is not None and credentials.key == "p1"
    assert values(list(credentials.findings))["tunnelbroker.tunnel_id"] == "42"
    assert parse_update_url("echo hello\n", "s.sh") is None
