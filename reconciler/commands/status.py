"""`reconciler status`: the observed state now, the last actions and their outcomes, and what
backoff (or a permanent failure, or a rate gate) holds back and until when.

It reads the event log read-only, so it works while the daemon runs and never takes its lock.
Without a loadable configuration (`--state-dir` alone) it shows the log's view and says that
the plan part needs the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.commands._common import load_config_for, resolve_state_dir
from reconciler.errors import ConfigError
from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    DaemonStarted,
    DaemonStopped,
    Envelope,
    from_record,
)
from reconciler.statedir import events_dir, snapshots_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.config import Config
    from reconciler.model.plan import Plan
    from reconciler.model.state import ObservedState

__all__ = ["LAST_ACTIONS", "TAIL_SCANNED", "run"]

LAST_ACTIONS = 10  # action facts shown
TAIL_SCANNED = 5000  # facts read from the end of the log for actions and daemon runs


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
        state, last_seq = Recorder(log, snapshots=SnapshotStore(snapshots_dir(state_dir))).view()
        tail = [from_record(seq, rec) for seq, rec in log.read(max(1, last_seq - TAIL_SCANNED))]
    current = _plan(config, state, now) if config is not None else None
    report = _report(state_dir, state, last_seq, tail, current, config_problem, now)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True), file=env.stdout)
    else:
        _print_text(report, env)
    return 0


def _plan(config: Config, state: ObservedState, now: float) -> Plan:
    from reconciler.model.desired import desired
    from reconciler.model.plan import plan

    return plan(desired(config, state), state, now)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _daemon(tail: list[Envelope]) -> dict[str, Any]:
    for envelope in reversed(tail):
        fact = envelope.fact
        if isinstance(fact, DaemonStopped):
            return {"running": False, "stopped_at": _iso(envelope.at), "reason": fact.reason}
        if isinstance(fact, DaemonStarted):
            alive = _alive(fact.pid)
            return {
                "running": alive,
                "pid": fact.pid,
                "started_at": _iso(envelope.at),
                "reason": None if alive else "ended without DaemonStopped (killed or crashed)",
            }
    return {"running": None}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _observed(state: ObservedState) -> dict[str, Any]:
    wan, tunnel, endpoint, hostname = state.wan, state.tunnel, state.endpoint, state.hostname_file
    return {
        "wan": None
        if wan is None
        else {
            "interface": wan.interface,
            "exists": wan.exists,
            "link_up": wan.link_up,
            "address": wan.address,
            "at": _iso(wan.at),
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
            "at": _iso(tunnel.at),
        },
        "probes": {
            family: {
                "status": probe.status,
                "target": probe.target,
                "consecutive_ok": probe.consecutive_ok,
                "consecutive_failed": probe.consecutive_failed,
                "since": _iso(probe.since) if probe.since else None,
                "at": _iso(probe.last_at) if probe.last_at else None,
            }
            for family, probe in sorted(state.probes.items())
        },
        "he_endpoint": None
        if endpoint is None
        else {
            "address": endpoint.address,
            "for_local": endpoint.for_local,
            "source": endpoint.source,
            "at": _iso(endpoint.at),
        },
        "hostname_file": None
        if hostname is None
        else {"path": hostname.path, "digest": hostname.digest, "at": _iso(hostname.at)},
        "config_digest": state.config_digest,
        "interrupted": sorted(r.key for r in state.actions.values() if r.in_flight),
    }


def _actions(tail: list[Envelope]) -> list[dict[str, Any]]:
    shown: deque[dict[str, Any]] = deque(maxlen=LAST_ACTIONS)
    for envelope in tail:
        fact = envelope.fact
        if isinstance(fact, ActionStarted):
            shown.append(
                {
                    "seq": envelope.seq,
                    "at": _iso(envelope.at),
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
                    entry["finished_at"] = _iso(envelope.at)
                    break
    return list(shown)


def _report(
    state_dir: Path,
    state: ObservedState,
    last_seq: int,
    tail: list[Envelope],
    current: Plan | None,
    config_problem: str | None,
    now: float,
) -> dict[str, Any]:
    return {
        "schema": "reconciler.status/1",
        "now": _iso(now),
        "state_dir": str(state_dir),
        "last_seq": last_seq,
        "daemon": _daemon(tail),
        "observed": _observed(state),
        "last_actions": _actions(tail),
        "pending": None
        if current is None
        else [{"key": a.key, "kind": a.KIND, "reason": a.reason} for a in current.actions],
        "held": None
        if current is None
        else [
            {
                "key": item.action.key,
                "kind": item.action.KIND,
                "why": item.why,
                "detail": item.detail,
                "until": _iso(item.until),
            }
            for item in current.held
        ],
        "config_problem": config_problem,
    }


def _print_text(report: dict[str, Any], env: Environment) -> None:
    def out(line: str = "") -> None:
        print(line, file=env.stdout)

    daemon = report["daemon"]
    if daemon["running"] is None:
        out("daemon:   no run recorded in the recent log")
    elif daemon["running"]:
        out(f"daemon:   running, pid {daemon['pid']}, since {daemon['started_at']}")
    else:
        when = daemon.get("stopped_at") or daemon.get("started_at")
        out(f"daemon:   not running (last: {when}, {daemon['reason']})")
    out(f"log:      {report['state_dir']}, {report['last_seq']} facts")
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
    if observed["interrupted"]:
        out(f"interrupted (no outcome recorded): {', '.join(observed['interrupted'])}")
    out()
    out("last actions:" if report["last_actions"] else "last actions: none")
    for entry in report["last_actions"]:
        outcome = entry["outcome"] or "no outcome"
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
