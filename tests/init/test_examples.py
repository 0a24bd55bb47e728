"""The two shipped examples: etc/reconciler.conf (OpenBSD) and etc/reconciler.linux.conf.
They document the same keys; the Linux one is valid on Linux as it stands (but for the key
file), draws no check-config warning, and never says pfctl; `init --platform linux` writes
from it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.configfile import load_config
from reconciler.init.template import example_config

REPO = Path(__file__).resolve().parents[2]
OPENBSD = REPO / "etc" / "reconciler.conf"
LINUX = REPO / "etc" / "reconciler.linux.conf"
_SECTION = re.compile(r"^#?\s*\[([A-Za-z0-9_.]+)\]\s*$")
_KEY = re.compile(r"^#?\s*([a-z0-9_]+)\s*=")


def documented_keys(text: str) -> set[str]:
    """Every "section.key" the file sets or shows commented out."""
    keys, section = set(), ""
    for line in text.splitlines():
        if header := _SECTION.match(line):
            section = header.group(1)
        elif key := _KEY.match(line):
            keys.add(f"{section}.{key.group(1)}")
    return keys


def with_key_file(text: str, tmp_path: Path) -> Path:
    key = tmp_path / "he.key"
    key.write_text("0123456789abcdef\n")
    key.chmod(0o600)
    path = tmp_path / "reconciler.conf"
    path.write_text(text.replace("/etc/reconciler/tunnelbroker.key", str(key)))
    return path


def test_both_examples_document_the_same_keys() -> None:
    """A key added to one example and not the other fails here."""
    assert documented_keys(LINUX.read_text()) == documented_keys(OPENBSD.read_text())


def test_the_linux_example_is_valid_on_linux_and_never_says_pfctl(tmp_path: Path) -> None:
    text = LINUX.read_text()
    assert "pfctl" not in text
    config = load_config(with_key_file(text, tmp_path))
    assert config.daemon.platform == "linux" and config.daemon.log == "stderr"
    assert (config.wan.interface, config.tunnel.interface, config.tunnel.mode) == (
        "eth0",
        "he-ipv6",
        "sit",
    )
    assert config.firewall.reload_command == ()
    assert config.tunnel.hostname_file is None
    assert str(config.daemon.state_dir) == "/var/lib/reconciler"


def test_the_linux_example_draws_no_warning(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    path = with_key_file(LINUX.read_text(), tmp_path)
    assert main(["check-config", "-c", str(path)], env) == 0
    assert err.getvalue() == ""


@pytest.mark.parametrize(("platform", "example"), [("linux", LINUX), ("openbsd", OPENBSD)])
def test_the_package_ships_each_platforms_example(platform: str, example: Path) -> None:
    assert example_config(platform) == example.read_text()


def test_init_for_linux_writes_from_the_linux_example(tmp_path: Path) -> None:
    """`init --platform linux`: the Linux example's comments, no pfctl anywhere."""
    key = tmp_path / "he.key"
    key.write_text("0123456789abcdef\n")
    key.chmod(0o600)
    output = tmp_path / "reconciler.conf"
    argv = [
        "init", "--platform", "linux", "-o", str(output), "--key-file", str(key),
        "--tunnel-id", "7", "--username", "u", "--wan", "eth0",
        "--from-hostname-file", str(REPO / "tests/init/fixtures/plain/hostname.gif0"),
    ]  # fmt: skip
    err = io.StringIO()
    code = main(argv, Environment(stdout=io.StringIO(), stderr=err, environ={}, cwd=tmp_path))
    assert code == 0, err.getvalue()
    text = output.read_text()
    assert "pfctl" not in text
    assert "The Linux example" in text
