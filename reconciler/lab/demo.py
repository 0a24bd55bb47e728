"""`reconciler lab demo`: build the lab, run the daemon, move the WAN address, watch the repair.

The tunnel is sit (6in4) wherever the kernel has it, else vxlan; the demo says which.

The live view tails the event log read-only from a thread: one line per fact and action as
it lands (observations that repeat what is already known are left out to keep the story
readable). At the end it prints `reconciler diff` (no changes) and `reconciler replay`,
writes `reconciler report` of the run to a file that outlives the lab and prints its path,
then tears the lab down, also on Ctrl-C.
"""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from reconciler.lab.topology import Lab, LabError, lab_unavailable_reason, wait_until

__all__ = ["describe_envelope", "run_demo"]

NEW_WAN_ADDRESS = "203.0.113.11"
MODE_NOTES = {
    "sit": "6in4, IPv6 in IP protocol 41, what Hurricane Electric speaks",
    "vxlan": "a stand-in: this kernel has no sit, so IPv6 rides in UDP; "
    "`make test-sit` shows sit in a user-mode Linux guest",
}
_SKIPPED_FIELDS = {"causes", "addresses", "summary", "fail_after", "recover_after"}


def describe_envelope(envelope: Any) -> str:
    """One line for a fact: its UTC time, source, type and the fields that carry news."""
    fact = envelope.fact
    stamp = datetime.fromtimestamp(envelope.at, UTC).strftime("%H:%M:%S.%f")[:-3]
    name = getattr(fact, "TYPE", None) or f"unknown:{getattr(fact, 'type', '?')}"
    fields = []
    if attrs.has(type(fact)):
        for key, value in attrs.asdict(fact, recurse=False).items():
            if key in _SKIPPED_FIELDS or value in (None, "", (), {}):
                continue
            fields.append(f"{key}={value}")
    return f"{stamp}  {envelope.source:<29} {name:<22} {' '.join(fields)}".rstrip()


class _LiveView:
    """Prints new facts from the event log as they are appended, until stopped."""

    def __init__(self, lab: Lab, out: TextIO) -> None:
        self.lab = lab
        self.out = out
        self.printed_seq = 0
        self.last_seen: dict[tuple[str, Any], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-live-view", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._print_new()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._print_new()

    def _print_new(self) -> None:
        try:
            envelopes = self.lab.envelopes()
        except Exception:  # the log may be mid-write or not there yet: try again shortly
            return
        for envelope in envelopes:
            if envelope.seq <= self.printed_seq:
                continue
            self.printed_seq = envelope.seq
            fact = envelope.fact
            if getattr(fact, "TYPE", "").endswith("-observed") and attrs.has(type(fact)):
                fields = attrs.asdict(fact, recurse=False)
                subject = (fact.TYPE, fields.get("family") or fields.get("interface"))
                news = {k: v for k, v in fields.items() if k not in ("rtt_ms", "detail")}
                if self.last_seen.get(subject) == news:
                    continue  # an observation that changes nothing is no news
                self.last_seen[subject] = news
            print(describe_envelope(envelope), file=self.out, flush=True)


def run_demo(out: TextIO, err: TextIO) -> int:
    """The whole demo; 0 when the repair was seen, 1 when something went wrong."""
    reason = lab_unavailable_reason()
    if reason:
        print(f"reconciler lab demo: {reason}; run it as root (sudo make demo)", file=err)
        return 1
    try:
        with Lab() as lab:
            return _demo_in(lab, out)
    except LabError as exc:
        print(f"reconciler lab demo: {exc}", file=err)
        return 1


def _demo_in(lab: Lab, out: TextIO) -> int:
    def say(text: str) -> None:
        print(f"\n== {text}", file=out, flush=True)

    say(
        f"lab {lab.run_id}: namespaces {lab.router_ns} and {lab.he_ns}, "
        f"WAN {lab.wan_address}, fake HE on 203.0.113.1"
    )
    say(f"tunnel mode: {lab.mode} ({MODE_NOTES[lab.mode]})")
    say("starting `reconciler run` in the router namespace; the live event log follows")
    live = _LiveView(lab, out)
    lab.start_daemon()
    live.start()
    try:
        wait_until(lab.ping6_through_tunnel, timeout=20, what="IPv6 across the tunnel")
        time.sleep(2)  # a few quiet probe cycles
        say(
            f"the ISP reconnects the WAN (link down, then up with a new address): "
            f"{lab.wan_address} -> {NEW_WAN_ADDRESS}"
        )
        repaired = lab.move_wan_and_time_repair(NEW_WAN_ADDRESS, timeout=60, link_down_first=True)
        # The daemon's own probes record the recovery a little later; a slow kernel (the UML
        # guest) needs more than the second or two a fixed pause gave it.
        wait_until(lambda: _outage_closed(lab), timeout=30, what="the recovery to be recorded")
    finally:
        live.stop()
    say(f"repaired: IPv6 crosses the tunnel again {repaired:.2f} s after the change")
    say("reconciler diff")
    _show(lab, out, "diff")
    say("reconciler replay")
    _show(lab, out, "replay")
    say("reconciler report")
    _write_report(lab, out)
    code = lab.stop_daemon()
    say(f"daemon stopped (exit {code}); tearing the lab down")
    return 0


def _outage_closed(lab: Lab) -> bool:
    """The daemon's log holds the change's outage, and it has ended."""
    from reconciler.model.incidents import extract

    envelopes = lab.envelopes()
    if not envelopes:
        return False
    incidents = extract(envelopes, since=envelopes[0].at, until=time.time()).incidents
    return bool(incidents) and all(incident.end is not None for incident in incidents)


def _write_report(lab: Lab, out: TextIO) -> Path | None:
    """The run's report, in a directory of its own outside the lab's (which goes at teardown)."""
    where = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    where.chmod(0o755)  # `sudo make demo`: the user who ran it can open the page
    target = where / "report.html"
    done = lab.reconciler("report", "-o", str(target))
    if done.returncode != 0:
        out.write(done.stdout + done.stderr)
        return None
    print(f"the report of this run: {target} (open it in a browser)", file=out, flush=True)
    return target


def _show(lab: Lab, out: TextIO, *args: str) -> None:
    done = lab.reconciler(*args)
    out.write(done.stdout)
    if done.stderr:
        out.write(done.stderr)
    out.flush()
