"""The OpenBSD rc.d script (etc/rc.d/reconciler), run with a stand-in rc.subr
(tests/world/rcd/rc.subr) that records what rc.subr would execute, against a real process
started the way the script starts it: a console script in a venv, whose command line is
"<venv interpreter> <script> run <flags>".

The script is run by bash (OpenBSD runs it with ksh; it uses nothing the two disagree on).
Only its two absolute paths are pointed at the test's files: rc.subr, and the daemon.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "etc" / "rc.d" / "reconciler"
STAND_IN = Path(__file__).parent / "rcd" / "rc.subr"
INSTALLED_DAEMON = "/usr/local/reconciler/bin/reconciler"

# A daemon that behaves like ours for rc.d's purposes: stays in the foreground, notes a
# SIGHUP, and on SIGTERM prints its last words on stderr and exits 1 (a crash).
FAKE_DAEMON = """\
import signal, sys, time
from pathlib import Path
events = Path(sys.argv[0]).parent.parent / "events"
signal.signal(signal.SIGHUP, lambda *_: events.open("a").write("HUP\\n"))
def die(*_):
    print("Traceback (most recent call last): the last words", file=sys.stderr, flush=True)
    sys.exit(1)
signal.signal(signal.SIGTERM, die)
events.open("a").write("started " + " ".join(sys.argv[1:]) + "\\n")
while True:
    time.sleep(0.05)
"""


class RcD:
    """The script installed over a temporary root, with a venv and an rc.conf.local."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "usr" / "local" / "reconciler"
        (self.venv / "bin").mkdir(parents=True)
        # pip writes the venv's interpreter into the console script's #! line; here it is
        # `python` (a symlink to this Python), as in this project's own .venv.
        (self.venv / "bin" / "python").symlink_to(sys.executable)
        self.daemon = self.venv / "bin" / "reconciler"
        self.daemon.write_text(f"#!{self.venv / 'bin' / 'python'}\n{FAKE_DAEMON}")
        self.daemon.chmod(0o755)
        self.events = self.venv / "events"
        self.script = root / "etc" / "rc.d" / "reconciler"
        self.script.parent.mkdir(parents=True)
        text = SCRIPT.read_text()
        assert text.count("/etc/rc.d/rc.subr") == 1 and text.count(INSTALLED_DAEMON) == 1
        text = text.replace("/etc/rc.d/rc.subr", str(STAND_IN))
        self.script.write_text(text.replace(INSTALLED_DAEMON, str(self.daemon)))
        self.rc_conf_local = root / "etc" / "rc.conf.local"
        self.rc_conf_local.write_text("")
        self.record = root / "record"
        # logger(1) stand-in: what would reach syslog, with logger's arguments.
        self.bin = root / "bin"
        self.bin.mkdir()
        self.syslog = root / "syslog"
        logger = self.bin / "logger"
        logger.write_text(f'#!/bin/sh\necho "logger $*" >>{self.syslog}\ncat >>{self.syslog}\n')
        logger.chmod(0o755)
        self.started: list[subprocess.Popen[bytes]] = []

    def rcctl_set_flags(self, flags: str) -> None:
        """What `rcctl set reconciler flags <flags>` writes."""
        self.rc_conf_local.write_text(f"reconciler_flags={flags}\n")

    def run(self, action: str) -> list[str]:
        """Run `/etc/rc.d/reconciler <action>`; the lines it recorded."""
        self.record.write_text("")
        env = {**os.environ, "RC_RECORD": str(self.record)}
        env["RC_CONF_LOCAL"] = str(self.rc_conf_local)
        bash = shutil.which("bash")
        assert bash is not None
        subprocess.run([bash, str(self.script), action], env=env, check=True, timeout=30)
        return self.record.read_text().splitlines()

    def start(self) -> subprocess.Popen[bytes]:
        """`start`, then what su(1) would do with the recorded command: /bin/sh -c it (bash
        here, for `set -o pipefail` as OpenBSD's sh has it)."""
        lines = self.run("start")
        [command] = [line.removeprefix("exec ") for line in lines if line.startswith("exec ")]
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}
        process = subprocess.Popen(["bash", "-c", command], env=env, start_new_session=True)
        self.started.append(process)
        deadline = time.monotonic() + 10
        while not (self.events.exists() and "started" in self.events.read_text()):
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.02)
        return process

    def pexp(self) -> str:
        [line] = [line for line in self.run("check") if line.startswith("pexp ")]
        return line.removeprefix("pexp ")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture
def rcd(tmp_path: Path) -> Iterator[RcD]:
    installed = RcD(tmp_path)
    try:
        yield installed
    finally:
        installed.stop_all()


def command_lines_of_our_daemon(rcd: RcD) -> dict[int, str]:
    """PID -> command line (arguments joined by spaces, as pgrep -f sees it) of every
    process running our test daemon."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if str(rcd.daemon) in line and "bash" not in args[0].decode(errors="replace"):
            found[int(entry.name)] = line
    return found


def test_flags_set_with_rcctl_keep_the_run_subcommand(rcd: RcD) -> None:
    """`rcctl set reconciler flags -c /etc/reconciler.conf` replaces daemon_flags: the
    started command still says `run`, with the flags after it, piped to syslog."""
    rcd.rcctl_set_flags("-c /etc/reconciler.conf")
    started = [line for line in rcd.run("start") if line.startswith("exec ")]
    assert started == [
        f"exec set -o pipefail; {rcd.daemon} run -c /etc/reconciler.conf 2>&1 | "
        "logger -isp daemon.err -t reconciler"
    ]
    rcd.rcctl_set_flags("")
    [started_plain] = [line for line in rcd.run("start") if line.startswith("exec ")]
    assert f"{rcd.daemon} run 2>&1 | " in started_plain


def test_pexp_matches_the_daemon_as_started(rcd: RcD) -> None:
    """The running daemon's command line is "<venv python> <script> run <flags>": pexp
    matches it whole (pgrep -xf semantics, reproduced with Python's re on /proc/PID/cmdline),
    and the script's check, reload and stop find it (the real pgrep and pkill)."""
    rcd.rcctl_set_flags("-c /etc/reconciler.conf")
    rcd.start()
    pexp = rcd.pexp()
    assert pexp == f"{rcd.venv}/bin/python {rcd.daemon} run -c /etc/reconciler.conf"
    [(pid, line)] = command_lines_of_our_daemon(rcd).items()
    assert line == pexp
    assert re.fullmatch(pexp, line)
    found = subprocess.run(["pgrep", "-xf", pexp], capture_output=True, text=True, timeout=10)
    assert found.stdout.split() == [str(pid)]  # the daemon, not the shell or logger around it
    assert rcd.run("check")[-1] == "check 0"
    assert rcd.run("reload")[-1] == "reload 0"
    deadline = time.monotonic() + 5
    while "HUP" not in rcd.events.read_text():
        assert time.monotonic() < deadline, "SIGHUP did not reach the daemon"
        time.sleep(0.02)
    assert rcd.run("stop")[-1] == "stop 0"
    deadline = time.monotonic() + 5
    while command_lines_of_our_daemon(rcd):
        assert time.monotonic() < deadline, "the daemon did not stop"
        time.sleep(0.02)
    assert rcd.run("check")[-1] == "check 1"


def test_a_crashs_last_words_reach_syslog(rcd: RcD) -> None:
    """What the daemon prints on stderr as it dies goes to logger(1) as daemon.err,
    tagged reconciler (rc.subr would send it to /dev/null)."""
    process = rcd.start()
    rcd.run("stop")  # SIGTERM: the fake daemon prints its last words and exits 1
    assert process.wait(10) == 1  # pipefail: the pipeline reports the daemon's status
    syslog = rcd.syslog.read_text()
    assert syslog.startswith("logger -isp daemon.err -t reconciler\n")
    assert "Traceback (most recent call last): the last words" in syslog
