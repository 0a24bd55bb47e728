"""A chaos soak in the network lab (root): seeded random faults, checked against invariants.

    python -m bench chaos --minutes 30 --seed 7

For `--minutes` the lab (reconciler.lab.topology) suffers one fault after another, drawn
from a random generator seeded with `--seed` (the same seed, the same faults in the same
order): WAN address changes, flaps (link down and up, an address and back) and bursts
(several addresses within a second), SIGKILL while an update is at HE, SIGHUP with a good
and with a broken configuration file, SIGTERM and a restart, a full state disk (the state
directory is a small tmpfs, filled up), and HE answering 911, 503, too late (it applied
the update), or not at all. The last fault is always `abuse`. After each fault clears, the
lab waits for convergence (the tunnel's local end and HE's endpoint are the WAN address,
IPv6 crosses the tunnel) and times the repair from the fault's WAN change.

The invariants, checked throughout and on the whole event log at the end:
- convergence within a bound after every fault clears (`--repair-bound`);
- no update sooner than min_update_interval after another, no `nochg` the planner could
  have foreseen (forced only after an attempt of the same update that may have reached HE
  unanswered, or when the planner said HE's endpoint or an update was unknown);
- no lost facts or torn tail: the log's records are numbered without a gap, and
  `reconciler log verify` passes;
- no silent stop: the daemon is running whenever it was not stopped on purpose;
- bounded memory: the daemon's RSS never above `--rss-bound` MiB;
- the update key in no file the run produced (logs, the event log, HE's output), in any
  encoding;
- abuse: exactly one update, then none for the rest of the run.

Prints one summary line (seed, minutes, faults by kind, repairs, median and p90 time to
repair, updates sent, nochg, violations) and each violation above it; exits 1 when there
was one, 2 when the lab cannot run here. Bounded: it stops `--minutes` after the start plus
the time the last fault's repair may take.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import os
import random
import shutil
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler.lab.topology import USERNAME, Lab, LabError, lab_unavailable_reason, wait_until
from reconciler.model.actions import UpdateHeEndpoint
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    Envelope,
)

__all__ = ["CHAOS_CONFIG", "FAULTS", "check_log", "main"]

# Short holds, so that a fault clears in seconds: the back-off after trouble at HE tops out
# at 8 s, and min_update_interval (2 s) is what the spacing invariant checks.
CHAOS_CONFIG: dict[str, Any] = {
    "tunnelbroker__min_update_interval": 2.0,
    "tunnelbroker__connect_timeout": 1.0,
    "tunnelbroker__read_timeout": 2.0,
    "reconcile__backoff_min": 1.0,
    "reconcile__backoff_max": 8.0,
    "reconcile__he_backoff_max": 8.0,
}
FAULTS = (
    "wan-change",
    "wan-flap",
    "wan-burst",
    "sigkill-mid-update",
    "sighup-good",
    "sighup-bad",
    "sigterm-restart",
    "full-disk",
    "he-911",
    "he-503",
    "he-slow",
    "he-silent",
)
# Spacing of two update attempts may look shorter than min_update_interval by clock jitter
# between two stamps (both taken by the daemon's clock): this much is tolerated.
_SPACING_SLACK = 0.05
_NOCHG = "HE endpoint nochg"


# --- the invariants on the log (pure: unit-tested on crafted logs) --------------------------


def check_log(envelopes: Sequence[Envelope], min_update_interval: float) -> list[str]:
    """The invariants the event log itself must show: records numbered without a gap, update
    attempts at least min_update_interval apart, and no nochg the planner could have
    foreseen: one is forced only when HE may have taken an earlier attempt unanswered (the
    daemon died during it, or no answer came in time) or the planner said HE's endpoint or
    an update was unknown. One line per violation; a forced nochg is printed."""
    violations: list[str] = []
    for before, after in itertools.pairwise(envelopes):
        if after.seq != before.seq + 1:
            violations.append(f"lost facts: record {before.seq} is followed by {after.seq}")
    starts = [
        e
        for e in envelopes
        if isinstance(e.fact, ActionStarted) and e.fact.action == UpdateHeEndpoint.KIND
    ]
    for before, after in itertools.pairwise(starts):
        gap = after.at - before.at
        if gap < min_update_interval - _SPACING_SLACK:
            violations.append(
                f"update {_key(after)} (record {after.seq}) went {gap:.2f} s after "
                f"{_key(before)} (record {before.seq}), min_update_interval is "
                f"{min_update_interval:g} s"
            )
    reasons: dict[str, str] = {}  # the reason each update was last sent for
    running: set[str] = set()  # updates started and not yet answered
    unknown: set[str] = set()  # updates whose last attempt may have reached HE unanswered
    after_unknown: set[str] = set()  # updates sent again after such an attempt
    for envelope in envelopes:
        fact = envelope.fact
        if isinstance(fact, DaemonStarted):
            unknown |= running  # killed or stopped mid-update: HE may have it
            running.clear()
        elif getattr(fact, "action", None) != UpdateHeEndpoint.KIND:
            continue
        elif isinstance(fact, ActionStarted):
            reasons[fact.key] = fact.reason
            if fact.key in unknown:
                after_unknown.add(fact.key)
            else:
                after_unknown.discard(fact.key)
            unknown.discard(fact.key)
            running.add(fact.key)
        elif isinstance(fact, ActionFailed):
            running.discard(fact.key)
            if fact.unconfirmed:
                unknown.add(fact.key)
        elif isinstance(fact, ActionSucceeded):
            running.discard(fact.key)
            if not fact.message.startswith(_NOCHG):
                continue
            reason = reasons.get(fact.key, "")
            if "unknown" in reason or fact.key in after_unknown:
                # Forced: HE may have taken an earlier attempt the daemon never heard back
                # from, and the tunnel (or nothing) could tell it before this one went out.
                print(f"forced nochg (record {envelope.seq}, {fact.key}): {reason}", flush=True)
                continue
            violations.append(
                f"unforced nochg (record {envelope.seq}, {fact.key}): the update was sent "
                f"because {reason or '(no intent recorded)'}"
            )
    return violations


def _key(envelope: Envelope) -> str:
    return str(getattr(envelope.fact, "key", "?"))


def key_forms(key: str) -> dict[str, bytes]:
    """The update key as a leak could carry it: raw, the Basic token, base64."""
    raw = key.encode()
    basic = base64.b64encode(f"{USERNAME}:{key}".encode())
    return {
        "raw": raw,
        "basic token": basic.rstrip(b"="),
        "base64": base64.b64encode(raw).rstrip(b"="),
    }


# --- the soak ---------------------------------------------------------------------------------


class Soak:
    """One seeded chaos run in one lab."""

    def __init__(self, lab: Lab, rng: random.Random, args: argparse.Namespace) -> None:
        self.lab = lab
        self.rng = rng
        self.args = args
        self.violations: list[str] = []
        self.faults: Counter[str] = Counter()
        self.repairs: list[float] = []
        self.rss_peak_kib = 0
        self.used: set[str] = {lab.wan_address or ""}
        self.envelopes: list[Envelope] = []

    # -- helpers ---------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        print(f"violation: {text}", flush=True)
        self.violations.append(text)

    def new_address(self) -> str:
        current = self.lab.wan_address
        while True:
            address = f"203.0.113.{self.rng.randint(10, 250)}"
            if address != current:
                return address

    def sample_rss(self) -> None:
        daemon = self.lab.daemon
        if daemon is None or daemon.poll() is not None:
            return
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib = int(line.split()[1])
                    self.rss_peak_kib = max(self.rss_peak_kib, kib)
                    if kib > self.args.rss_bound * 1024:
                        self.violation(f"RSS {kib / 1024:.1f} MiB > {self.args.rss_bound} MiB")

    def start(self) -> None:
        """Start the daemon and wait until it runs on its configuration (it logs `started:
        pid N`): a fault that rewrites the file a moment later must find it loaded."""
        daemon = self.lab.start_daemon()
        line = f"started: pid {daemon.pid},"
        try:
            wait_until(
                lambda: line in self.lab.daemon_stderr() or daemon.poll() is not None,
                timeout=30,
                what="the daemon's start",
            )
        except LabError:
            self.violation("the daemon did not start within 30 s")
        if daemon.poll() is not None:
            self.violation(f"the daemon exited {daemon.poll()} at its start")
            self.lab.daemon = None

    def wait_he_settled(self) -> None:
        """Until every request HE took in has been answered and counted (a killed daemon's
        request may still be held at HE)."""

        def settled() -> bool:
            stats = self.lab.he_stats()
            return bool(stats["updates_received"] == stats["counts"].get("update", 0))

        with contextlib.suppress(LabError):
            wait_until(settled, timeout=30, what="HE done with earlier requests")

    def ensure_running(self, what: str) -> None:
        if not self.lab.daemon_running():
            code = self.lab.daemon.poll() if self.lab.daemon else None
            self.violation(f"the daemon stopped on its own ({what}; exit {code})")
            self.start()

    def converged(self) -> bool:
        wan = self.lab.wan_address
        return (
            self.lab.tunnel_local() == wan
            and self.lab.ping6_through_tunnel(timeout=0.3)
            and self.lab.he_stats()["endpoint"] == wan
        )

    def wait_converged(self, what: str, started: float | None = None) -> None:
        """Wait for convergence; record the time to repair since `started`."""
        try:
            wait_until(self.converged, timeout=self.args.repair_bound, interval=0.1, what=what)
        except LabError:
            self.violation(f"no convergence within {self.args.repair_bound:g} s after {what}")
            return
        if started is not None:
            self.repairs.append(time.monotonic() - started)

    def move(self, address: str | None = None) -> float:
        started = time.monotonic()
        self.lab.set_wan_address(address or self.new_address())
        return started

    # -- the faults ------------------------------------------------------------------------

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1
        getattr(self, "_" + kind.replace("-", "_"))()
        self.ensure_running(kind)
        self.sample_rss()

    def _wan_change(self) -> None:
        self.wait_converged("a WAN change", self.move())

    def _wan_flap(self) -> None:
        if self.rng.random() < 0.5:  # the link drops and comes back with the same address
            started = time.monotonic()
            self.lab.wan_link(False)
            time.sleep(self.rng.uniform(0.2, 3.0))
            self.lab.wan_link(True)
        else:  # the address goes to another and comes back
            back = self.lab.wan_address
            started = self.move()
            time.sleep(self.rng.uniform(0.1, 3.0))
            self.lab.set_wan_address(back or self.new_address())
        self.wait_converged("a WAN flap", started)

    def _wan_burst(self) -> None:
        started = time.monotonic()
        for _ in range(self.rng.randint(3, 6)):
            self.move()
            time.sleep(self.rng.uniform(0.05, 0.3))
        self.wait_converged("a burst of WAN changes", started)

    def _sigkill_mid_update(self) -> None:
        lab = self.lab
        lab.he("delay", seconds=8)
        received = lab.he_stats()["updates_received"]
        started = self.move()
        try:
            wait_until(
                lambda: lab.he_stats()["updates_received"] > received,
                timeout=30,
                what="the update at HE",
            )
        except LabError:
            self.violation("SIGKILL mid-update: no update reached HE within 30 s")
        lab.kill_daemon()
        lab.he("delay", seconds=0)
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.start()
        # The fault clears when HE has dealt with the request it held as well: applied 8 s late,
        # after a later fault's updates, it would move HE back behind the daemon's back (a
        # stale request HE reorders, which no client can foresee). Timed to the repair.
        self.wait_converged("SIGKILL mid-update and a restart", started)
        self.wait_he_settled()
        self.wait_converged("HE's late answer to the killed daemon's request")

    def _sighup_good(self) -> None:
        interval = self.rng.choice([1.0, 1.5, 2.0])
        self.lab.write_config(probe_ipv4__interval=interval)
        self.lab.reload_daemon()
        time.sleep(1.0)
        self.wait_converged("SIGHUP with a good file")

    def _sighup_bad(self) -> None:
        path = self.lab.config_path
        good = path.read_text()
        scratch = path.with_suffix(".tmp")
        scratch.write_text(good + "\n[tunnel\nbroken = \n")
        os.replace(scratch, path)
        self.lab.reload_daemon()
        time.sleep(1.5)
        self.ensure_running("SIGHUP with a broken file")
        self.lab.write_config()
        self.wait_converged("SIGHUP with a broken file", self.move())

    def _sigterm_restart(self) -> None:
        started = time.monotonic()
        try:
            code = self.lab.stop_daemon(signal.SIGTERM, timeout=10)
        except LabError as problem:
            self.violation(f"SIGTERM: {problem}")
            code = None
        if code not in (0, None):
            self.violation(f"SIGTERM: the daemon exited {code}, not 0")
        if self.rng.random() < 0.5:
            started = self.move()  # the WAN changes while the daemon is down
        self.start()
        self.wait_converged("SIGTERM and a restart", started)

    def _full_disk(self) -> None:
        ballast = self.lab.state_dir / "ballast"
        with open(ballast, "ab", buffering=0) as f:
            for chunk in (b"\xa5" * 65536, b"\xa5" * 512):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(chunk)
        time.sleep(1.0)
        self.wait_converged("a WAN change on a full disk", self.move())
        time.sleep(self.rng.uniform(0.5, 3.0))
        ballast.unlink()

    def _he_answer(self, answer: str) -> None:
        self.lab.he("script", answers=answer)
        self.wait_converged(f"HE answering {answer}", self.move())

    def _he_911(self) -> None:
        self._he_answer("911")

    def _he_503(self) -> None:
        self._he_answer("503")

    def _he_slow(self) -> None:
        # HE applies the update and answers after the client's deadline (3 s).
        self.lab.he("reply", apply=1, delay=5)
        self.wait_converged("HE answering too late", self.move())

    def _he_silent(self) -> None:
        # No answer at all and nothing applied: the connection is dropped.
        self.lab.he("script", answers="drop")
        self.wait_converged("HE not answering", self.move())

    def abuse(self, seconds: float) -> None:
        """HE answers abuse: exactly one update, then none while the run lasts."""
        self.faults["he-abuse"] += 1
        lab = self.lab

        self.wait_he_settled()
        before = lab.he_update_calls()
        lab.he("script", answers="abuse")
        self.move()
        with contextlib.suppress(LabError):
            wait_until(lambda: lab.he_update_calls() > before, timeout=30, what="the abuse")
        time.sleep(seconds)
        self.move()  # a new address does not lift the hold either
        time.sleep(seconds)
        calls = lab.he_update_calls() - before
        if calls != 1:
            self.violation(f"abuse: {calls} update(s) reached HE, expected exactly 1")
        self.ensure_running("abuse")

    # -- the end ---------------------------------------------------------------------------

    def final_checks(self) -> None:
        lab = self.lab
        try:
            code = lab.stop_daemon(signal.SIGTERM, timeout=10)
            if code != 0:
                self.violation(f"the final SIGTERM: exit {code}")
        except LabError as problem:
            self.violation(f"the final SIGTERM: {problem}")
        verify = lab.reconciler("log", "verify")
        if verify.returncode != 0:
            self.violation(f"log verify: exit {verify.returncode}: {verify.stdout[-300:]}")
        self.envelopes = envelopes = lab.envelopes()
        for found in check_log(envelopes, CHAOS_CONFIG[_MIN_INTERVAL]):
            self.violation(found)
        stderr = lab.daemon_stderr()
        if "Traceback" in stderr:
            self.violation("a traceback in the daemon's log")
        for path in lab.produced_files():
            data = path.read_bytes()
            for key in lab.keys_used:
                for name, form in key_forms(key).items():
                    if form in data:
                        self.violation(f"the update key ({name}) in {path.name}")
        if self.violations and self.args.keep is not None:
            # The evidence, before the state's tmpfs and the lab's work dir go.
            keep = Path(self.args.keep)
            shutil.copytree(lab.state_dir, keep / "state", ignore=shutil.ignore_patterns("ballast"))
            for path in (lab.daemon_stderr_path, lab.he_output_path, lab.config_path):
                if path.exists():
                    shutil.copy2(path, keep / path.name)
            print(f"kept the event log and the logs in {keep}", flush=True)


_MIN_INTERVAL = "tunnelbroker__min_update_interval"


@contextlib.contextmanager
def _state_on_tmpfs(lab: Lab, size: str) -> Iterator[None]:
    """The lab's state directory on a tmpfs of `size` (a full disk is one ballast away)."""
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(lab.state_dir)],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(lab.state_dir)], capture_output=True)


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    started = time.monotonic()
    deadline = started + args.minutes * 60.0
    with Lab() as lab, _state_on_tmpfs(lab, args.state_size):
        soak = Soak(lab, rng, args)
        lab.config_overrides.update(CHAOS_CONFIG)
        soak.start()
        soak.wait_converged("the start")
        last_sample = 0.0
        abuse_time = max(5.0, min(20.0, args.minutes * 60.0 * 0.05))
        while time.monotonic() < deadline - 2 * abuse_time:
            soak.fault(rng.choice(FAULTS))
            time.sleep(rng.uniform(0.0, 2.0))
            if time.monotonic() - last_sample > 5.0:
                soak.sample_rss()
                last_sample = time.monotonic()
        soak.abuse(abuse_time)
        stats = lab.he_stats()
        soak.final_checks()
    counts = stats.get("counts", {})
    nochg = sum(
        1
        for e in soak.envelopes
        if isinstance(e.fact, ActionSucceeded) and e.fact.message.startswith(_NOCHG)
    )
    repairs = sorted(soak.repairs)
    median = statistics.median(repairs) if repairs else float("nan")
    p90 = repairs[max(0, int(len(repairs) * 0.9 + 0.5) - 1)] if repairs else float("nan")
    faults = ",".join(f"{kind}:{n}" for kind, n in sorted(soak.faults.items()))
    print(
        f"chaos seed={args.seed} minutes={args.minutes:g} "
        f"ran={(time.monotonic() - started) / 60:.1f}min faults={sum(soak.faults.values())} "
        f"({faults}) repairs={len(repairs)} repair_median={median:.2f}s repair_p90={p90:.2f}s "
        f"updates={counts.get('update', 0)} nochg={nochg} "
        f"rss_peak={soak.rss_peak_kib / 1024:.1f}MiB violations={len(soak.violations)}",
        flush=True,
    )
    return 1 if soak.violations else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the faults go on")
    parser.add_argument("--seed", type=int, default=1, help="the random generator's seed")
    parser.add_argument(
        "--repair-bound", type=float, default=60.0, help="seconds to converge after a fault"
    )
    parser.add_argument("--rss-bound", type=float, default=128.0, help="MiB the RSS stays under")
    parser.add_argument("--state-size", default="64m", help="the state tmpfs (a full disk)")
    parser.add_argument(
        "--keep", metavar="DIR", help="on a violation, copy the event log and the logs here"
    )
    args = parser.parse_args(argv)
    reason = lab_unavailable_reason()
    if reason:
        print(f"bench chaos: the lab cannot run here: {reason}")
        return 2
    if args.minutes <= 0:
        print("bench chaos: --minutes must be positive")
        return 2
    # SIGTERM ends the run as Ctrl-C does: the lab's namespaces, mount and processes go.
    signal.signal(signal.SIGTERM, _interrupted)
    return run(args)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
