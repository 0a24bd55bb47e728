"""Time to repair in the network lab, kernel notifications vs 60 s polling, and a soak (root).

    python -m bench lab [--rounds 10] [--polling-rounds 3] [--skip-polling]
    python -m bench lab --modes sit,vxlan [--rounds 10]
    python -m bench lab --soak 600 [--every 20] [--tracemalloc | --malloc-info]
    python -m bench lab --idle 300
    python -m bench lab --telemetry [--rounds 10]
    python -m bench lab --doctor [--rounds 10]
    python -m bench lab --flood [--rounds 10]
    python -m bench lab --dhcp [--rounds 10]
    python -m bench lab --pppoe [--rounds 10]       (in the UML guest: its kernel has pppoe)

Time to repair: from the moment the lab gives the WAN a new address to the first IPv6 ping
from the router that crosses the tunnel. The polling run is the original design: no kernel
notifications, every observer on a 60 s interval. The soak changes the address every
`--every` seconds and samples the daemon's RSS and CPU time from /proc; `--tracemalloc`
adds what the Python heap gained, `--malloc-info` what glibc's heap holds and how much of it
is free (fragmentation). The idle run keeps
the shipped intervals (probes every 60 s, kernel notifications on) and changes nothing, to
show what the daemon costs on a quiet day. The telemetry run repeats the repair rounds with a
[notify] hook that sleeps 60 s for every notification, the metrics textfile and /metrics on,
beside a run without them: the repair must not notice. `--modes` measures the time to
repair once per tunnel mode, one lab after the other in the same run (sit needs a kernel
with it: the UML guest has one, `scripts/uml-guest -- .venv/bin/python -m bench lab --modes
sit,vxlan`), and puts the medians side by side. `--doctor` times `reconciler doctor --json`
on a healthy lab (every check passing), the whole CLI process in the router namespace and
the run as doctor itself measures it. `--flood` repeats the repair rounds with the daemon
held to 128 file descriptors (RLIMIT_NOFILE) and `/metrics` on, first quiet, then with 150
idle loopback connections held open (and reopened when closed) throughout, and prints the
descriptors the daemon had open under the flood. `--dhcp` times the repair after an ISP
renumbering with a real DHCP client on the WAN (dnsmasq, dhclient; reconciler.lab.wan_owners),
`--pppoe` after a PPPoE redial with a new address (pppoe-server, pppd): each from the ISP's
change and from the new address on the WAN (the daemon's part), and counts restart-wan
(none is expected). Prints figures only; `--modes` exits 1 when a change was not repaired.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.lab.topology import (
    FIRST_WAN_ADDRESS,
    SECOND_WAN_ADDRESS,
    Lab,
    LabError,
    lab_unavailable_reason,
    wait_until,
)
from reconciler.model.facts import ActionStarted

__all__ = ["main"]

POLLING = {
    "daemon__watch_kernel": False,
    "probe_ipv4__interval": 60.0,
    "probe_ipv6__interval": 60.0,
    "tunnel__observe_interval": 60.0,
}
# The shipped etc/reconciler.conf's intervals, for the idle run.
SHIPPED_INTERVALS = {
    "probe_ipv4__interval": 60.0,
    "probe_ipv6__interval": 60.0,
    "tunnel__observe_interval": 30.0,
    "tunnelbroker__min_update_interval": 600.0,
    "daemon__quiet_summary_interval": 3600.0,
    "tunnelbroker__info_url": None,  # commented out in the example
}
_CLOCK_TICKS = 100  # USER_HZ on Linux


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lab")
    parser.add_argument("--rounds", type=int, default=10, help="address changes, notifications")
    parser.add_argument("--polling-rounds", type=int, default=3, help="address changes, polling")
    parser.add_argument("--skip-polling", action="store_true", help="only the notification run")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run a soak instead")
    parser.add_argument("--every", type=float, default=20.0, help="soak: seconds per change")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="soak: trace the daemon's allocations; print what grew from 5 min to the end",
    )
    parser.add_argument(
        "--malloc-info",
        action="store_true",
        help="soak: glibc's heap (from the system, free, in use) at 5 min and at the end",
    )
    parser.add_argument("--idle", type=float, metavar="SECONDS", help="a quiet day instead")
    parser.add_argument(
        "--telemetry", action="store_true", help="repairs behind a sleeping hook, metrics on"
    )
    parser.add_argument(
        "--modes", metavar="MODE,MODE", help="time to repair per tunnel mode (sit, vxlan)"
    )
    parser.add_argument(
        "--lab-probes", action="store_true", help="idle: the lab's 1 s probes and observations"
    )
    parser.add_argument(
        "--doctor", action="store_true", help="time `reconciler doctor` on a healthy lab"
    )
    parser.add_argument(
        "--flood", action="store_true", help="repairs at 128 fds, 150 idle /metrics connections"
    )
    parser.add_argument("--dhcp", action="store_true", help="repairs after DHCP renumberings")
    parser.add_argument("--pppoe", action="store_true", help="repairs after PPPoE redials")
    parser.add_argument(
        "--failover",
        action="store_true",
        help="two WANs: time from the first WAN's loss to IPv6 across the tunnel via the second",
    )
    args = parser.parse_args(list(argv or []))
    reason = lab_unavailable_reason()
    if reason:
        print(f"bench lab: skipped: {reason}")
        return 1
    if args.soak:
        if args.tracemalloc and args.malloc_info:
            parser.error("--tracemalloc and --malloc-info: one at a time")
        return _soak(args.soak, args.every, traced=args.tracemalloc, mallinfo=args.malloc_info)
    if args.idle:
        return _idle(args.idle, lab_probes=args.lab_probes)
    if args.telemetry:
        return _telemetry(args.rounds)
    if args.doctor:
        return _doctor(args.rounds)
    if args.flood:
        return _flood(args.rounds)
    if args.dhcp:
        return _owned_wan("dhcp", args.rounds)
    if args.pppoe:
        return _owned_wan("pppoe", args.rounds)
    if args.failover:
        return _failover(min(args.rounds, 14))
    if args.modes:
        return _by_mode([m.strip() for m in args.modes.split(",") if m.strip()], args.rounds)
    fast = _repair_times(args.rounds, {})
    _report("kernel notifications", fast)
    if args.skip_polling:
        return 0
    slow = _repair_times(args.polling_rounds, POLLING, per_round_timeout=200.0)
    _report("60 s polling (watch_kernel = false)", slow)
    if fast and slow:
        ratio = statistics.median(slow) / statistics.median(fast)
        print(f"lab repair: polling / notifications (median): {ratio:.1f}x")
    return 0


def _doctor(rounds: int) -> int:
    """`reconciler doctor` on a healthy lab: the CLI process (start-up included) and doctor's
    own figure for its checks, `rounds` times; exit 1 when a run did not pass every check."""
    import json
    import resource

    from reconciler.lab.topology import HE_PING_SOURCE

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    wall: list[float] = []
    own: list[float] = []
    cpu: list[float] = []
    baseline: list[float] = []
    with Lab() as lab:
        lab.route_like_a_router()
        lab.serve_probe_target6()
        lab.write_config()
        for _ in range(rounds):
            started, spent = time.monotonic(), children_cpu()
            lab.reconciler("--version")
            baseline.append(time.monotonic() - started)
            started, spent = time.monotonic(), children_cpu()
            done = lab.reconciler("doctor", "--json", "--he-ping-source", HE_PING_SOURCE)
            wall.append(time.monotonic() - started)
            cpu.append(children_cpu() - spent)
            report = json.loads(done.stdout)
            if done.returncode != 0 or not report["ok"]:
                print(f"bench lab --doctor: a check failed: {report['failed']}")
                return 1
            own.append(report["seconds"])
        mode = lab.mode
    for label, times in (
        ("whole CLI process", wall),
        ("its CPU (the process and its pings)", cpu),
        ("its checks (doctor's own)", own),
        ("`reconciler --version` beside it", baseline),
    ):
        ordered = sorted(times)
        print(
            f"lab doctor ({mode}, all 11 checks pass), {label}: {len(times)} runs, "
            f"median {statistics.median(times):.3f} s, "
            f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:.3f} s, max {ordered[-1]:.3f} s"
        )
    return 0


def _by_mode(modes: list[str], rounds: int) -> int:
    """The time to repair in each tunnel mode, with kernel notifications, in this run."""
    medians: dict[str, float] = {}
    status = 0
    for mode in modes:
        try:
            times = _repair_times(rounds, {}, mode=mode)
        except LabError as exc:
            print(f"lab repair ({mode}): the lab failed: {exc}")
            return 1
        _report(f"{mode}, kernel notifications", times)
        if len(times) < rounds:
            status = 1
        if times:
            medians[mode] = statistics.median(times)
    if len(medians) > 1:
        side_by_side = ", ".join(f"{mode} {median:.3f} s" for mode, median in medians.items())
        print(f"lab repair by tunnel mode (median of {rounds}, same run): {side_by_side}")
    return status


def _failover(rounds: int) -> int:
    """Two WANs (the lab's second ISP; 1 s probes, fail_after 2): each round takes the first
    WAN away (its carrier, or its upstream with the link up) and times until a ping crosses
    the tunnel via the second (pinged every 20 ms, 0.2 s each), then gives it back and waits
    for the failback (failback_after 2 s). At most 14 rounds: 56 switches fit the budget."""
    times: dict[str, list[float]] = {"carrier lost": [], "upstream broken": []}
    with Lab(second_wan=True) as lab:
        lab.start_daemon(failover__failback_after=2.0, failover__budget_per_hour=60)
        wait_until(lab.ping6_through_tunnel, timeout=60, what="the lab to converge")
        for _ in range(rounds):
            for how, lose, restore in (
                ("carrier lost", lambda: lab.isp_link(0, up=False), lambda: lab.isp_link(0, True)),
                (
                    "upstream broken",
                    lambda: lab.break_upstream(0),
                    lambda: lab.break_upstream(0, False),
                ),
            ):
                time.sleep(1.5)  # the loop at rest
                began = time.monotonic()
                lose()
                try:
                    wait_until(
                        lambda: (
                            lab.tunnel_local() == SECOND_WAN_ADDRESS
                            and lab.ping6_through_tunnel(timeout=0.2)
                        ),
                        timeout=60,
                        interval=0.02,
                        what="IPv6 via the second WAN",
                    )
                except LabError as exc:
                    print(f"lab failover ({how}): not repaired: {exc}")
                    return 1
                times[how].append(time.monotonic() - began)
                restore()
                wait_until(
                    lambda: (
                        lab.tunnel_local() == FIRST_WAN_ADDRESS
                        and lab.ping6_through_tunnel(timeout=0.2)
                    ),
                    timeout=60,
                    what="the failback",
                )
        lab.stop_daemon()
    for how, found in times.items():
        _report(f"failover, {how}", found)
    return 0


def _addresses() -> Any:
    host = 11
    while True:
        yield f"203.0.113.{host}"
        host = 11 if host >= 250 else host + 1


def _repair_times(
    rounds: int,
    overrides: dict[str, Any],
    per_round_timeout: float = 60.0,
    mode: str | None = None,
) -> list[float]:
    times: list[float] = []
    with Lab(mode=mode) as lab:
        lab.start_daemon(**overrides)
        wait_until(lab.ping6_through_tunnel, timeout=60, what="the lab to converge")
        addresses = _addresses()
        for _ in range(rounds):
            time.sleep(1.5)  # past min_update_interval, and the loop at rest
            try:
                times.append(_one_repair(lab, next(addresses), per_round_timeout))
            except LabError as exc:
                print(f"lab repair: not repaired: {exc}")
                break  # the lab is broken from here on: the figures so far stand
        lab.stop_daemon()
    return times


def _one_repair(lab: Lab, address: str, timeout: float) -> float:
    return lab.move_wan_and_time_repair(address, timeout=timeout)


def _telemetry(rounds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as scratch:
        hook = Path(scratch) / "sleepy-hook"
        hook.write_text("#!/bin/sh\nsleep 60\n")
        hook.chmod(0o755)
        overrides = {
            "notify__command": [str(hook)],
            "notify__timeout": 120.0,
            "metrics__textfile": str(Path(scratch) / "reconciler.prom"),
            "metrics__listen": "127.0.0.1:9469",
        }
        plain = _repair_times(rounds, {})
        _report("no hook, no metrics", plain)
        told = _repair_times(rounds, overrides)
        _report("a hook asleep 60 s per notification, textfile and /metrics on", told)
    if plain and told:
        ratio = statistics.median(told) / statistics.median(plain)
        print(f"lab repair: with telemetry / without (median): {ratio:.2f}x")
    return 0


FLOOD_FD_LIMIT = 128
FLOOD_CONNECTIONS = 150
_FLOOD_PORT = 9469


def _flood(rounds: int) -> int:
    overrides = {"metrics__listen": f"127.0.0.1:{_FLOOD_PORT}"}
    for flooded in (False, True):
        times: list[float] = []
        with Lab() as lab:
            lab.start_daemon(nofile=FLOOD_FD_LIMIT, **overrides)
            # the prebuilt tunnel answers before the daemon is up: wait for its first probe
            wait_until(lambda: _daemon_probed_ipv6(lab), timeout=60, what="the daemon's probe")
            addresses = _addresses()
            with contextlib.ExitStack() as flood:
                if flooded:
                    held = flood.enter_context(lab.idle_connections(_FLOOD_PORT, FLOOD_CONNECTIONS))
                    time.sleep(1.0)
                    assert lab.daemon is not None
                    fds = len(os.listdir(f"/proc/{lab.daemon.pid}/fd"))
                    print(
                        f"lab flood: {held} of {FLOOD_CONNECTIONS} connections opened; the "
                        f"daemon has {fds} of {FLOOD_FD_LIMIT} descriptors open"
                    )
                for _ in range(rounds):
                    time.sleep(1.5)
                    try:
                        times.append(_one_repair(lab, next(addresses), 30.0))
                    except LabError as exc:
                        print(f"lab repair: not repaired: {exc}")
                        break
            lab.stop_daemon()
        label = "flooded" if flooded else "quiet"
        _report(f"RLIMIT_NOFILE {FLOOD_FD_LIMIT}, /metrics on, {label}", times)
    return 0


def _owned_wan(kind: str, rounds: int) -> int:
    """Repairs after the ISP changes the address of a WAN a real client owns: DHCP
    renumberings (alternating pools) or PPPoE redials (alternating addresses)."""
    from reconciler.lab.wan_owners import (
        DHCP_POOLS,
        PPP_INTERFACE,
        PPPOE_ADDRESSES,
        dhcp_wan,
        interface_address,
        pppoe_wan,
        time_repair,
    )

    totals: list[float] = []
    after: list[float] = []
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(Lab(prebuild_tunnel=False))
        if kind == "dhcp":
            isp: Any = stack.enter_context(dhcp_wan(lab, DHCP_POOLS[0]))
            interface, overrides = "wan0", {}
        else:
            isp = stack.enter_context(pppoe_wan(lab, PPPOE_ADDRESSES[0]))
            interface, overrides = PPP_INTERFACE, {"wan__interface": PPP_INTERFACE}
        lab.start_daemon(wan__restart_command=None, **overrides)
        wait_until(lab.ping6_through_tunnel, timeout=60, what="the lab to converge")
        for round_ in range(1, rounds + 1):
            time.sleep(1.5)  # past min_update_interval, and the loop at rest
            if kind == "dhcp":
                pool = DHCP_POOLS[round_ % 2]

                def change(pool: tuple[str, str] = pool) -> None:
                    isp.renumber(pool)

                def moved(pool: tuple[str, str] = pool) -> bool:
                    address = interface_address(lab, interface)
                    return address is not None and pool[0] <= address <= pool[1]

            else:
                target = PPPOE_ADDRESSES[round_ % 2]

                def change(target: str = target) -> None:
                    isp.redial(target)

                def moved(target: str = target) -> bool:
                    return interface_address(lab, interface) == target

            try:
                repair = time_repair(lab, change, moved)
            except LabError as exc:
                print(f"lab repair ({kind}): not repaired: {exc}")
                break
            totals.append(repair.total)
            after.append(repair.after_address)
        restarts = sum(
            1
            for e in lab.envelopes()
            if isinstance(e.fact, ActionStarted) and e.fact.action == "restart-wan"
        )
        updates = lab.he_update_calls()
        lab.stop_daemon()
    what = "DHCP renumbering" if kind == "dhcp" else "PPPoE redial"
    _report(f"{what}, from the ISP's change", totals)
    _report(f"{what}, from the new address on the WAN", after)
    print(
        f"lab repair ({what}): {updates} HE updates for {len(totals)} new addresses and the "
        f"first, {restarts} restart-wan"
    )
    return 0 if len(totals) == rounds else 1


def _report(label: str, times: list[float]) -> None:
    if not times:
        print(f"lab repair ({label}): no rounds")
        return
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    print(
        f"lab repair ({label}): {len(times)} changes, median {statistics.median(times):.3f} s, "
        f"p90 {p90:.3f} s, min {ordered[0]:.3f} s, max {ordered[-1]:.3f} s"
    )


def _proc_figures(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds user+system) of a process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return rss_kb / 1024, cpu


def _daemon_probed_ipv6(lab: Lab) -> bool:
    from reconciler.model.facts import ProbeObserved

    return any(
        isinstance(e.fact, ProbeObserved) and e.fact.family == "ipv6" for e in lab.envelopes()
    )


def _idle(duration: float, *, lab_probes: bool = False) -> int:
    """A quiet stretch: the facts and fdatasyncs the daemon spends on it, extrapolated to a
    day by rate (after its start-up facts, which a day pays once)."""
    overrides = {"daemon__quiet_summary_interval": 3600.0} if lab_probes else SHIPPED_INTERVALS
    with Lab() as lab:
        daemon = lab.start_daemon(**overrides)
        wait_until(lambda: _daemon_probed_ipv6(lab), timeout=60, what="the daemon's first probe")
        time.sleep(2.0)  # the start-up observations and the first probe cycle are in
        settled = _appends(lab)
        rss_start, cpu_start = _proc_figures(daemon.pid)
        time.sleep(duration)
        rss_end, cpu_end = _proc_figures(daemon.pid)
        during = _appends(lab)
        lab.stop_daemon()
        final = _appends(lab)
    facts = during[0] - settled[0]
    syncs = during[1] - settled[1]
    stop = (final[0] - during[0], final[1] - during[1])
    cpu_per_hour = (cpu_end - cpu_start) / duration * 3600
    # A day: the quiet rate measured, plus 24 hourly count flushes, each like the one the
    # stop wrote (the stop's facts less DaemonStopped, in one group commit).
    counts = max(stop[0] - 1, 0)
    day_facts = facts * 86400 / duration + 24 * counts
    day_syncs = syncs * 86400 / duration + 24 * (1 if counts else 0)
    probes = "the lab's 1 s probes" if lab_probes else "the shipped intervals, probes every 60 s"
    print(
        f"lab idle ({duration:.0f} s, {probes}): CPU {cpu_per_hour:.1f} s per hour, "
        f"RSS {rss_start:.1f} -> {rss_end:.1f} MB; after start-up {facts} facts in "
        f"{syncs} fdatasyncs; the stop wrote {counts} count facts and DaemonStopped in "
        f"{stop[1]} fdatasync(s). A quiet day, extrapolated (this rate for 86400 s plus 24 "
        f"hourly flushes like the stop's): {day_facts:.0f} facts, {day_syncs:.0f} fdatasyncs"
    )
    return 0


def _appends(lab: Lab) -> tuple[int, int]:
    """(facts, fdatasyncs) in the lab's log: records appended together (a group commit: the
    counts and the news after them) share their time, so each run of one time is one sync."""
    envelopes = lab.envelopes()
    syncs = sum(1 for i, e in enumerate(envelopes) if i == 0 or e.at != envelopes[i - 1].at)
    return len(envelopes), syncs


def _soak(duration: float, every: float, *, traced: bool = False, mallinfo: bool = False) -> int:
    repaired: list[float] = []
    failed = 0
    samples: list[float] = []
    changes: list[float] = []  # when each address change began
    sampled_at: list[float] = []  # seconds into the soak of each RSS sample
    traces = Path(tempfile.mkdtemp(prefix="rc-soak-tracemalloc-")) if traced else None
    if traces is not None:
        _load_in_daemon(
            "tracemalloc_site", RC_TRACEMALLOC_DIR=str(traces), RC_TRACEMALLOC_EVERY="60"
        )
    heaps = Path(tempfile.mkdtemp(prefix="rc-soak-mallinfo-")) if mallinfo else None
    if heaps is not None:
        _load_in_daemon("mallinfo_site", RC_MALLINFO_DIR=str(heaps), RC_MALLINFO_EVERY="30")
    with Lab() as lab:
        daemon = lab.start_daemon()
        pid = daemon.pid  # `ip netns exec` execs the interpreter: the same process
        # The lab's tunnel answers before the daemon has even imported its modules: wait for
        # the daemon's own first IPv6 probe, so the first sample is of a running daemon.
        wait_until(lambda: _daemon_probed_ipv6(lab), timeout=60, what="the daemon's first probe")
        rss_start, cpu_start = _proc_figures(daemon.pid)
        began = time.monotonic()
        began_wall = time.time()
        addresses = _addresses()
        while time.monotonic() - began < duration:
            round_start = time.monotonic()
            changes.append(time.time())
            try:
                repaired.append(_one_repair(lab, next(addresses), timeout=every))
            except LabError:
                failed += 1
            while time.monotonic() - round_start < every:
                samples.append(_proc_figures(daemon.pid)[0])
                sampled_at.append(time.monotonic() - began)
                time.sleep(1.0)
        elapsed = time.monotonic() - began
        rss_end, cpu_end = _proc_figures(daemon.pid)
        lab.stop_daemon()
    cpu_per_hour = (cpu_end - cpu_start) / elapsed * 3600
    print(
        f"lab soak: {elapsed:.0f} s, {len(repaired) + failed} address changes, "
        f"{len(repaired)} repaired, {failed} not repaired within {every:g} s"
    )
    _report("soak", repaired)
    quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3)]
    at_5min = next((r for t, r in zip(sampled_at, samples, strict=True) if t >= 300.0), None)
    if at_5min is not None:
        print(
            f"lab soak: daemon RSS at 5 min {at_5min:.1f} MB, at the end {rss_end:.1f} MB: "
            f"{(rss_end - at_5min) * 1024:+.0f} KiB (goal: within 1 MB)"
        )
    print(
        f"lab soak: daemon RSS start {rss_start:.1f} MB, at 1/4 2/4 3/4 "
        f"{' '.join(f'{r:.1f}' for r in quarters)} MB, end {rss_end:.1f} MB, "
        f"max {max(samples or [rss_end]):.1f} MB; CPU {cpu_per_hour:.1f} s per hour"
    )
    if traces is not None:
        _print_growth(traces, changes, pid)
    if heaps is not None:
        _print_heap(heaps, pid, began_wall)
    return 0 if failed == 0 else 1


def _load_in_daemon(site_dir: str, **env: str) -> None:
    """Put bench/<site_dir>/sitecustomize.py on the daemon's PYTHONPATH (the lab passes the
    environment on), with the settings it reads. One such site at a time: Python loads the
    first sitecustomize it finds."""
    site = Path(__file__).resolve().parent / site_dir
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ.update(env)


def _print_heap(heaps: Path, pid: int, began: float) -> None:
    """glibc's heap at 5 minutes into the soak and at the end: what it holds from the
    system, how much of that is free chunks, how much is in use, and how many arenas."""
    dumps = sorted(heaps.glob(f"{pid}-*.xml"))
    if len(dumps) < 2:
        print(f"lab soak: malloc_info: {len(dumps)} dump(s) in {heaps}, too few")
        return
    at = [float(p.stem.split("-")[2]) - began for p in dumps]
    first = next((p for p, t in zip(dumps, at, strict=True) if t >= 300.0), dumps[0])
    figures = [_heap_figures(p.read_text()) for p in (first, dumps[-1])]
    (cur0, free0, arenas0), (cur1, free1, arenas1) = figures
    print(
        f"lab soak: glibc heap ({first.name} -> {dumps[-1].name}): from the system "
        f"{cur0 / 1024:.0f} -> {cur1 / 1024:.0f} KiB, free chunks {free0 / 1024:.0f} -> "
        f"{free1 / 1024:.0f} KiB, in use {(cur0 - free0) / 1024:.0f} -> "
        f"{(cur1 - free1) / 1024:.0f} KiB, arenas {arenas0} -> {arenas1}"
    )


def _heap_figures(xml: str) -> tuple[int, int, int]:
    """(bytes from the system, bytes in free chunks, arenas) from malloc_info's totals."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(xml)
    totals = {t.get("type"): int(t.get("size", "0")) for t in root.findall("total")}
    current = next(
        int(s.get("size", "0")) for s in root.findall("system") if s.get("type") == "current"
    )
    return current, totals.get("fast", 0) + totals.get("rest", 0), len(root.findall("heap"))


def _print_growth(traces: Path, changes: list[float], pid: int) -> None:
    """What the daemon's heap gained between the snapshot nearest 5 minutes in and the last,
    by allocation site, and per address change in between."""
    import tracemalloc

    dumps = sorted(traces.glob(f"{pid}-*.tracemalloc"))
    if len(dumps) < 2:
        print(f"lab soak: tracemalloc: {len(dumps)} snapshot(s) in {traces}, too few")
        return
    first = dumps[min(4, len(dumps) - 2)]  # the 5th minute (one dump a minute)
    last = dumps[-1]
    when = [float(p.stem.split("-")[2]) for p in (first, last)]
    count = sum(1 for t in changes if when[0] <= t < when[1])
    old, new = (tracemalloc.Snapshot.load(str(p)) for p in (first, last))
    stats = new.compare_to(old, "lineno")
    grown = sum(s.size_diff for s in stats)
    print(
        f"lab soak: tracemalloc {first.name} -> {last.name}: {count} address changes, traced "
        f"heap {grown / 1024:+.1f} KiB ({grown / max(count, 1) / 1024:+.2f} KiB per change); "
        "largest differences:"
    )
    for stat in stats[:12]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  "
            f"{frame.filename}:{frame.lineno}"
        )
    print(f"  (snapshots kept in {traces})")


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
