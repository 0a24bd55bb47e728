"""scripts/install-linux, as the README documents it, into a clean directory (--root): the
venv under /opt/reconciler, the command linked into /usr/local/bin, the unit and the Linux
example in /etc; then `reconciler check-config` and `reconciler run` from the linked
command, the daemon building its tunnel in a network namespace. pip fetches what the
interpreter's own site-packages lack, so this is the suite's slowest test (about half a
minute)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import fake_he_in, linux_config_text, router_netns

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install-linux"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(root, the installer's output) after one install into a fresh directory."""
    root = tmp_path_factory.mktemp("root")
    done = subprocess.run(
        ["sh", str(SCRIPT), "--root", str(root)],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield root, done.stdout


def test_the_install_lays_out_venv_command_unit_and_config(installed: tuple[Path, str]) -> None:
    """A relative link to the venv's console script, the unit running it, the Linux example
    as /etc/reconciler.conf (0640), /etc/reconciler 0700, and the next steps printed."""
    root, out = installed
    link = root / "usr/local/bin/reconciler"
    assert link.is_symlink() and not os.readlink(link).startswith("/")
    assert link.resolve() == (root / "opt/reconciler/bin/reconciler").resolve()
    version = subprocess.run([str(link), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("reconciler ")
    unit = (root / "etc/systemd/system/reconciler.service").read_text()
    assert "\nExecStart=/usr/local/bin/reconciler run -c /etc/reconciler.conf\n" in unit
    config = root / "etc/reconciler.conf"
    assert config.read_text() == (REPO / "etc/reconciler.linux.conf").read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    assert (root / "etc/reconciler").stat().st_mode & 0o777 == 0o700
    share = root / "opt/reconciler/share/reconciler"
    assert (share / "reconciler.nft").read_text() == (
        REPO / "etc/nftables/reconciler.nft"
    ).read_text()
    assert "reconciler init --tunnel-id ID --username LOGIN --from-he" in out
    assert "systemctl daemon-reload && systemctl enable --now reconciler" in out


def test_check_config_and_run_from_the_linked_command(
    installed: tuple[Path, str], tmp_path: Path, lab_available: None
) -> None:
    """The installed command checks a configuration and runs the daemon in a namespace: it
    builds the tunnel from the WAN's address (HE is the fake one, on the namespace's
    loopback) and stops on SIGTERM with exit 0."""
    root, _ = installed
    command = str(root / "usr/local/bin/reconciler")
    with router_netns(f"rci{os.getpid()}") as netns, fake_he_in(netns, tmp_path) as url:
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=url, interval=300))
        checked = subprocess.run(
            [command, "check-config", "-c", str(config)], capture_output=True, text=True
        )
        assert checked.returncode == 0 and ": valid" in checked.stdout, checked.stderr
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", netns, command, "run", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while _tunnel_local(netns) != "203.0.113.7":
                assert daemon.poll() is None, daemon.communicate()[1]
                assert time.monotonic() < deadline, "no tunnel from the installed daemon"
                time.sleep(0.1)
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=10)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    assert daemon.returncode == 0, err
    assert (tmp_path / "state" / "events").is_dir()


def test_a_command_that_is_not_ours_is_never_replaced(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    """Something else at BINDIR/reconciler: one line, exit 1, the file as it was, before
    anything is installed."""
    root, _ = installed
    other = root / "usr/bin/reconciler"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text("#!/bin/sh\necho someone else's\n")
    done = subprocess.run(
        ["sh", str(SCRIPT), "--root", str(root), "--bindir", "/usr/bin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"install-linux: {other} exists and is not a link to /opt/reconciler/bin/reconciler: "
        "move it away first\n"
    )
    assert other.read_text() == "#!/bin/sh\necho someone else's\n"


def test_without_root_it_says_so_in_one_line() -> None:
    """Not root and no --root: one line, exit 1, nothing made. (The script comes on stdin:
    nobody may be unable to read the checkout.)"""
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-s"],
        input=SCRIPT.read_text(), capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (
        1,
        "install-linux: run it as root (or with --root DIR)\n",
    )


def _tunnel_local(netns: str) -> str | None:
    shown = subprocess.run(
        ["ip", "-n", netns, "-d", "-j", "link", "show", "rctun0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if shown.returncode != 0:
        return None
    local: str | None = json.loads(shown.stdout)[0]["linkinfo"]["info_data"].get("local")
    return local
