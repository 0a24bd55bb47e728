"""`reconciler status`: the observed state now, the last actions and their outcomes, and what
backoff (or a permanent failure, or a rate gate) holds back and until when.

It reads the event log read-only, so it works while the daemon runs and never takes its lock.
Without a valid configuration (found through `--state-dir`, or `[daemon] state_dir` alone) it
shows the log's view and says that the plan part needs the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.commands._common import load_config_for, resolve_state_dir
from reconciler.errors import ConfigError
from reconciler.eventlog.log import LOCK_NAME, read_holder_pid
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    DaemonStopped,
    Envelope,
    from_record,
)
from reconciler.render.held import held_json
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir, snapshots_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.config import Config
    from reconciler.model.plan import Plan
    from reconciler.model.state import ObservedState

__all__ = ["LAST_ACTIONS", "TAIL_SCANNED", "run"]

LAST_ACTIONS = 10  # action facts shown
# Facts read from the end of the log for the last actions (and when the running daemon
# started); whether it runs is asked of the lock file, which retention cannot remove.
TAIL_SCANNED = 5000


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.eventlog import EventLog, SnapshotStore
    from reconciler.recorder import Recorder

    config: Config | None = None
    config_problem = None
    try:
        config = load_config_for(args, env)
    except ConfigError as exc:
        config_problem = exc.problems[0] if exc.problems else "invalid configuration"
    # Without a valid config the state dir comes from --state-dir or [daemon] state_dir alone
    # (or the ConfigError stands): the log's view is shown, the plan part is not.
    state_dir = resolve_state_dir(args, env, config)
    log_dir = events_dir(state_dir)
    if not log_dir.is_dir():
        print(f"reconciler: no event log in {state_dir} yet (has the daemon run?)", file=env.stderr)
        return 1
    now = time.time()
    with EventLog.open(log_dir, readonly=True) as log:
        # The recorder's start-up path (snapshot + tail fold) is exactly the read we need.
        from reconciler.checkpoints import checkpoints_dir
        from reconciler.eventlog.checkpoints import CheckpointStore

        state, last_seq = Recorder(
            log,
            snapshots=SnapshotStore(snapshots_dir(state_dir)),
            checkpoints=CheckpointStore(checkpoints_dir(state_dir)),
        ).view()
        tail = [from_record(seq, rec) for seq, rec in log.read(max(1, last_seq - TAIL_SCANNED))]
    if config is not None:
        from reconciler.reconcile import active_config

        config = active_config(config, state)  # several WANs: the plan is the active one's
    current = _plan(config, state, now) if config is not None else None
    daemon = _daemon(log_dir, tail)
    report = _report(daemon, state_dir, state, last_seq, tail, current, config_problem, now)
    report["verdict"] = _verdict(state, current, config)
    if config is not None and config.failover is not None:
        from reconciler.render.failover import failover_json

        report["failover"] = failover_json(config, state, now)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True), file=env.stdout)
    else:
        _print_text(report, env)
    return 0


def _plan(config: Config, state: ObservedState, now: float) -> Plan:
    from reconciler.model.desired import desired
    from reconciler.model.plan import plan

    return plan(desired(config, state), state, now)


def _verdict(state: ObservedState, current: Plan | None, config: Config | None) -> dict[str, Any]:
    """The daemon's last verdict, from facts alone: why IPv6 is down (doctor's layer names)."""
    from reconciler.model.verdict import down_reason

    reason = down_reason(
        state,
        plan=current,
        server_ipv4=config.tunnel.server_ipv4 if config is not None else None,
        public_address=config.wan.public_address if config is not None else "interface",
    )
    if reason is not None:
        return {"ipv6": "down", "check": reason.check, "text": reason.sentence()}
    status = state.probe("ipv6").status
    text = {"up": "IPv6 up", "down": "IPv6 down"}.get(status, "IPv6 not judged yet")
    return {"ipv6": status, "check": None, "text": text}


def _daemon(log_dir: Path, tail: list[Envelope]) -> dict[str, Any]:
    """Whether a writer holds the log now, asked of the lock file (its pid, alive and holding
    the file), not of DaemonStarted facts that retention may have removed long ago. The
    recent log only adds when that run started, or how the last one ended."""
    holder = _lock_holder(log_dir)
    started = stopped = None
    for envelope in reversed(tail):
        fact = envelope.fact
        if isinstance(fact, DaemonStarted) and started is None:
            started = envelope
        elif isinstance(fact, DaemonStopped) and stopped is None and started is None:
            stopped = envelope
        if started is not None:
            break
    if holder is not None:
        start_fact = started.fact if started is not None else None
        is_daemon = isinstance(start_fact, DaemonStarted) and start_fact.pid == holder
        return {
            "running": True,
            "pid": holder,
            "writer": "daemon" if is_daemon else "unknown",
            "started_at": iso(started.at) if started is not None and is_daemon else None,
            "reason": None,
        }
    if stopped is not None and isinstance(stopped.fact, DaemonStopped):
        return {
            "running": False,
            "pid": None,
            "writer": None,
            "stopped_at": iso(stopped.at),
            "reason": stopped.fact.reason,
        }
    if started is not None:
        return {
            "running": False,
            "pid": None,
            "writer": None,
            "started_at": iso(started.at),
            "reason": "ended without DaemonStopped (killed or crashed)",
        }
    return {"running": False, "pid": None, "writer": None, "reason": None}


def _lock_holder(log_dir: Path) -> int | None:
    """The pid of the process holding the event log's write lock, or None.

    The lock file keeps the last writer's pid after it exits, so the pid must be alive, and
    (where /proc shows it) must have the lock file open: a reused pid is not the writer.
    """
    lock_path = log_dir / LOCK_NAME
    pid = read_holder_pid(lock_path)
    if pid is None or not _alive(pid):
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self/fd") else pid  # gone, or no /proc here
    except OSError:  # another user's process: the pid alone must do
        return pid
    target = str(lock_path.resolve())
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return pid
        except OSError:  # closed meanwhile (listdir's own descriptor, for one)
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _running_action(state: ObservedState, writer_alive: bool) -> str | None:
    """The key a live writer is running: the latest start without an outcome (one action
    runs at a time, so an older start without one was interrupted, also while it lives)."""
    if not writer_alive or not state.actions:
        return None
    latest = max(state.actions.values(), key=lambda r: r.last_started_seq)
    return latest.key if latest.in_flight else None


def _observed(state: ObservedState, running: str | None) -> dict[str, Any]:
    wan, tunnel, endpoint, hostname = state.wan, state.tunnel, state.endpoint, state.hostname_file
    in_flight = sorted(r.key for r in state.actions.values() if r.in_flight)
    return {
        "wan": None
        if wan is None
        else {
            "interface": wan.interface,
            "exists": wan.exists,
            "link_up": wan.link_up,
            "address": wan.address,
            "at": iso(wan.at),
        },
        "tunnel": None
        if tunnel is None
        else {
            "interface": tunnel.interface,
            "exists": tunnel.exists,
            "up": tunnel.up,
            "local": tunnel.local,
            "remote": tunnel.remote,
            "mode": tunnel.mode,
            "at": iso(tunnel.at),
        },
        "probes": {
            family: {
                "status": probe.status,
                "target": probe.target,
                "consecutive_ok": probe.consecutive_ok,
                "consecutive_failed": probe.consecutive_failed,
                "since": iso(probe.since) if probe.since else None,
                "at": iso(probe.last_at) if probe.last_at else None,
            }
            for family, probe in sorted(state.probes.items())
        },
        "he_endpoint": None
        if endpoint is None
        else {
            "address": endpoint.address,
            "for_local": endpoint.for_local,
            "source": endpoint.source,
            "at": iso(endpoint.at),
        },
        "hostname_file": None
        if hostname is None
        else {"path": hostname.path, "digest": hostname.digest, "at": iso(hostname.at)},
        "config_digest": state.config_digest,
        "running": [key for key in in_flight if key == running],
        "interrupted": [key for key in in_flight if key != running],
    }


def _actions(tail: list[Envelope], running: str | None) -> list[dict[str, Any]]:
    """The last actions and their outcomes; a start without one is "running" (the live
    writer's current action) or "interrupted"."""
    shown: deque[dict[str, Any]] = deque(maxlen=LAST_ACTIONS)
    for envelope in tail:
        fact = envelope.fact
        if isinstance(fact, ActionStarted):
            shown.append(
                {
                    "seq": envelope.seq,
                    "at": iso(envelope.at),
                    "key": fact.key,
                    "kind": fact.action,
                    "reason": fact.reason,
                    "outcome": None,
                    "message": "",
                    "retry_after": None,
                }
            )
        elif isinstance(fact, ActionSucceeded | ActionFailed):
            for entry in reversed(shown):
                if entry["key"] == fact.key and entry["outcome"] is None:
                    entry["outcome"] = "ok" if isinstance(fact, ActionSucceeded) else fact.kind
                    entry["message"] = fact.message
                    if isinstance(fact, ActionFailed):
                        entry["retry_after"] = fact.retry_after
                    entry["finished_at"] = iso(envelope.at)
                    break
    latest_start = {entry["key"]: entry["seq"] for entry in shown}
    for entry in shown:
        if entry["outcome"] is None:
            current = entry["key"] == running and latest_start[running] == entry["seq"]
            entry["outcome"] = "running" if current else "interrupted"
    return list(shown)


def _report(
    daemon: dict[str, Any],
    state_dir: Path,
    state: ObservedState,
    last_seq: int,
    tail: list[Envelope],
    current: Plan | None,
    config_problem: str | None,
    now: float,
) -> dict[str, Any]:
    running = _running_action(state, bool(daemon["running"]))
    return {
        "schema": "reconciler.status/1",
        "now": iso(now),
        "state_dir": str(state_dir),
        "last_seq": last_seq,
        "daemon": daemon,
        "observed": _observed(state, running),
        "last_actions": _actions(tail, running),
        "pending": None
        if current is None
        else [{"key": a.key, "kind": a.KIND, "reason": a.reason} for a in current.actions],
        "held": None if current is None else [held_json(item) for item in current.held],
        "config_problem": config_problem,
    }


def _print_text(report: dict[str, Any], env: Environment) -> None:
    def out(line: str = "") -> None:
        print(line, file=env.stdout)

    daemon = report["daemon"]
    if daemon["running"]:
        if daemon["writer"] == "daemon":
            since = f", since {daemon['started_at']}" if daemon["started_at"] else ""
            out(f"daemon:   running, pid {daemon['pid']}{since}")
        else:
            out(f"daemon:   a writer holds the event log: pid {daemon['pid']}")
    elif daemon["reason"] is None:
        out("daemon:   not running (no run recorded in the recent log)")
    else:
        when = daemon.get("stopped_at") or daemon.get("started_at")
        out(f"daemon:   not running (last: {when}, {daemon['reason']})")
    out(f"log:      {report['state_dir']}, {report['last_seq']} facts")
    out(f"verdict:  {report['verdict']['text']}")
    observed = report["observed"]
    wan = observed["wan"]
    if wan is None:
        out("wan:      not observed yet")
    else:
        link = "up" if wan["link_up"] else ("down" if wan["exists"] else "missing")
        out(
            f"wan:      {wan['interface']} link {link}, {wan['address'] or 'no address'}"
            f"  (at {wan['at']})"
        )
    if report.get("failover") is not None:
        from reconciler.render.failover import failover_lines

        for line in failover_lines(report["failover"]):
            out(line)
    tunnel = observed["tunnel"]
    if tunnel is None:
        out("tunnel:   not observed yet")
    elif not tunnel["exists"]:
        out(f"tunnel:   {tunnel['interface']} missing  (at {tunnel['at']})")
    else:
        out(
            f"tunnel:   {tunnel['interface']} {'up' if tunnel['up'] else 'down'}, "
            f"{tunnel['local']} -> {tunnel['remote']}  (at {tunnel['at']})"
        )
    for family, probe in observed["probes"].items():
        if probe["at"] is None:  # known from the configuration, never run yet
            out(f"{family + ':':<9} not probed yet")
            continue
        out(
            f"{family + ':':<9} {probe['status']} (probe {probe['target']}: "
            f"{probe['consecutive_ok']} ok, {probe['consecutive_failed']} failed in a row; "
            f"since {probe['since']})"
        )
    endpoint = observed["he_endpoint"]
    if endpoint is None:
        out("HE:       endpoint not known yet")
    else:
        out(f"HE:       endpoint {endpoint['address']} ({endpoint['source']}, at {endpoint['at']})")
    if observed["running"]:
        out(f"running now: {', '.join(observed['running'])}")
    if observed["interrupted"]:
        out(f"interrupted (no outcome recorded): {', '.join(observed['interrupted'])}")
    out()
    out("last actions:" if report["last_actions"] else "last actions: none")
    for entry in report["last_actions"]:
        outcome = entry["outcome"]
        retry = f", retry after {entry['retry_after']:g} s" if entry["retry_after"] else ""
        out(
            f"  {entry['at']}  {entry['key']}: {outcome}{retry}"
            + (f": {entry['message']}" if entry["message"] else "")
        )
    out()
    if report["held"] is None:
        out(f"plan: unknown without a configuration ({report['config_problem']})")
        return
    for entry in report["pending"]:
        out(f"pending   {entry['key']}: {entry['reason']}")
    for entry in report["held"]:
        until = (
            f" until {entry['until']}"
            if entry["until"]
            else " until the configuration changes"
            if entry["why"] == "permanent-failure"
            else ""
        )
        out(f"held      {entry['key']} ({entry['why']}){until}: {entry['detail']}")
    if not report["pending"] and not report["held"]:
        out("Nothing pending or held back.")
