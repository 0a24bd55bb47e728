"""systemd-networkd in a test's namespace (reconciler.testing.networkd): it starts, owns a
link from a minimal .network file, answers networkctl over its private bus, survives reload,
reconfigure and restart, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.testing.networkd import Networkd, NetworkdError
from tests.netns import namespace

pytestmark = pytest.mark.usefixtures("networkd_available")

MINIMAL = """[Match]
Name=nd0

[Network]
Address=192.0.2.5/24
LinkLocalAddressing=no
IPv6AcceptRA=no
"""


def _addresses(ns: str, device: str) -> str:
    done = subprocess.run(
        ["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _flush(ns: str, device: str) -> None:
    subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", device], check=True)


def test_networkd_configures_a_link_and_keeps_it_through_reload_reconfigure_restart() -> None:
    name = f"rcnd-{os.getpid()}"
    veth = ["link", "add", "nd0", "type", "veth", "peer", "name", "nd1"]
    with namespace(name, veth, ["link", "set", "nd1", "up"]) as ns, Networkd(ns) as networkd:
        networkd.write("50-nd0.network", MINIMAL)
        networkd.start()
        networkd.wait_setup("nd0", "configured", timeout=5)
        assert "192.0.2.5/24" in _addresses(ns, "nd0")
        assert networkd.setup_state("nd1") == "unmanaged"
        # its state is private and readable from the host
        assert (networkd.run_dir / "systemd" / "netif" / "state").exists()
        networkd.reload()  # an unchanged .network: nothing to redo
        networkd.wait_setup("nd0", "configured", timeout=5)
        for again in (lambda: networkd.reconfigure("nd0"), networkd.restart):
            _flush(ns, "nd0")
            again()
            networkd.wait_setup("nd0", "configured", timeout=5)
            assert "192.0.2.5/24" in _addresses(ns, "nd0")


def test_networkctl_from_outside_the_mount_namespace_reaches_the_private_bus() -> None:
    """A daemon under test (in the namespace but not networkd's mount namespace) can run
    `networkctl reload` with env(): the bus is at a host-visible path."""
    name = f"rcnd-{os.getpid()}"
    with namespace(name) as ns, Networkd(ns) as networkd:
        networkd.start()
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "networkctl", "reload"],
            env=networkd.env(),
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 0, done.stderr


def test_close_stops_everything_and_removes_the_work_dir() -> None:
    name = f"rcnd-{os.getpid()}"
    with namespace(name) as ns:
        with Networkd(ns) as networkd:
            networkd.start()
            workdir = networkd.workdir
            assert networkd.running
        assert not workdir.exists()
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        assert pids.stdout.strip() == ""


def test_a_missing_namespace_is_a_clear_error_and_leaves_nothing() -> None:
    before = set(Path("/dev/shm").glob("networkd-rcnd-missing-*"))
    with (
        pytest.raises(NetworkdError, match="cannot enter rcnd-missing"),
        Networkd(f"rcnd-missing-{os.getpid()}", start_timeout=5),
    ):
        pass
    assert set(Path("/dev/shm").glob("networkd-rcnd-missing-*")) == before
