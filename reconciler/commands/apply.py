"""`reconciler apply`: observe everything, reconcile, exit (cron-free one-shot of the daemon).

Exit status: 0 nothing to do or everything done, 2 some action failed or something is held
back that waiting cannot lift (a permanent failure, the restart limit), 1 error (including a
running daemon holding the event log, and an event log that could not take the facts: the
pass still acts on them, as the daemon does on a full disk, and one line says so). A pass
that succeeded in full is followed by another (at most a few), so one `apply` carries a WAN
change through update, tunnel and firewall.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from reconciler.commands._common import load_config_for, open_log_for_writing
from reconciler.logsetup import configure_logging
from reconciler.render.held import held_json
from reconciler.render.timefmt import iso
from reconciler.statedir import snapshots_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.actions import Action, Outcome
    from reconciler.model.plan import Held

__all__ = ["BLOCKING_HOLDS", "MAX_PASSES", "blocked", "run"]

MAX_PASSES = 5
BLOCKING_HOLDS = frozenset({"permanent-failure", "restart-limit"})


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.eventlog import SnapshotStore
    from reconciler.reconcile import (
        active_config,
        config_loaded_fact,
        follow_failover,
        reconcile_once,
    )
    from reconciler.recorder import Recorder
    from reconciler.world.executors import Executor
    from reconciler.world.observers import make_client, make_platform, observe_all

    config = load_config_for(args, env)
    configure_logging("stderr", level=logging.ERROR, stream=env.stderr)
    state_dir = config.daemon.state_dir
    with open_log_for_writing(state_dir) as log:
        recorder = Recorder(log, snapshots=SnapshotStore(snapshots_dir(state_dir)))
        if recorder.state.config_digest != config.digest:
            recorder.record(config_loaded_fact(config), "apply")
        loaded, config = config, active_config(config, recorder.state)
        platform = make_platform(config)
        client = make_client(config)
        try:
            observe_all(config, recorder, platform=platform, client=client)
            # Several WANs: the policy judges the WANs' probes so far (this run's included).
            wanted = follow_failover(loaded, recorder, time.time())
            if wanted.wan.interface != config.wan.interface:
                client.close()
                config, platform, client = wanted, make_platform(wanted), make_client(wanted)
                observe_all(config, recorder, platform=platform, client=client)
            executor = Executor(platform, client, recorder)
            done: list[tuple[Action, Outcome]] = []
            held: tuple[Held, ...] = ()
            for _ in range(MAX_PASSES):
                result = reconcile_once(config, recorder, executor, time.time)
                done.extend(result.done)
                held = result.held
                if not result.done or (result.failed and not _only_unconfirmed(result.done)):
                    break
            unwritten, why = recorder.flush(), recorder.write_error
            recorder.snapshot()
        finally:
            client.close()
    failed = any(not outcome.succeeded for _, outcome in done)
    if unwritten:  # acted on all the same (repairs never wait for space), but not recorded
        print(
            f"reconciler: the event log in {state_dir} could not take {unwritten} facts "
            f"({why}): what was observed and done is not recorded",
            file=env.stderr,
        )
    if args.json:
        print(json.dumps(_as_json(done, held, failed), indent=2, sort_keys=True), file=env.stdout)
    else:
        _print_text(done, held, failed, env)
    if unwritten:
        return 1
    return 2 if failed or blocked(held) else 0


def _only_unconfirmed(done: tuple[tuple[Action, Outcome], ...]) -> bool:
    """Whether every failure of a pass is an update that went out unanswered: HE may have
    it, and the next pass rebuilds the tunnel so that the tunnel can tell."""
    return all(outcome.succeeded or outcome.unconfirmed for _, outcome in done)


def blocked(held: tuple[Held, ...]) -> tuple[Held, ...]:
    """The holds waiting cannot lift (a permanent failure, the restart limit): the repair is
    stuck until someone acts, so apply must not exit 0 over them."""
    return tuple(item for item in held if item.why in BLOCKING_HOLDS)


def _as_json(
    done: list[tuple[Action, Outcome]], held: tuple[Held, ...], failed: bool
) -> dict[str, Any]:
    return {
        "schema": "reconciler.apply/1",
        "result": "failed"
        if failed
        else "blocked"
        if blocked(held)
        else ("done" if done else "nothing-to-do"),
        "actions": [
            {
                "key": action.key,
                "kind": action.KIND,
                "reason": action.reason,
                "status": outcome.status,
                "message": outcome.message,
                "retry_after": outcome.retry_after,
            }
            for action, outcome in done
        ],
        "held": [held_json(item) for item in held],
    }


def _print_text(
    done: list[tuple[Action, Outcome]], held: tuple[Held, ...], failed: bool, env: Environment
) -> None:
    for action, outcome in done:
        label = "done" if outcome.succeeded else f"FAILED ({outcome.status})"
        retry = f", retry after {outcome.retry_after:g} s" if outcome.retry_after else ""
        print(f"{label:<22} {action.key}: {outcome.message or 'ok'}{retry}", file=env.stdout)
        if action.reason:
            print(f"{'':<22}   because {action.reason}", file=env.stdout)
    for item in held:
        until = f" until {iso(item.until)}" if item.until is not None else ""
        print(
            f"{'held (' + item.why + ')':<22} {item.action.key}{until}: {item.detail}",
            file=env.stdout,
        )
    ok = sum(1 for _, outcome in done if outcome.succeeded)
    if failed:
        print(f"Applied {ok} of {len(done)} actions; one failed.", file=env.stdout)
    elif done:
        print(f"Applied {ok} actions.", file=env.stdout)
    elif blocked(held):
        stuck = ", ".join(sorted({item.why for item in blocked(held)}))
        print(
            f"Nothing done; {len(held)} held back, stuck by {stuck} (see `reconciler status`).",
            file=env.stdout,
        )
    elif held:
        print(f"Nothing to do now; {len(held)} held back.", file=env.stdout)
    else:
        print("No changes. The network matches the configuration.", file=env.stdout)
