"""check-config against the systemd unit's sandbox: a configured path the unit makes
read-only or hides is one warning line each (the unit given with --unit, its drop-ins in
UNIT.d/ beside it); the shipped drop-ins parse (systemd-analyze verify where it is installed)
and open what they say they open."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.world.unitsandbox import installed_unit, parse_unit
from tests.commands.test_check_config import SYSTEM_PATH, linux_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "etc" / "systemd" / "reconciler.service"
DROP_INS = REPO / "etc" / "systemd" / "drop-ins"


def check(config: Path, *extra: str) -> tuple[int, str, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={"PATH": SYSTEM_PATH}, cwd=config.parent)
    code = main(["check-config", "-c", str(config), *extra], env)
    return code, out.getvalue(), err.getvalue().splitlines()


def about(key: str, lines: list[str]) -> list[str]:
    return [line for line in lines if f": warning: {key}:" in line]


def installed(tmp_path: Path, *drop_ins: str) -> Path:
    """The shipped unit in `tmp_path`, with the named shipped drop-ins in its .d/."""
    unit = tmp_path / "unit" / "reconciler.service"
    (unit.parent / "reconciler.service.d").mkdir(parents=True)
    shutil.copy(UNIT, unit)
    for name in drop_ins:
        shutil.copy(DROP_INS / name, unit.parent / "reconciler.service.d" / name)
    return unit


def with_paths(config: Path, *, state_dir: str, textfile: str | None = None) -> Path:
    text = config.read_text().replace('state_dir = "state"', f'state_dir = "{state_dir}"')
    if textfile is not None:
        text += f'\n[metrics]\ntextfile = "{textfile}"\n'
    config.write_text(text)
    return config


def test_a_textfile_outside_read_write_paths_is_one_warning(tmp_path: Path) -> None:
    """The shipped unit (ProtectSystem=strict, ReadWritePaths=/var/lib/reconciler): the
    state directory is fine, a textfile in /etc is not (its directory is read-only)."""
    config = with_paths(
        linux_config(tmp_path), state_dir="/var/lib/reconciler", textfile="/etc/reconciler.prom"
    )
    unit = installed(tmp_path)
    code, out, err = check(config, "--unit", str(unit))
    assert code == 0 and ": valid" in out
    assert about("metrics.textfile", err) == [
        f"{config}: warning: metrics.textfile: /etc is in a directory the unit {unit} makes "
        "read-only (ProtectSystem=strict): add it to ReadWritePaths= in a drop-in "
        "(etc/systemd/drop-ins/)"
    ]
    assert about("daemon.state_dir", err) == []


def test_paths_in_tmp_are_hidden_from_the_daemon(tmp_path: Path) -> None:
    """PrivateTmp=yes: the state dir, key file and hook under /tmp are not the ones the
    daemon would see (it gets a /tmp of its own)."""
    hook = tmp_path / "notify-me"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    config = linux_config(tmp_path, extra=f'\n[notify]\ncommand = ["{hook}"]\n')
    _, _, err = check(config, "--unit", str(installed(tmp_path)))
    assert len(about("daemon.state_dir", err)) == 1
    assert "(PrivateTmp=yes): put it elsewhere" in about("daemon.state_dir", err)[0]
    assert len(about("tunnelbroker.update_key_file", err)) == 1
    assert about("notify.command", err) == [
        f"{config}: warning: notify.command: {hook} is hidden from the daemon by the unit "
        f"{tmp_path / 'unit' / 'reconciler.service'} (PrivateTmp=yes): put it elsewhere"
    ]
    assert all(line.isprintable() for line in err)


def test_home_and_root_are_hidden_and_the_deepest_rule_decides() -> None:
    sandbox = parse_unit(UNIT.read_text(), str(UNIT))
    assert sandbox.access("/root/bin/hook") == ("hidden", "ProtectHome=yes")
    assert sandbox.access("/home/me/hook")[0] == "hidden"
    assert sandbox.access("/etc/reconciler/hooks/mail") == ("ro", "ProtectSystem=strict")
    assert sandbox.access("/var/lib/reconciler") == ("rw", "")
    assert sandbox.access("/var/lib/reconciler-other")[0] == "ro"
    assert sandbox.access("/proc/self")[0] == "rw"


def test_a_dhcp_client_as_restart_command_needs_af_packet(tmp_path: Path) -> None:
    config = linux_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "[wan]\n", '[wan]\nrestart_command = ["/sbin/dhclient", "wan0"]\n'
        )
    )
    _, _, err = check(config, "--unit", str(installed(tmp_path)))
    assert len(about("wan.restart_command", err)) == 1
    assert "dhclient needs AF_PACKET" in about("wan.restart_command", err)[0]
    _, _, err = check(config, "--unit", str(installed(tmp_path / "b", "dhcp-client.conf")))
    assert about("wan.restart_command", err) == []


def test_an_unreadable_unit_is_one_line(tmp_path: Path) -> None:
    code, _, err = check(linux_config(tmp_path), "--unit", str(tmp_path / "nowhere.service"))
    assert code == 0
    assert [line for line in err if "--unit" in line] == [
        f"{tmp_path / 'reconciler.conf'}: warning: --unit {tmp_path / 'nowhere.service'}: "
        "cannot read: No such file or directory"
    ]


def test_the_shipped_drop_ins_open_what_they_say(tmp_path: Path) -> None:
    """The textfile drop-in makes the documented directory writable, the DHCP client's adds
    AF_PACKET; without them the shipped unit has neither."""
    bare = installed_unit(installed(tmp_path / "bare"))
    assert bare is not None
    assert bare.access("/var/node_exporter")[0] == "ro"
    assert bare.access("/var/lib/reconciler/events")[0] == "rw"
    assert "AF_PACKET" not in (bare.address_families or [])
    opened = installed_unit(
        installed(tmp_path / "opened", "metrics-textfile.conf", "dhcp-client.conf")
    )
    assert opened is not None
    assert opened.access("/var/node_exporter")[0] == "rw"
    assert "AF_PACKET" in (opened.address_families or [])


def test_a_later_empty_assignment_resets_a_list() -> None:
    sandbox = parse_unit(
        "[Service]\nProtectSystem=strict\nReadWritePaths=/a\n[Service]\nReadWritePaths=\n"
        "ReadWritePaths=-/b \\\n /c\n",
        "test",
    )
    assert [sandbox.access(p)[0] for p in ("/a", "/b/x", "/c")] == ["ro", "rw", "rw"]


_OURS = re.compile(r"reconciler\.service|\.conf:")


def test_the_drop_ins_parse(tmp_path: Path) -> None:
    """systemd-analyze verify loads the unit with every shipped drop-in and complains about
    none of their lines (ExecStart pointed at a program that exists here)."""
    unit = installed(tmp_path, *(p.name for p in DROP_INS.glob("*.conf")))
    unit.write_text(
        unit.read_text().replace("/usr/local/bin/reconciler", shutil.which("true") or "/bin/true")
    )
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # the parser check: every line a comment, a section or a key=value
        for path in [unit, *unit.parent.glob("reconciler.service.d/*.conf")]:
            for line in path.read_text().splitlines():
                assert not line.strip() or line[0] in "#;[" or re.match(r"^[A-Z]\w*=", line), line
        return
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    ours = [line for line in done.stderr.splitlines() if _OURS.search(line)]
    assert done.returncode == 0 and ours == [], done.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in DROP_INS.glob("*.conf")))
def test_each_drop_in_says_where_it_goes(name: str) -> None:
    first = (DROP_INS / name).read_text().splitlines()[0]
    assert first == f"# /etc/systemd/system/reconciler.service.d/{name}"


def test_without_systemd_running_the_unit_is_read_from_the_unit_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No systemctl to ask (a container, a chroot): the first unit directory holding the
    unit gives it, and drop-ins come from every directory, an earlier one's hiding the same
    name in a later one. No unit anywhere: nothing to judge (None)."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    for directory in (etc, lib):
        (directory / "reconciler.service.d").mkdir(parents=True)
    assert installed_unit(None, (etc, lib)) is None
    shutil.copy(UNIT, lib / "reconciler.service")
    (lib / "reconciler.service.d" / "paths.conf").write_text("[Service]\nReadWritePaths=/x\n")
    (etc / "reconciler.service.d" / "paths.conf").write_text("[Service]\nReadWritePaths=/y\n")
    sandbox = installed_unit(None, (etc, lib))
    assert sandbox is not None and sandbox.source == str(lib / "reconciler.service")
    assert (sandbox.access("/x")[0], sandbox.access("/y")[0]) == ("ro", "rw")
