"""The shipped nftables example (etc/nftables/reconciler.nft), loaded with the real nft in a
network namespace of its own: it replaces only its own table, however often it is loaded,
and the tables others made (Docker's, fail2ban's) stay as they were. A Debian-style file that
starts with `flush ruleset`, loaded the same way, wipes them: the difference the example is
for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "etc" / "nftables" / "reconciler.nft"

# What Docker (through iptables-nft) and fail2ban leave in a ruleset, in nft's own syntax.
FOREIGN = """\
table ip filter {
\tchain DOCKER-USER {
\t\treturn
\t}
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tjump DOCKER-USER
\t\toifname "docker0" ct state established,related accept
\t}
}
table ip nat {
\tchain POSTROUTING {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 172.17.0.0/16 oifname != "docker0" masquerade
\t}
}
table inet f2b-table {
\tset addr-set-sshd {
\t\ttype ipv4_addr
\t\telements = { 192.0.2.9 }
\t}
\tchain f2b-chain {
\t\ttype filter hook input priority filter - 1; policy accept;
\t\ttcp dport 22 ip saddr @addr-set-sshd reject
\t}
}
"""


@pytest.fixture
def netns(lab_available: None) -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.fail("nft is missing: make system-deps installs nftables")
    name = f"rcnft{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def nft(netns: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args],
        input=stdin, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def tables(netns: str) -> dict[tuple[str, str], Any]:
    """Each table's rules, chains and sets as nft lists them (handles left out)."""
    listed = json.loads(nft(netns, "-j", "list", "ruleset"))["nftables"]
    out: dict[tuple[str, str], list[Any]] = {}
    for item in listed:
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        key = (body["family"], body["name"] if kind == "table" else body["table"])
        out.setdefault(key, []).append((kind, body))
    return out


def test_the_example_loaded_twice_keeps_foreign_tables(netns: str) -> None:
    """Docker's and fail2ban's tables are the same after two loads of the example; the
    example's own table is there once, with one copy of its rules."""
    nft(netns, "-f", "-", stdin=FOREIGN)
    foreign = tables(netns)
    nft(netns, "-f", str(EXAMPLE))
    once = tables(netns)
    nft(netns, "-f", str(EXAMPLE))
    twice = tables(netns)
    assert {k: v for k, v in twice.items() if k != ("inet", "reconciler")} == foreign
    assert twice[("inet", "reconciler")] == once[("inet", "reconciler")]
    rules = [body for kind, body in twice[("inet", "reconciler")] if kind == "rule"]
    assert len(rules) == 9
    shown = nft(netns, "list", "table", "inet", "reconciler")
    assert 'iifname "eth0" ip protocol ipv6 ip saddr 216.66.22.2 accept' in shown
    assert shown.count("ip saddr 216.66.22.2") == 1


def test_a_file_that_flushes_the_ruleset_wipes_foreign_tables(netns: str) -> None:
    """The control: Debian's way (`flush ruleset` first) loaded while Docker runs leaves
    none of its tables, which is why the example never flushes."""
    nft(netns, "-f", "-", stdin=FOREIGN)
    nft(netns, "-f", "-", stdin="flush ruleset\ntable inet filter {\n}\n")
    assert set(tables(netns)) == {("inet", "filter")}


def test_the_example_never_flushes_the_ruleset() -> None:
    """Outside comments, the example names only its own table."""
    rules = [
        line.split("#", 1)[0].strip()
        for line in EXAMPLE.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert not any(line.startswith("flush") for line in rules)
    assert rules[4:7] == [
        "table inet reconciler",
        "delete table inet reconciler",
        "table inet reconciler {",
    ]


SEND_41 = """\
import socket, sys
for source in sys.argv[2:]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
    sock.bind((source, 0))
    for _ in range(3):
        sock.sendto(bytes(40), (sys.argv[1], 0))
    sock.close()
"""


def test_protocol_41_passes_only_from_hes_server(netns: str, tmp_path: Path) -> None:
    """Over a real veth named as the example's WAN: 6in4 packets from the configured HE
    server pass the input chain, the same packets from another address are dropped."""
    far = f"{netns}f"
    subprocess.run(["ip", "netns", "add", far], check=True, capture_output=True)
    try:

        def ip(ns: str, *args: str) -> None:
            subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)

        ip(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "up0", "netns", far)
        ip(netns, "addr", "add", "198.51.100.2/24", "dev", "eth0")
        ip(far, "addr", "add", "198.51.100.1/24", "dev", "up0")
        ip(far, "addr", "add", "198.51.100.3/24", "dev", "up0")
        for ns, dev in ((netns, "eth0"), (far, "up0")):
            ip(ns, "link", "set", dev, "up")
        example = tmp_path / "reconciler.nft"
        example.write_text(
            EXAMPLE.read_text().replace("rc_he_server = 216.66.22.2", "rc_he_server = 198.51.100.1")
        )
        nft(netns, "-f", str(example))

        def dropped() -> int:
            listed = json.loads(nft(netns, "-j", "list", "chain", "inet", "reconciler", "input"))
            counters = [
                expr["counter"]["packets"]
                for item in listed["nftables"]
                if "rule" in item
                for expr in item["rule"]["expr"]
                if "counter" in expr
            ]
            return int(counters[0])  # the first counter: `ip protocol 41 counter drop`

        def send(*sources: str) -> None:
            argv = [sys.executable, "-c", SEND_41, "198.51.100.2", *sources]
            exec_in_far = ["ip", "netns", "exec", far, *argv]
            subprocess.run(exec_in_far, check=True, capture_output=True, timeout=30)

        send("198.51.100.1")
        assert dropped() == 0
        send("198.51.100.3")
        assert dropped() == 3
    finally:
        subprocess.run(["ip", "netns", "del", far], capture_output=True)
