"""Tests for `reconciler check-config`'s warnings: a configured command that is missing or is
another platform's tool, and an nft file that flushes the whole ruleset. One line each on
stderr; the configuration is still valid (exit 0)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from tests.daemon_helpers import linux_config_text, write_key

REPO = Path(__file__).resolve().parents[2]
NFT_EXAMPLE = REPO / "etc" / "nftables" / "reconciler.nft"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def check(config: Path, path: str = SYSTEM_PATH) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={"PATH": path}, cwd=config.parent)
    code = main(["check-config", "-c", str(config)], env)
    return code, out.getvalue(), err.getvalue()


def linux_config(tmp_path: Path, firewall: str = "[]", extra: str = "") -> Path:
    text = linux_config_text(tmp_path, wan="wan0", update_url="https://127.0.0.1:1/nic/update")
    text = text.replace("reload_command = []", f"reload_command = {firewall}") + extra
    path = tmp_path / "reconciler.conf"
    path.write_text(text)
    return path


def openbsd_config(tmp_path: Path, firewall: str) -> Path:
    """The shipped (OpenBSD) example with a key file that exists and the given firewall."""
    key = write_key(tmp_path)
    text = (REPO / "etc" / "reconciler.conf").read_text()
    text = text.replace('"/etc/reconciler/tunnelbroker.key"', f'"{key}"')
    text = text.replace(
        'reload_command = ["pfctl", "-f", "/etc/pf.conf"]', f"reload_command = {firewall}"
    )
    path = tmp_path / "reconciler.conf"
    path.write_text(text)
    return path


def test_pfctl_on_linux_is_one_warning_and_still_valid(tmp_path: Path) -> None:
    """The old shipped example's pfctl on Linux: valid, but said at once (the first tunnel
    restart would fail for good)."""
    code, out, err = check(linux_config(tmp_path, '["pfctl", "-f", "/etc/pf.conf"]'))
    assert code == 0 and ": valid" in out
    assert err.splitlines() == [
        f"{tmp_path / 'reconciler.conf'}: warning: firewall.reload_command: pfctl -f "
        "/etc/pf.conf is OpenBSD's pf; on Linux use nft (docs/linux.md), or [] for no "
        "firewall step"
    ]


@pytest.mark.parametrize(
    "firewall", ['["nft", "-f", "/etc/reconciler.nft"]', '["/usr/sbin/iptables-restore"]']
)
def test_linux_firewall_tools_on_openbsd_are_warned_about(tmp_path: Path, firewall: str) -> None:
    """nft or iptables in an OpenBSD configuration: one line saying what OpenBSD uses."""
    code, out, err = check(openbsd_config(tmp_path, firewall))
    assert code == 0 and ": valid" in out
    [line] = err.splitlines()
    assert ": warning: firewall.reload_command: " in line
    assert "on OpenBSD use pfctl -f /etc/pf.conf" in line


def test_openbsd_netstart_as_linux_wan_restart_is_warned_about(tmp_path: Path) -> None:
    """`sh /etc/netstart wan0`: the script is OpenBSD's, though sh is everywhere."""
    config = linux_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            'interface = "wan0"\n',
            'interface = "wan0"\nrestart_command = ["sh", "/etc/netstart", "wan0"]\n',
        )
    )
    code, _, err = check(config)
    assert code == 0
    assert "warning: wan.restart_command: sh /etc/netstart wan0 is OpenBSD's" in err


def test_a_command_not_on_path_is_warned_about(tmp_path: Path) -> None:
    """A bare program name the PATH does not have, and an absolute path that does not
    exist or cannot be executed: one line each, naming the key."""
    empty = tmp_path / "bin"
    empty.mkdir()
    code, _, err = check(linux_config(tmp_path, '["nft", "-f", "/dev/null"]'), path=str(empty))
    assert code == 0
    assert err.splitlines() == [
        f"{tmp_path / 'reconciler.conf'}: warning: firewall.reload_command: nft is not on PATH"
    ]
    script = tmp_path / "reload"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)  # not executable
    _, _, err = check(linux_config(tmp_path, f'["{script}"]'))
    assert err.splitlines() == [
        f"{tmp_path / 'reconciler.conf'}: warning: firewall.reload_command: {script} does "
        "not exist or is not executable"
    ]
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert check(linux_config(tmp_path, f'["{script}"]'))[2] == ""


def test_nft_loading_a_file_that_flushes_the_ruleset_is_warned_about(tmp_path: Path) -> None:
    """Debian's /etc/nftables.conf starts with `flush ruleset`: as the reload it would wipe
    every other table. The shipped example (a table of its own) draws no warning."""
    debian = tmp_path / "nftables.conf"
    debian.write_text("#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n")
    nft = tmp_path / "bin" / "nft"
    nft.parent.mkdir()
    nft.write_text("#!/bin/sh\n")
    nft.chmod(0o755)
    path = f"{nft.parent}{os.pathsep}{SYSTEM_PATH}"
    code, _, err = check(linux_config(tmp_path, f'["nft", "-f", "{debian}"]'), path=path)
    assert code == 0
    [line] = err.splitlines()
    assert f"firewall.reload_command: nft -f {debian} loads a file that starts with `flush " in line
    assert "Docker's" in line
    code, _, err = check(linux_config(tmp_path, f'["nft", "-f", "{NFT_EXAMPLE}"]'), path=path)
    assert (code, err) == (0, "")


def test_a_clean_linux_configuration_has_no_warnings(tmp_path: Path) -> None:
    """No firewall step, no commands: nothing on stderr."""
    code, out, err = check(linux_config(tmp_path))
    assert (code, err) == (0, "")
    assert "firewall reload: none" in out
