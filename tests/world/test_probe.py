"""The ping probe: argv shapes per platform, rtt parsing, and real pings inside a netns."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.testing.runner import RecordingRunner
from reconciler.world.probe import ProbeResult, parse_rtt_ms, ping, ping_argv
from reconciler.world.runner import NOT_STARTED, SubprocessRunner

IPROUTE_OUTPUT = """PING 203.0.113.2 (203.0.113.2) 56(84) bytes of data.
64 bytes from 203.0.113.2: icmp_seq=1 ttl=64 time=0.197 ms

--- 203.0.113.2 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 0.197/0.197/0.197/0.000 ms
"""

OPENBSD_OUTPUT = """PING 203.0.113.2 (203.0.113.2): 56 data bytes
64 bytes from 203.0.113.2: icmp_seq=0 ttl=255 time=12.345 ms

--- 203.0.113.2 ping statistics ---
1 packets transmitted, 1 packets received, 0.0% packet loss
round-trip min/avg/max/std-dev = 12.345/12.345/12.345/0.000 ms
"""


OPENBSD_PING6_OUTPUT = """PING 2001:db8::1 (2001:db8::1): 56 data bytes
64 bytes from 2001:db8::1: icmp_seq=0 hlim=64 time=0.412 ms

--- 2001:db8::1 ping statistics ---
1 packets transmitted, 1 packets received, 0.0% packet loss
round-trip min/avg/max/std-dev = 0.412/0.412/0.412/0.000 ms
"""

OPENBSD_NO_REPLY_OUTPUT = """PING 203.0.113.9 (203.0.113.9): 56 data bytes

--- 203.0.113.9 ping statistics ---
1 packets transmitted, 0 packets received, 100.0% packet loss
"""


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts(lab_available: None) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces joined by a veth pair: near 203.0.113.1, far 203.0.113.2
    (and 2001:db8:1::1 / ::2). Yields (near, far) and removes both afterwards."""
    near, far = f"rcpn{os.getpid()}", f"rcpf{os.getpid()}"
    made: list[str] = []
    try:
        for name in (near, far):
            _ip("netns", "add", name)
            made.append(name)
        _ip("-n", near, "link", "add", "pn0", "type", "veth", "peer", "pf0", "netns", far)
        for ns, dev, v4, v6 in (
            (near, "pn0", "203.0.113.1/24", "2001:db8:1::1/64"),
            (far, "pf0", "203.0.113.2/24", "2001:db8:1::2/64"),
        ):
            _ip("-n", ns, "addr", "add", v4, "dev", dev)
            _ip("-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _until_the_link_carries(near, "203.0.113.2", "-4")
        _until_the_link_carries(near, "2001:db8:1::2", "-6")
        yield near, far
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _until_the_link_carries(netns: str, address: str, family: str) -> None:
    """A fresh veth pair carries nothing until both ends are up and IPv6 has its link-local
    addresses (neighbour discovery); under load that took longer than a test's 2 s probe.
    The fixture's promise is a working link: wait for it with the system's own ping."""
    deadline = time.monotonic() + 15.0
    while True:
        answered = subprocess.run(
            ["ip", "netns", "exec", netns, "ping", family, "-c", "1", "-W", "1", address],
            capture_output=True,
        )
        if answered.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the test link never carried a ping to {address}")
        time.sleep(0.2)


def test_linux_argv_shape() -> None:
    """On Linux the argv is `ping -c 1 -W <timeout> [-I source] -4|-6 target`."""
    assert ping_argv("ipv4", "203.0.113.2", timeout=1.0) == [
        "ping", "-c", "1", "-W", "1", "-4", "203.0.113.2",
    ]  # fmt: skip
    assert ping_argv("ipv6", "2001:db8::1", timeout=0.5, source="2001:db8::2") == [
        "ping", "-c", "1", "-W", "0.5", "-I", "2001:db8::2", "-6", "2001:db8::1",
    ]  # fmt: skip


def test_netns_prefix() -> None:
    """With a namespace the argv is prefixed by `ip netns exec <ns>`."""
    argv = ping_argv("ipv4", "203.0.113.2", timeout=2, netns="lab1")
    assert argv[:4] == ["ip", "netns", "exec", "lab1"]
    assert argv[4:] == ["ping", "-c", "1", "-W", "2", "-4", "203.0.113.2"]


def test_openbsd_argv_shape() -> None:
    """On OpenBSD IPv6 uses ping6 and the wait is `-w` in whole seconds, rounded up."""
    assert ping_argv("ipv4", "203.0.113.2", timeout=1.0, platform="openbsd") == [
        "ping", "-c", "1", "-w", "1", "203.0.113.2",
    ]  # fmt: skip
    assert ping_argv(
        "ipv6", "2001:db8::1", timeout=1.5, source="2001:db8::2", platform="openbsd"
    ) == ["ping6", "-c", "1", "-w", "2", "-I", "2001:db8::2", "2001:db8::1"]
    assert ping_argv("ipv4", "203.0.113.2", timeout=0.2, platform="openbsd")[4] == "1"


def test_unknown_platform_or_family_is_refused() -> None:
    """An argv is never guessed for a platform or family it does not know."""
    with pytest.raises(ValueError, match="platform"):
        ping_argv("ipv4", "203.0.113.2", timeout=1, platform="plan9")
    with pytest.raises(ValueError, match="family"):
        ping_argv("ipx", "203.0.113.2", timeout=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (IPROUTE_OUTPUT, 0.197),
        (OPENBSD_OUTPUT, 12.345),
        ("64 bytes from ::1: icmp_seq=1 ttl=64 time<1 ms\n", 1.0),
        ("rtt min/avg/max/mdev = 0.100/0.250/0.400/0.010 ms\n", 0.25),
        ("1 packets transmitted, 0 received, 100% packet loss\n", None),
    ],
)
def test_parse_rtt(output: str, expected: float | None) -> None:
    """The rtt comes from the reply line, else the summary's average, else it is None."""
    assert parse_rtt_ms(output) == expected


def test_openbsd_ping_reply_through_the_runner() -> None:
    """On OpenBSD the probe runs `ping -c 1 -w N target` through the command runner, with a
    timeout beyond ping's own wait, and reads the rtt from OpenBSD's output."""
    runner = RecordingRunner()
    argv = ["ping", "-c", "1", "-w", "2", "203.0.113.2"]
    runner.script(argv, stdout=OPENBSD_OUTPUT)
    result = ping("ipv4", "203.0.113.2", timeout=1.5, platform="openbsd", runner=runner)
    assert result == ProbeResult(True, 12.345, "reply from 203.0.113.2 in 12.345 ms")
    assert runner.calls == [tuple(argv)]
    assert runner.timeouts[0] > 1.5


def test_openbsd_ping6_from_the_tunnel_address_through_the_runner() -> None:
    """IPv6 on OpenBSD is `ping6 ... -I source target`; OpenBSD's hlim= reply line parses."""
    runner = RecordingRunner()
    argv = ["ping6", "-c", "1", "-w", "1", "-I", "2001:db8::2", "2001:db8::1"]
    runner.script(argv, stdout=OPENBSD_PING6_OUTPUT)
    result = ping(
        "ipv6", "2001:db8::1", timeout=1, source="2001:db8::2", platform="openbsd", runner=runner
    )
    assert result.ok and result.rtt_ms == 0.412
    assert runner.calls == [tuple(argv)]


def test_openbsd_ping_no_reply_and_errors_through_the_runner() -> None:
    """OpenBSD's exit 1 with 100% loss is "no reply" (with stderr's reason when it gave one);
    a timeout, a missing program and another exit status are failures that say so."""
    argv = ("ping", "-c", "1", "-w", "1", "203.0.113.9")
    cases = [
        (
            {"returncode": 1, "stdout": OPENBSD_NO_REPLY_OUTPUT},
            "no reply from 203.0.113.9 within 1 s",
        ),
        (
            {
                "returncode": 1,
                "stdout": OPENBSD_NO_REPLY_OUTPUT,
                "stderr": "ping: sendmsg: No route to host\n",
            },
            "no reply from 203.0.113.9 within 1 s: ping: sendmsg: No route to host",
        ),
        (
            {"returncode": -9, "timed_out": True, "duration": 3.0},
            "ping 203.0.113.9 did not finish within 3.0 s",
        ),
        (
            {"returncode": NOT_STARTED, "stderr": "ping: cannot run: No such file or directory"},
            "ping 203.0.113.9 could not run: ping: cannot run: No such file or directory",
        ),
        (
            {"returncode": 64, "stderr": "usage: ping [-DdEefHLnqRv] ...\n"},
            "ping 203.0.113.9 failed (exit 64): usage: ping [-DdEefHLnqRv] ...",
        ),
    ]
    for answer, detail in cases:
        runner = RecordingRunner()
        runner.script(argv, **answer)  # type: ignore[arg-type]
        result = ping("ipv4", "203.0.113.9", timeout=1, platform="openbsd", runner=runner)
        assert result == ProbeResult(False, None, detail)
        assert runner.calls == [argv]


def test_a_subprocess_runner_runs_the_ping_it_finds_in_its_environment(tmp_path: Path) -> None:
    """Through a real SubprocessRunner the probe runs `ping` from the runner's fixed
    environment (not the caller's), with the argv it built, and parses what it prints."""
    fake = tmp_path / "ping"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$*" = "-c 1 -W 1 -4 203.0.113.2" ] && [ "$LC_ALL" = C ] || exit 3\n'
        'echo "64 bytes from 203.0.113.2: icmp_seq=1 ttl=64 time=1.5 ms"\n'
    )
    fake.chmod(0o755)
    runner = SubprocessRunner(env={"PATH": f"{tmp_path}:/bin:/usr/bin", "LC_ALL": "C"})
    result = ping("ipv4", "203.0.113.2", timeout=1.0, runner=runner)
    assert result == ProbeResult(True, 1.5, "reply from 203.0.113.2 in 1.5 ms")


def test_ping_loopback(lab_available: None) -> None:
    """A ping to 127.0.0.1 succeeds and carries a positive round-trip time."""
    result = ping("ipv4", "127.0.0.1", timeout=1.0)
    assert result.ok, result.detail
    assert result.rtt_ms is not None and result.rtt_ms > 0


def test_ping_inside_netns_succeeds_v4_and_v6(two_hosts: tuple[str, str]) -> None:
    """From the near namespace both the far end's IPv4 and IPv6 addresses answer."""
    near, _far = two_hosts
    v4 = ping("ipv4", "203.0.113.2", timeout=2.0, netns=near)
    v6 = ping("ipv6", "2001:db8:1::2", timeout=2.0, netns=near, source="2001:db8:1::1")
    for result in (v4, v6):
        assert result.ok, result.detail
        assert result.rtt_ms is not None and result.rtt_ms > 0


def test_ping_silent_address_fails(two_hosts: tuple[str, str]) -> None:
    """An address on the link that nobody holds gives ok False, no rtt, and says why."""
    near, _far = two_hosts
    result = ping("ipv4", "203.0.113.3", timeout=0.5, netns=near)
    assert result == ProbeResult(False, None, result.detail)
    assert "203.0.113.3" in result.detail
    assert "\n" not in result.detail


def test_ping_unroutable_fails_with_one_line(two_hosts: tuple[str, str]) -> None:
    """A target with no route fails at once with ping's own complaint on one line."""
    near, _far = two_hosts
    result = ping("ipv4", "198.51.100.9", timeout=0.5, netns=near)
    assert not result.ok
    assert result.rtt_ms is None
    assert "198.51.100.9" in result.detail
    assert "\n" not in result.detail


def test_ping_missing_namespace_fails_cleanly(lab_available: None) -> None:
    """A namespace that does not exist is a failed probe with a reason, not an exception."""
    result = ping("ipv4", "203.0.113.2", timeout=0.5, netns=f"rcmissing{os.getpid()}")
    assert not result.ok
    assert "exit" in result.detail
