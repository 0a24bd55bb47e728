"""A small file system of its own (tmpfs) for tests of a full disk, filled with a ballast file.

Mounting needs root: without it the tests skip, and in CI (CI=true) they fail instead, as the
lab's do (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

__all__ = ["BALLAST", "fill_up", "small_filesystem"]

BALLAST = "ballast"


@contextlib.contextmanager
def small_filesystem(size: str = "2m") -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted on a temporary directory, unmounted afterwards."""
    if os.geteuid() != 0:
        reason = "mounting a small file system needs root"
        if IN_CI:
            pytest.fail(f"full-disk tests must run in CI but cannot: {reason}")
        pytest.skip(reason)
    mountpoint = Path(tempfile.mkdtemp(prefix="rc-fullfs-"))
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
            check=True,
            capture_output=True,
        )
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True, capture_output=True)
    finally:
        mountpoint.rmdir()


def fill_up(directory: Path) -> Path:
    """Write a ballast file in `directory` until the file system says ENOSPC; its path."""
    ballast = directory / BALLAST
    chunk = b"\xa5" * 4096
    with open(ballast, "ab", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # The last few bytes too: a block may be partly free.
    with open(ballast, "ab", buffering=0) as f:
        for _ in range(4096):
            try:
                f.write(b"\xa5")
            except OSError:
                break
    return ballast
