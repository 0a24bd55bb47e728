"""Shared fixtures. Lab tests need root and network namespaces; in CI a skip is a failure.

Tests marked `sit` need a kernel with sit (6in4). A host kernel without it (CI's, a
container's) leaves them out and says so once; `make test-sit` runs them in a user-mode Linux
guest (reconciler/testing/uml.py), which is CI for them: there nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set by the guest's init (reconciler/testing/uml.py): these tests run in the UML guest.
IN_UML_GUEST = os.environ.get("RECONCILER_UML_GUEST") == "1"
IN_CI = bool(os.environ.get("CI")) or IN_UML_GUEST
SIT_TESTS_ELSEWHERE = "sit tests: this kernel has no sit; `make test-sit` runs them in a UML guest"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the `sit` tests where the kernel has no sit (never in the guest, where a
    missing sit must fail them), and the `nftables` tests where the kernel has no nftables
    for IPv4 (the guest's: CONFIG_NF_TABLES_IPV4 is unset; the host runs them)."""
    _leave_out_without_nftables(config, items)
    if IN_UML_GUEST:
        host_only = [item for item in items if item.get_closest_marker("host_only")]
        if host_only:
            config.hook.pytest_deselected(items=host_only)
            items[:] = [item for item in items if not item.get_closest_marker("host_only")]
        return
    if Path("/sys/module/sit").exists():
        return
    sit_only = [item for item in items if item.get_closest_marker("sit")]
    if not sit_only:
        return
    config.hook.pytest_deselected(items=sit_only)
    items[:] = [item for item in items if not item.get_closest_marker("sit")]
    config._rc_sit_deselected = len(sit_only)  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In the UML guest a skipped test fails: it is there to run what the host cannot."""
    outcome = yield
    report = outcome.get_result()
    if IN_UML_GUEST and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in the UML guest, where nothing may be: {reason}"


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    lines = []
    left_out = getattr(config, "_rc_sit_deselected", 0)
    if left_out:
        lines.append(f"{SIT_TESTS_ELSEWHERE} ({left_out} left out here)")
    no_nft = getattr(config, "_rc_nft_deselected", 0)
    if no_nft:
        lines.append(f"nftables tests: this kernel has no nftables for IPv4 ({no_nft} left out)")
    return "\n".join(lines) or None


def _leave_out_without_nftables(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = [item for item in items if item.get_closest_marker("nftables")]
    if not wanted or os.geteuid() != 0 or _kernel_has_nftables():
        return
    config.hook.pytest_deselected(items=wanted)
    items[:] = [item for item in items if not item.get_closest_marker("nftables")]
    config._rc_nft_deselected = len(wanted)  # type: ignore[attr-defined]


def _kernel_has_nftables() -> bool:
    """Whether a filter chain on IPv4's input hook can be made (in a scratch namespace)."""
    if shutil.which("nft") is None:
        return False
    name = f"rcnft{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return False
    try:
        made = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input="table ip t {\n chain c {\n type filter hook input priority 0\n }\n}\n",
            capture_output=True,
            text=True,
            timeout=20,
        )
        return made.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


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


@pytest.fixture(scope="session")
def networkd_available(lab_available: None) -> None:
    """Skip (or, in CI, fail) tests that run systemd-networkd in a namespace."""
    from reconciler.testing.networkd import networkd_unavailable_reason

    reason = networkd_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"networkd tests must run in CI but cannot: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dhcp_available(lab_available: None) -> None:
    """Skip (or, in CI, fail) tests that run dnsmasq and dhclient in namespaces."""
    from reconciler.testing.dhcp import dhcp_unavailable_reason

    reason = dhcp_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"DHCP tests must run in CI but cannot: {reason}")
    pytest.skip(reason)
