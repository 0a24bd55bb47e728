"""Network namespaces for tests: made fresh, always deleted."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence

__all__ = ["namespace"]


@contextlib.contextmanager
def namespace(name: str, *setup: Sequence[str]) -> Iterator[str]:
    """A new namespace `name` with loopback up, then `ip -n name ARGS` for each of `setup`;
    deleted afterwards, whatever happens."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for argv in (["link", "set", "lo", "up"], *setup):
            subprocess.run(["ip", "-n", name, *argv], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
