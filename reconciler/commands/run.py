"""`reconciler run`: the daemon in the foreground, for rc.d and systemd."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reconciler.commands._common import load_config_for, open_log_for_writing
from reconciler.logsetup import configure_logging
from reconciler.statedir import snapshots_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    """Load the config, take the event log's lock (a second daemon exits 1), run until told
    to stop."""
    from reconciler.checkpoints import checkpoints_dir
    from reconciler.daemon import Daemon
    from reconciler.eventlog import SnapshotStore
    from reconciler.eventlog.checkpoints import CheckpointStore
    from reconciler.malloc import tune_malloc

    tune_malloc()  # before any thread: months of running without the heap creeping
    config = load_config_for(args, env)
    configure_logging(config.daemon.log, stream=env.stderr)
    state_dir = config.daemon.state_dir
    log = open_log_for_writing(state_dir)  # LogLockedError names the holder's pid
    try:
        daemon = Daemon(
            config,
            log,
            snapshots=SnapshotStore(snapshots_dir(state_dir)),
            checkpoints=CheckpointStore(checkpoints_dir(state_dir)),
            configure_log=lambda target: configure_logging(target, stream=env.stderr),
        )
        return daemon.run()
    finally:
        log.close()
