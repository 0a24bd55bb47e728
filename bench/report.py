"""`python -m bench report [--days N]`: what `reconciler report` costs on a week of log.

Writes a synthetic log at the shipped example's intervals (probes every 60 s per family,
WAN and tunnel observed every 30 s: about 8,600 facts a day) with one ISP renumbering a day
(the outage, the actions, the repair), then runs `reconciler report` over it in a child
process, as a user would, and prints its wall time, peak RSS and the page's size.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler.eventlog import EventLog
from reconciler.model import facts as f

__all__ = ["main", "write_log"]

HE = "198.51.100.1"
DAY = 86_400


def write_log(events: Path, days: int, start: float) -> int:
    """The synthetic log; returns the number of facts written."""
    records: list[dict[str, object]] = []
    with EventLog.open(events) as log:

        def add(at: float, fact: object, source: str = "bench") -> None:
            records.append(f.to_record(fact, at=at, source=source))  # type: ignore[arg-type]
            if len(records) >= 5000:  # group commits: a week is written in seconds
                log.append_many(records)
                records.clear()

        add(start, f.DaemonStarted(pid=1, version="bench"))
        add(start, f.ConfigLoaded("ab" * 32, "/etc/reconciler.conf"))
        address, renumbered = "203.0.113.7", 0
        for minute in range(days * DAY // 60):
            at = start + minute * 60.0
            if minute % (DAY // 60) == 600:  # 10:00 every day: the ISP hands out a new address
                renumbered += 1
                new = f"203.0.113.{10 + renumbered % 200}"
                add(at, f.WanAddressObserved("em0", None, False))
                for i in range(3):
                    add(at + 2 + i * 10, f.ProbeObserved("ipv4", "198.51.100.53", False))
                    add(at + 3 + i * 10, f.ProbeObserved("ipv6", "2001:db8::53", False))
                add(at + 40, f.ActionStarted("restart-wan:em0", "restart-wan", "link down"))
                add(at + 44, f.ActionSucceeded("restart-wan:em0", "restart-wan"))
                add(at + 45, f.WanAddressObserved("em0", new, True))
                key = f"update-he-endpoint:{new}"
                add(at + 46, f.ActionStarted(key, "update-he-endpoint", f"HE has {address}"))
                add(at + 47, f.ActionSucceeded(key, "update-he-endpoint", f"good {new}"))
                add(at + 47, f.EndpointObserved(new, "update", for_local=new))
                key = f"restart-tunnel:{new}->{HE}"
                add(at + 48, f.ActionStarted(key, "restart-tunnel", "local end"))
                add(at + 49, f.ActionSucceeded(key, "restart-tunnel"))
                add(at + 49, f.TunnelObserved("gif0", True, True, new, HE))
                address = new
                continue
            for half in (0.0, 30.0):
                add(at + half, f.WanAddressObserved("em0", address, True))
                add(at + half, f.TunnelObserved("gif0", True, True, address, HE))
            add(at + 5, f.ProbeObserved("ipv4", "198.51.100.53", True, 3.1))
            add(at + 6, f.ProbeObserved("ipv6", "2001:db8::53", True, 4.2))
        log.append_many(records)
        return log.last_seq


def main(argv: list[str] | None = None) -> int:
    args = list(argv or [])
    days = int(args[args.index("--days") + 1]) if "--days" in args else 7
    base = Path(tempfile.mkdtemp(prefix="bench-report-", dir=os.environ.get("BENCH_DIR", ".")))
    try:
        start = 1_764_547_200.0  # 2025-12-01T00:00:00Z
        t0 = time.perf_counter()
        count = write_log(base / "state" / "events", days, start)
        wrote = time.perf_counter() - t0
        print(f"report benchmark: {days} days, {count} facts (written in {wrote:.1f} s)")
        page = base / "report.html"
        state, until = str(base / "state"), str(start + days * DAY)
        argv_report = [sys.executable, "-m", "reconciler", "report", "--state-dir", state,
                       "--until", until, "-o", str(page)]  # fmt: skip
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(argv_report, check=True, capture_output=True)
            best = min(best, time.perf_counter() - t0)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"  reconciler report: {best:.2f} s (best of 3, process start included)")
        size = page.stat().st_size / 1024
        print(f"  {count / best:,.0f} facts/s; peak RSS {peak:.1f} MB; page {size:.0f} KiB")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
