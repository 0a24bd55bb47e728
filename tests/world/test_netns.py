"""Tests for reconciler.world.netns: rtnetlink in a named namespace, whatever pyroute2's
version (0.7.2 has no netns.create_socket and no IPRoute(netns=...))."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from reconciler.world.netns import rtnetlink, rtnetlink_socket


@pytest.fixture
def namespace(lab_available: None) -> Iterator[str]:
    name = f"rcns{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _own_namespace() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_the_socket_hears_its_namespace_and_the_caller_stays_where_it_was(
    namespace: str,
) -> None:
    """A link made in the namespace reaches the socket; this thread's namespace is the same
    before and after (only a thread of its own entered the namespace)."""
    before = _own_namespace()
    sock = rtnetlink_socket(namespace)
    try:
        assert _own_namespace() == before
        sock.bind((0, RTMGRP_LINK))
        sock.settimeout(5)
        subprocess.run(
            ["ip", "-n", namespace, "link", "add", "rcnsd0", "type", "veth", "peer", "rcnsd1"],
            check=True, capture_output=True,
        )  # fmt: skip
        names: set[str] = set()
        while "rcnsd0" not in names:  # the peer's message may come first; recv times out
            names |= {
                msg.get_attr("IFLA_IFNAME") for msg in MarshalRtnl().parse(sock.recv(1 << 16))
            }
    finally:
        sock.close()


def test_the_ipr_sees_the_namespaces_links(namespace: str) -> None:
    """rtnetlink(name) lists the namespace's links (as `ip -n` shows them), not ours."""
    subprocess.run(
        ["ip", "-n", namespace, "link", "add", "rcnsipr0", "type", "veth", "peer", "rcnsipr1"],
        check=True, capture_output=True,
    )  # fmt: skip
    shown = subprocess.run(
        ["ip", "-n", namespace, "-j", "link", "show"], check=True, capture_output=True, text=True
    )
    ipr = rtnetlink(namespace)
    try:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    finally:
        ipr.close()
    assert names == {link["ifname"] for link in json.loads(shown.stdout)}
    assert {"lo", "rcnsipr0", "rcnsipr1"} <= names


def test_a_missing_namespace_is_not_created(lab_available: None) -> None:
    """FileNotFoundError (OSError for the socket) and nothing created under /run/netns."""
    missing = f"rcnsmissing{os.getpid()}"
    with pytest.raises(FileNotFoundError, match=missing):
        rtnetlink(missing)
    with pytest.raises(FileNotFoundError):
        rtnetlink_socket(missing)
    assert not Path("/run/netns", missing).exists()


@pytest.mark.parametrize("name", ["", "..", "../../proc/1/ns/net", "a/b"])
def test_a_name_that_is_a_path_is_refused(name: str) -> None:
    """Only a name under /run/netns: a path is never opened."""
    with pytest.raises(ValueError, match="not a network namespace name"):
        rtnetlink_socket(name)
    with pytest.raises(ValueError, match="not a network namespace name"):
        rtnetlink(name)


def test_without_a_namespace_the_socket_is_this_threads() -> None:
    """None: a plain NETLINK_ROUTE socket (the daemon on a router)."""
    sock = rtnetlink_socket(None)
    try:
        assert (sock.family, sock.type, sock.proto) == (
            socket.AF_NETLINK,
            socket.SOCK_RAW,
            0,
        )
    finally:
        sock.close()
