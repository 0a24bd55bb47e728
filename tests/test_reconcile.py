"""Tests for reconciler.reconcile: the one-pass logic, kept apart from the daemon's threads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.model.actions import RestartTunnel
from reconciler.model.plan import Held
from reconciler.reconcile import earliest_due

REPO = Path(__file__).resolve().parents[1]

_LOADED_BY_APPLY = """
import sys
from reconciler.cli import main
status = main(["apply", "-c", sys.argv[1]])
loaded = sorted(
    name for name in sys.modules
    if name == "reconciler.daemon" or name.split(".")[0] == "apscheduler"
)
print(status, loaded)
"""


def test_apply_imports_neither_the_daemon_nor_apscheduler(tmp_path: Path) -> None:
    """`reconciler apply` gets its one pass from reconciler.reconcile: running it (here up to
    the config error) loads no daemon module and no scheduler."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_BY_APPLY, str(tmp_path / "missing.conf")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "1 []", done.stderr


def test_earliest_due_is_the_first_known_time_of_a_hold() -> None:
    """Holds without a time (waiting for a fact, not a clock) do not count."""
    action = RestartTunnel("gif0", "203.0.113.7", "198.51.100.1")
    held = (
        Held(action, "backoff", "", 30.0),
        Held(action, "waiting", "", None),
        Held(action, "backoff", "", 12.5),
    )
    assert earliest_due(held) == 12.5
    assert earliest_due(()) is None
    assert earliest_due((Held(action, "waiting", "", None),)) is None
