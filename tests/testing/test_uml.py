"""The user-mode Linux guest runner, with the real linux.uml: what comes back, and how each
way of failing (no boot, a module that will not load, a hung guest) becomes one line."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from reconciler.testing import uml
from tests.conftest import IN_CI


@pytest.fixture(scope="module", autouse=True)
def uml_available() -> None:
    """Skip (in CI: fail) without linux.uml and kmod; system-deps installs them."""
    reason = uml.guest_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"the UML guest must run in CI but cannot: {reason}")
    pytest.skip(reason)


def _run(tmp_path: Path, script: str, **kwargs: object) -> uml.GuestResult:
    return uml.run_in_guest(
        ["sh", "-c", script],
        run_dir=tmp_path / "run",
        cwd=tmp_path,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_command_runs_with_sit_loaded_and_its_results_come_back(tmp_path: Path) -> None:
    """The command's status, its console output and what it leaves in out/ come back; sit
    is loaded; what it writes elsewhere (a netns under /run, HOME, TMPDIR) stays in the
    guest's tmpfs, so the host's /run/netns does not get the namespace."""
    name = f"rcumltest{os.getpid()}"
    script = (
        'test -d /sys/module/sit && echo "sit is here"; '
        f"ip netns add {name} && ip -n {name} link show sit0 >/dev/null && echo netns-ok; "
        'echo result > "$RECONCILER_GUEST_OUT/result"; touch "$HOME/h" "$TMPDIR/t"; exit 7'
    )
    console = io.StringIO()
    result = _run(tmp_path, script, console=console, timeout=120)
    assert result.returncode == 7
    assert "sit is here" in console.getvalue() and "netns-ok" in console.getvalue()
    out = result.run_dir / "out"
    assert (out / "result").read_text() == "result\n"
    # The boot messages stay in the log; the console gets the command's part.
    log = (out / "console.log").read_text()
    boot = log[: log.index(uml.COMMAND_MARK)]
    boot_lines = [line for line in boot.splitlines() if line.strip()]
    assert boot_lines and not [line for line in boot_lines if line in console.getvalue()]
    assert not Path("/run/netns", name).exists()
    assert not list((result.run_dir / "scratch").iterdir())  # HOME and TMPDIR were tmpfs


def test_a_module_that_does_not_load_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uml, "GUEST_MODULES", ("sit", "rcnosuchmodule"))
    with pytest.raises(uml.UmlError) as raised:
        _run(tmp_path, "echo never", timeout=120)
    message = str(raised.value)
    assert message.startswith("module rcnosuchmodule did not load in the guest: ")
    assert "\n" not in message


def test_a_guest_that_does_not_boot_is_one_line(tmp_path: Path) -> None:
    """A root the kernel cannot mount: it panics before init, and the run says so."""
    with pytest.raises(uml.UmlError) as raised:
        _run(tmp_path, "echo never", timeout=120, kernel_args=["rootflags=/rc-no-such-root"])
    assert str(raised.value).startswith("the guest did not boot")
    assert "\n" not in str(raised.value)


def test_a_guest_that_stops_mid_command_is_caught(tmp_path: Path) -> None:
    """A guest that stops before the command finished (here the command halts it) fails."""
    with pytest.raises(uml.UmlError, match="stopped before the command finished"):
        _run(tmp_path, "halt -f; sleep 30", timeout=120)


def test_a_hung_guest_is_killed_at_the_deadline(tmp_path: Path) -> None:
    """The command never ends: the guest's whole process group is killed at the time-out
    and the run fails with one line naming it."""
    started = time.monotonic()
    with pytest.raises(uml.UmlError) as raised:
        _run(tmp_path, "sleep 600", timeout=15)
    assert time.monotonic() - started < 45
    assert str(raised.value).startswith("the guest did not finish within 15 s")
    assert "\n" not in str(raised.value)
    umid = f"umid={(tmp_path / 'run' / 'umid').read_text().strip()}".encode()
    left = [entry.name for entry in Path("/proc").glob("[0-9]*") if umid in _cmdline(entry)]
    assert left == [], "the guest's processes outlived the time-out"


def _cmdline(entry: Path) -> list[bytes]:
    try:
        return entry.joinpath("cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def test_the_command_line_prints_one_line_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    """`uml-guest` itself: a guest failure is one line on stderr and exit 1, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.testing.uml", "--timeout", "10", "--", "sleep", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    kept = done.stderr.rpartition("results and logs kept in ")[2].strip()
    if kept.startswith(tempfile.gettempdir()):  # kept for a user to read; not for a test
        shutil.rmtree(Path(kept).parent, ignore_errors=True)
    assert done.returncode == 1
    assert done.stderr.startswith("uml-guest: the guest did not finish within 10 s")
    assert "Traceback" not in done.stderr
