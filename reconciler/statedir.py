"""Where things live inside a state directory."""

from __future__ import annotations

from pathlib import Path

__all__ = ["events_dir", "snapshots_dir"]


def events_dir(state_dir: Path) -> Path:
    """The event log's segments."""
    return state_dir / "events"


def snapshots_dir(state_dir: Path) -> Path:
    """Snapshots of the folded state."""
    return state_dir / "snapshots"
