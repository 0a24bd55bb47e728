"""`reconciler diff`: the plan for the state folded from the log, printed, acting on nothing.

Exit status like `terraform plan -detailed-exitcode`: 0 no changes, 2 changes pending
(including actions held back), 1 error, or something the configuration observes (the WAN,
the tunnel, a probe, the hostname file) never observed: the output lists it. `--observe`
first runs every observer once and records its facts (it needs the log's write lock, so
not while the daemon runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.history import load_state
from reconciler.model.desired import desired
from reconciler.model.plan import plan
from reconciler.reconcile import active_config
from reconciler.render.diff import diff_json, diff_text, unobserved
from reconciler.render.failover import failover_json, failover_lines

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.config import Config

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.cli import ExitStatus
    from reconciler.commands._common import load_config_for, resolve_state_dir

    config = load_config_for(args, env)  # the plan needs all of it, not only state_dir
    # --observe writes the log, creating the directory on a fresh machine.
    state_dir = resolve_state_dir(args, env, config, must_exist=not args.observe)
    if args.observe:
        _observe(config, state_dir, "--state-dir" if args.state_dir else "daemon.state_dir")
    observed, _ = load_state(state_dir)
    now = time.time()
    config = active_config(config, observed)  # several WANs: the plan is the active one's
    wanted = desired(config, observed)
    current = plan(wanted, observed, now)
    missing = unobserved(observed, config)
    failover = failover_json(config, observed, now)
    if args.json:
        document = diff_json(current, observed, wanted, missing)
        if failover is not None:
            document["failover"] = failover
        print(json.dumps(document, indent=2, sort_keys=True), file=env.stdout)
    else:
        env.stdout.write("".join(f"{line}\n" for line in failover_lines(failover)))
        env.stdout.write(diff_text(current, observed, wanted, missing))
    if missing:  # a plan over a world never observed proves nothing: not a success
        return ExitStatus.ERROR
    switch_due = failover is not None and failover["due"] is not None
    return ExitStatus.OK if current.empty and not switch_due else ExitStatus.CHANGES


def _observe(config: Config, state_dir: Path, origin: str) -> None:
    """Run every observer once, recording facts (and the config, when it is new)."""
    from reconciler.commands._common import open_log_for_writing
    from reconciler.model.facts import to_record
    from reconciler.reconcile import config_loaded_fact
    from reconciler.world.observers import observe_all

    observed, _ = load_state(state_dir)
    with open_log_for_writing(state_dir, origin) as log:
        if observed.config_digest != config.digest:
            fact = config_loaded_fact(config)  # the daemon's and apply's, field for field
            log.append(to_record(fact, at=time.time(), source="diff"))
        observe_all(active_config(config, observed), log)  # several WANs: the active one
