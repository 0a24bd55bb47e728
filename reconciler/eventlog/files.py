"""File-system steps the log and the snapshots share: durable creation, listing, moving aside."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.atomicfile import fsync_dir, write_atomically
from reconciler.eventlog.format import is_segment_name, segment_first_seq

__all__ = [
    "fsync_dir",
    "list_segments",
    "make_private_dir",
    "unused_name",
    "write_durably",
]


def make_private_dir(path: Path) -> None:
    """Create the directory (and parents) readable only by its owner, if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_durably(path: Path, data: bytes) -> None:
    """Write a whole file atomically, readable by its owner only (segment headers, snapshots)."""
    write_atomically(path, data, mode=0o600)


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence number, path) of every segment, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(segment_first_seq(n), directory / n) for n in names if is_segment_name(n)]
    found.sort()
    return found


def unused_name(path: Path, suffix: str) -> Path:
    """`path` + suffix, or + suffix + .N when that exists: moving aside never overwrites."""
    candidate = path.with_name(path.name + suffix)
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{suffix}.{n}")
        n += 1
    return candidate
