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
    "stray_segment_names",
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
    """(first sequence number, path) of every segment, oldest first.

    Only regular files (or symlinks to one) count: a directory or a dangling or looping
    symlink that merely carries a segment's name was not made by the log, holds no records,
    and must not stop every command that reads the log (`stray_segment_names` lists them).
    """
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found = [
        (segment_first_seq(e.name), directory / e.name)
        for e in entries
        if is_segment_name(e.name) and _is_file(e)
    ]
    found.sort()
    return found


def stray_segment_names(directory: Path) -> list[tuple[Path, str]]:
    """(path, what it is) of each entry named like a segment that is not a regular file;
    the log ignores them and leaves them alone (it did not make them)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    strays = []
    for entry in sorted(entries, key=lambda e: e.name):
        if is_segment_name(entry.name) and not _is_file(entry):
            strays.append((directory / entry.name, _what(entry)))
    return strays


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # follows symlinks; False for a dangling one
    except OSError:  # a looping symlink on some systems
        return False


def _what(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        try:
            os.stat(entry.path)
        except OSError as exc:
            return f"a symlink that leads nowhere ({exc.strerror or exc})"
        return "a symlink to something that is not a file"
    if entry.is_dir(follow_symlinks=False):
        return "a directory"
    return "not a regular file"


def unused_name(path: Path, suffix: str) -> Path:
    """`path` + suffix, or + suffix + .N when that exists: moving aside never overwrites."""
    candidate = path.with_name(path.name + suffix)
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{suffix}.{n}")
        n += 1
    return candidate
