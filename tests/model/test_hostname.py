"""Tests for rendering the OpenBSD hostname file and its digest."""

from __future__ import annotations

import hashlib

import attrs
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.config import TunnelConfig
from reconciler.model.hostname import HEADER, digest_of, render_hostname_file

TUNNEL = TunnelConfig(
    interface="gif0",
    mode="gif",
    server_ipv4="203.0.113.1",
    client_ipv6="2001:db8:1f06:abc::2",
    server_ipv6="2001:db8:1f06:abc::1",
)


def test_renders_the_original_scripts_lines() -> None:
    """The file holds the tunnel, MTU, inet6 alias, up and default-route lines, in order."""
    assert render_hostname_file(TUNNEL, "198.51.100.7") == (
        f"{HEADER}\n"
        "tunnel 198.51.100.7 203.0.113.1\n"
        "tunnelttl 255\n"
        "mtu 1480\n"
        "!ifconfig $if inet6 alias 2001:db8:1f06:abc::2 2001:db8:1f06:abc::1 prefixlen 128\n"
        "up\n"
        "!route -n add -inet6 default 2001:db8:1f06:abc::1\n"
    )


def test_prefixlen_and_mtu_come_from_the_config() -> None:
    """A /64 tunnel and another MTU show up in their lines."""
    content = render_hostname_file(attrs.evolve(TUNNEL, prefixlen=64, mtu=1280), "198.51.100.7")
    assert " prefixlen 64\n" in content
    assert "\nmtu 1280\n" in content


def test_header_carries_no_date() -> None:
    """The header is a comment and the same on every render, so the digest is stable."""
    first = render_hostname_file(TUNNEL, "198.51.100.7")
    assert first.startswith("# ")
    assert first == render_hostname_file(TUNNEL, "198.51.100.7")


@given(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
)
def test_digest_changes_exactly_when_the_local_address_does(a: str, b: str) -> None:
    """Two local addresses give the same digest if and only if they are the same address."""
    digest_a = digest_of(render_hostname_file(TUNNEL, a).encode())
    digest_b = digest_of(render_hostname_file(TUNNEL, b).encode())
    assert (digest_a == digest_b) == (a == b)


def test_digest_is_sha256_hex() -> None:
    """digest_of is the sha256 of the bytes, in lowercase hex."""
    assert digest_of(b"up\n") == hashlib.sha256(b"up\n").hexdigest()
    assert len(digest_of(b"")) == 64
