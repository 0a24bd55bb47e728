"""Shared fixtures. Lab tests need root and network namespaces; in CI a skip is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

IN_CI = bool(os.environ.get("CI"))


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    name = f"rcprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture(scope="session")
def lab_available() -> None:
    """Skip (or, in CI, fail) tests that need root and network namespaces."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"lab tests must run in CI but cannot: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """`reconciler run` and apply configure process-wide logging (handlers, no propagation);
    put it back after every test so that later tests' caplog still hears our loggers."""
    from tests.daemon_helpers import restored_loggers

    with restored_loggers("reconciler", "apscheduler"):
        yield
