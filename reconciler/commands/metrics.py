"""`reconciler metrics [-c PATH]`: the Prometheus exposition, computed from the event log.

For routers without node_exporter, and for scripts: the same text the daemon writes to
`[metrics] textfile` and serves on `/metrics`. The log is folded from its first record;
counters count from the last `daemon-started` fact, as the running daemon's do (the one
thing only the daemon knows is a notification dropped since its last hook run). It reads the
log read-only, so it works while the daemon runs.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from reconciler.commands._common import load_config_for, resolve_state_dir
from reconciler.history import iter_envelopes, log_fold_error
from reconciler.metrics import Reading, exposition, log_bytes
from reconciler.model.desired import desired
from reconciler.model.plan import plan
from reconciler.model.state import ObservedState, fold
from reconciler.model.telemetry import Telemetry
from reconciler.statedir import events_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    config = load_config_for(args, env)
    state_dir = resolve_state_dir(args, env, config)
    state = ObservedState()
    telemetry = Telemetry.starting_on(state, config.reconcile)
    last_seq = 0
    for envelope in iter_envelopes(state_dir):
        after = fold(state, envelope, log_fold_error)
        telemetry.observe(state, envelope, after)
        state, last_seq = after, envelope.seq
    now = time.time()
    reading = Reading(
        telemetry=telemetry,
        state=state,
        held=plan(desired(config, state), state, now).held,
        log_seq=last_seq,
        log_bytes=log_bytes(events_dir(state_dir)),
        now=now,
    )
    env.stdout.write(exposition(reading).decode())
    return 0
