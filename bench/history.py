"""Windows into long histories, written through the daemon's own recording path.

    python -m bench history                 # 90 quiet days, a few incidents a day
    python -m bench history --busy 1000000  # a busy log: every fact is news

The quiet run records 90 days of observations at the shipped intervals (WAN and tunnel
every 30 s, each probe every 60 s) through reconciler.recorder.Recorder exactly as the
daemon sets it up (news only, hourly counts, snapshots every 1000 facts, checkpoints), with
three incidents a day (an IPv6 outage repaired by a tunnel restart, an ISP address change
repaired by an update, a lost ping); then it times `replay --since` one day before the end,
`replay --at` the middle, `status` and `diff`, each as a CLI process (interpreter start-up
included), best and median of five.

The busy run records facts that are all news (the address and the IPv6 probe change on
every observation) through the same Recorder, then compares `replay --since` over the last
10,000 facts with a replay of a log holding only those facts, and `--at` likewise. Its log
lives in /dev/shm when there is one (a million fdatasyncs on a shared disk would take most
of an hour; the recording path is the same). Prints figures only; the logs are kept under
the directory printed, for a second look.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from reconciler.checkpoints import checkpoints_dir, log_id_of
from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.eventlog.checkpoints import CheckpointStore
from reconciler.model import facts as f
from reconciler.recorder import Recorder
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir, snapshots_dir

__all__ = ["main"]

T0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z
HE = "198.51.100.1"
V4, V6 = "198.51.100.53", "2001:db8::53"
ADDRESSES = [f"203.0.113.{n}" for n in range(10, 250)]
DAY = 86400.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench history")
    parser.add_argument("--days", type=int, default=90, help="quiet days to record")
    parser.add_argument("--busy", type=int, metavar="FACTS", help="a busy log of FACTS facts")
    parser.add_argument("--window", type=int, default=10_000, help="busy: facts in the window")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temporary one)")
    args = parser.parse_args(list(argv or []))
    base = args.dir or Path(tempfile.mkdtemp(prefix="rc-bench-history-", dir=_fast_dir()))
    if args.busy:
        return _busy(base, args.busy, args.window)
    return _quiet(base, args.days)


def _fast_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _recorder(state_dir: Path, log: EventLog, clock: list[float]) -> Recorder:
    """The Recorder as reconciler.daemon sets it up (retention aside)."""
    return Recorder(
        log,
        lambda: clock[0],
        snapshots=SnapshotStore(snapshots_dir(state_dir)),
        quiet_summary_interval=3600.0,
        checkpoints=CheckpointStore(checkpoints_dir(state_dir)),
    )


def _wan(address: str) -> f.WanAddressObserved:
    return f.WanAddressObserved("em0", address, True, addresses=(address,))


def _tunnel(address: str) -> f.TunnelObserved:
    return f.TunnelObserved("gif0", True, True, address, HE, "gif")


def _quiet(base: Path, days: int) -> int:
    state_dir = base / "quiet"
    if not events_dir(state_dir).is_dir():  # --dir of an earlier run: time it again
        _write_quiet(state_dir, days)
    end = T0 + days * DAY
    config = _config(base, state_dir)
    state = ["--state-dir", str(state_dir)]
    runs = {
        "replay --since (the last day)": ["replay", *state, "--since", iso(end - DAY) or ""],
        "replay --at (the middle)": ["replay", *state, "--at", iso(T0 + days * DAY / 2) or ""],
        "status": ["status", "-c", str(config), *state],
        "diff": ["diff", "-c", str(config)],
    }
    _report("for scale, `reconciler --version` (the interpreter's start)", _timed(["--version"]))
    for label, args in runs.items():
        _report(label, _timed(args))
    return 0


def _write_quiet(state_dir: Path, days: int) -> None:
    clock = [T0]
    started = time.perf_counter()
    address = ADDRESSES[0]
    with EventLog.open(events_dir(state_dir)) as log:
        rec = _recorder(state_dir, log, clock)

        def record(at: float, fact: f.Fact, source: str) -> None:
            clock[0] = at
            rec.record(fact, source)

        record(T0, f.DaemonStarted(4242, "bench"), "daemon")
        record(T0, f.ConfigLoaded("c0" * 32, "/etc/reconciler.conf", {}, {"ipv4": 3,
               "ipv6": 3}, {"ipv4": 1, "ipv6": 1}), "daemon")  # fmt: skip
        record(T0, f.HostnameFileObserved("/etc/hostname.gif0", "0" * 64), "observer:hostname")
        for day in range(days):
            incidents = {9 * 120: "outage", 15 * 120: "address", 21 * 120: "lost-ping"}
            for tick in range(2880):  # every 30 s
                at = T0 + day * DAY + tick * 30.0
                kind = incidents.get(tick)
                if kind == "address":
                    address = ADDRESSES[(day + 1) % len(ADDRESSES)]
                    _address_change(record, at, address)
                record(at, _wan(address), "observer:wan")
                record(at + 1, _tunnel(address), "observer:tunnel")
                if tick % 2 == 0:
                    ok = kind not in ("outage", "lost-ping")
                    record(at + 2, f.ProbeObserved("ipv4", V4, True, 9.0), "observer:probe:ipv4")
                    probe = f.ProbeObserved("ipv6", V6, ok, 12.0 if ok else None)
                    record(at + 3, probe, "observer:probe:ipv6")
                if kind == "outage":
                    _outage(record, at, address)
        rec.record_final(lambda _s: f.DaemonStopped("bench"), "daemon")
        facts = log.last_seq
    built = time.perf_counter() - started
    size = sum(p.stat().st_size for p in events_dir(state_dir).iterdir())
    chunks = len(CheckpointStore(checkpoints_dir(state_dir)).index(log_id_of(state_dir)))
    print(
        f"bench history: {days} quiet days (3 incidents a day) recorded in {built:.0f} s: "
        f"{facts} facts ({facts / days:.0f} a day), {size / 2**20:.1f} MiB, "
        f"{chunks} checkpoints; in {state_dir}"
    )


def _address_change(record: object, at: float, address: str) -> None:
    """An ISP change repaired as the daemon does: update HE, rebuild the tunnel, reload pf."""
    rec = record
    rec(at, _wan(address), "observer:wan")  # type: ignore[operator]
    steps = [
        (f.ActionStarted(f"update-he-endpoint:{address}", "update-he-endpoint", "bench"), 1),
        (f.ActionSucceeded(f"update-he-endpoint:{address}", "update-he-endpoint", "good"), 2),
        (f.EndpointObserved(address, "update", address), 2),
        (f.ActionStarted(f"restart-tunnel:{address}->{HE}", "restart-tunnel", "bench"), 3),
        (f.ActionSucceeded(f"restart-tunnel:{address}->{HE}", "restart-tunnel"), 4),
        (f.ActionStarted(f"reload-pf:{address}", "reload-pf", "bench"), 5),
        (f.ActionSucceeded(f"reload-pf:{address}", "reload-pf"), 5),
    ]
    for fact, delay in steps:
        rec(at + delay * 0.1, fact, "executor")  # type: ignore[operator]


def _outage(record: object, at: float, address: str) -> None:
    """IPv6 fails three times (down), the tunnel is restarted, IPv6 comes back."""
    rec = record
    for n in (1, 2):
        probe = f.ProbeObserved("ipv6", V6, False, detail="timeout")
        rec(at + 60.0 * n + 3, probe, "observer:probe:ipv6")  # type: ignore[operator]
    key = f"restart-tunnel:{address}->{HE}"
    rec(at + 124, f.ActionStarted(key, "restart-tunnel", "bench"), "executor")  # type: ignore[operator]
    rec(at + 125, f.ActionSucceeded(key, "restart-tunnel"), "executor")  # type: ignore[operator]
    rec(at + 126, _tunnel(address), "observer:tunnel")  # type: ignore[operator]


def _config(base: Path, state_dir: Path) -> Path:
    """The example configuration, its state_dir and key file pointed at the bench's."""
    example = Path(__file__).resolve().parent.parent / "etc" / "reconciler.conf"
    key = base / "tunnelbroker.key"
    key.write_text("bench-key\n")
    key.chmod(0o600)
    text = example.read_text().replace('state_dir = "../state"', f'state_dir = "{state_dir}"')
    text = text.replace("/etc/reconciler/tunnelbroker.key", str(key))
    path = base / "reconciler.conf"
    path.write_text(text)
    return path


def _timed(args: list[str], rounds: int = 5) -> list[float]:
    """Wall seconds of each run; the CPU seconds (user + system) each took are noted in
    _CPU: on a machine shared with others the wall time is mostly waiting for a core."""
    times = []
    _CPU.clear()
    for _ in range(rounds):
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        _CPU.append(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime)
        if done.returncode not in (0, 2):
            print(f"  {' '.join(args[:1])} exited {done.returncode}: {done.stderr.decode()[:200]}")
    return times


_CPU: list[float] = []


def _report(label: str, times: list[float]) -> None:
    print(
        f"  {label}: wall best {min(times):.3f} s, median {statistics.median(times):.3f} s; "
        f"CPU median {statistics.median(_CPU):.3f} s (a whole CLI process)"
    )


def _busy(base: Path, count: int, window: int) -> int:
    state_dir = base / "busy"
    clock = [T0]
    started = time.perf_counter()
    with EventLog.open(events_dir(state_dir)) as log:
        rec = _recorder(state_dir, log, clock)
        for n in range(count // 2):
            clock[0] = T0 + n * 5.0
            rec.record(_wan(ADDRESSES[n % 2]), "observer:wan")
            clock[0] += 1.0
            ok = n % 2 == 0
            rec.record(f.ProbeObserved("ipv6", V6, ok, 1.0 if ok else None), "observer:probe:ipv6")
        last = log.last_seq
        records = list(log.read(last - window + 1))
    built = time.perf_counter() - started
    small = base / "window-only"
    with EventLog.open(events_dir(small)) as log:
        log.append_many(record for _, record in records)
    first_at, last_at = records[0][1]["at"], records[-1][1]["at"]
    size = sum(p.stat().st_size for p in events_dir(state_dir).iterdir())
    chunks = CheckpointStore(checkpoints_dir(state_dir)).index(log_id_of(state_dir))
    print(
        f"bench history --busy: {last} facts recorded in {built:.0f} s, {size / 2**20:.0f} MiB, "
        f"{len(chunks)} checkpoints; in {base}"
    )
    since = ["--since", iso(first_at) or ""]
    at = ["--at", iso(last_at) or ""]
    for label, args in (("replay --since", since), ("replay --at", at)):
        big = _timed(["replay", "--state-dir", str(state_dir), *args])
        big_cpu = statistics.median(_CPU)
        alone = _timed(["replay", "--state-dir", str(small), *args])
        alone_cpu = statistics.median(_CPU)
        print(
            f"  {label} over the last {window} facts: on the {last}-fact log wall median "
            f"{statistics.median(big):.3f} s, CPU {big_cpu:.3f} s; on a log of only those "
            f"facts wall {statistics.median(alone):.3f} s, CPU {alone_cpu:.3f} s: "
            f"{statistics.median(big) / statistics.median(alone):.2f}x wall, "
            f"{big_cpu / alone_cpu:.2f}x CPU (whole CLI processes)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
