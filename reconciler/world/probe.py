"""Reachability probes: one ICMP echo through the system's `ping`, its round-trip time parsed.

The system's ping is used rather than a raw-socket library because it already holds the
privilege to send ICMP, honours `-I source` the way the administrator expects, and runs
unchanged inside `ip netns exec`. It runs through a CommandRunner (SubprocessRunner unless
one is given): an argv list, never a shell, in the C locale (its output is parsed), in its
own session so a timeout kills everything it started, and scriptable in tests.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from attrs import frozen

from reconciler.outside_text import clean_line
from reconciler.world.runner import NOT_STARTED, CommandRunner, SubprocessRunner

__all__ = ["ProbeResult", "parse_rtt_ms", "ping", "ping_argv"]

Family = Literal["ipv4", "ipv6"]

# "time=0.197 ms" (iputils, OpenBSD) and "time<1 ms" (some builds round tiny values).
_RTT_LINE = re.compile(r"\btime[=<]\s*([0-9]+(?:\.[0-9]+)?)\s*ms\b")
# The summary line, when the per-reply line is missing: "min/avg/max/... = 0.1/0.2/0.3/0.0 ms".
_RTT_SUMMARY = re.compile(r"=\s*[0-9.]+/([0-9.]+)/[0-9.]+(?:/[0-9.]+)?\s*ms")
# Seconds the subprocess may take beyond ping's own wait before it is killed.
_GRACE = 2.0


@frozen
class ProbeResult:
    ok: bool
    rtt_ms: float | None
    detail: str  # one line: what happened, for the fact and the log


def ping_argv(
    family: Family,
    target: str,
    *,
    timeout: float,
    source: str | None = None,
    netns: str | None = None,
    platform: str = "linux",
) -> list[str]:
    """The argv that sends one echo request to `target` and waits at most `timeout` seconds."""
    if family not in ("ipv4", "ipv6"):
        raise ValueError(f"unknown probe family {family!r}")
    if platform == "linux":
        # iputils takes fractional seconds for -W; -4/-6 pins the family.
        argv = ["ping", "-c", "1", "-W", _seconds(timeout)]
        if source is not None:
            argv += ["-I", source]
        argv += ["-6" if family == "ipv6" else "-4", target]
    elif platform == "openbsd":
        # OpenBSD: ping6 for IPv6, -w is the wait for a reply in whole seconds.
        wait = str(max(1, math.ceil(timeout)))
        argv = ["ping6" if family == "ipv6" else "ping", "-c", "1", "-w", wait]
        if source is not None:
            argv += ["-I", source]
        argv.append(target)
    else:
        raise ValueError(f"no ping argv for platform {platform!r}")
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    return argv


def parse_rtt_ms(output: str) -> float | None:
    """The round-trip time in milliseconds from ping's output, or None when it has none."""
    found = _RTT_LINE.search(output) or _RTT_SUMMARY.search(output)
    return float(found.group(1)) if found else None


def ping(
    family: Family,
    target: str,
    *,
    timeout: float,
    source: str | None = None,
    netns: str | None = None,
    platform: str = "linux",
    runner: CommandRunner | None = None,
) -> ProbeResult:
    """Send one echo request and report whether a reply came, and how fast. Never raises for
    an unreachable target: that is a result, not an error."""
    argv = ping_argv(family, target, timeout=timeout, source=source, netns=netns, platform=platform)
    done = (runner or SubprocessRunner()).run(argv, timeout=timeout + _GRACE)
    if done.timed_out:
        return ProbeResult(
            False, None, f"ping {target} did not finish within {done.duration:.1f} s"
        )
    if done.returncode == NOT_STARTED and not done.stdout:
        problem = _first_line(done.stderr) or f"{argv[0]}: cannot run"
        return ProbeResult(False, None, f"ping {target} could not run: {problem}")
    rtt = parse_rtt_ms(done.stdout)
    if done.returncode == 0 and rtt is not None:
        return ProbeResult(True, rtt, f"reply from {target} in {rtt:g} ms")
    if done.returncode == 0:
        return ProbeResult(True, None, f"reply from {target} (no round-trip time printed)")
    if done.returncode == 1:
        # iputils and OpenBSD: sent, but no reply (OpenBSD also says why on stderr, if it knows).
        why = _first_line(done.stderr)
        return ProbeResult(
            False,
            None,
            f"no reply from {target} within {timeout:g} s" + (f": {why}" if why else ""),
        )
    problem = _first_line(done.stderr) or _first_line(done.stdout) or "no output"
    return ProbeResult(False, None, f"ping {target} failed (exit {done.returncode}): {problem}")


def _seconds(value: float) -> str:
    """A timeout as ping wants it: "1" rather than "1.0", "0.5" kept fractional."""
    return f"{value:g}"


def _first_line(text: str) -> str:
    return next((clean_line(line) for line in text.splitlines() if clean_line(line)), "")
