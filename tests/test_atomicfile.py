"""The atomic file writer: exact modes, and a failed write leaves the old file alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.atomicfile import write_atomically


def test_the_new_file_replaces_the_old_with_exactly_the_given_mode(tmp_path: Path) -> None:
    """The mode is applied whatever the umask, and no temporary file is left behind."""
    target = tmp_path / "f"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        write_atomically(target, b"new", mode=0o640)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the data cannot be made durable, the old content stays and the tmp file goes."""
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_file_that_need_not_survive_a_power_cut_is_written_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable=False (the metrics textfile, rewritten every interval) costs no fsync, and is
    still replaced whole."""
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    target = tmp_path / "f"
    write_atomically(target, b"new", mode=0o644, durable=False)
    assert synced == [] and target.read_bytes() == b"new"
    write_atomically(target, b"newer", mode=0o644)
    assert len(synced) == 2  # the file and its directory
