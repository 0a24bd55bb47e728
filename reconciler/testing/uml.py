"""Run a command inside a user-mode Linux guest whose kernel has sit (6in4), from the host.

    python -m reconciler.testing.uml [--timeout 480] [--mem 1G] [--keep] -- COMMAND ...

Debian's `user-mode-linux` package is a Linux kernel that runs as an ordinary process; its
modules include sit, which the host kernel (a container's, CI's) may lack. The guest boots
with the host's own root as its root (hostfs), so it sees the repository and the venv at the
same paths. That root is the host's, read-write: everything the guest writes goes either to
tmpfs (its /run, and a scratch directory holding HOME, TMPDIR and the module tree) or to
the run directory's `out/`, where the host reads the results and logs.

The guest's init is a shell script written into the run directory. It mounts /proc, /sys,
a tmpfs on /run (so `ip netns add` does not leave files in the host's /run/netns) and on the
scratch directory, bind-mounts /usr/lib/uml/modules/<version> into the scratch module tree,
points the kernel's module autoloader at it, loads sit, veth and vxlan, runs COMMAND from
the current directory and ends with `halt -f`. It records each step in `out/status`; the
host turns what is missing there into one line:

    uml-guest: the guest did not boot ...
    uml-guest: module sit did not load in the guest: ...
    uml-guest: the guest did not finish within 480 s ...

and exits 1 (or with COMMAND's own status when it ran and failed). The guest never hangs the
host: at the deadline its whole process group is killed. The guest is single-CPU and its
system calls are slower than the host's (each one passes through the UML kernel).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import attrs

from reconciler.world.runner import SubprocessRunner, kill_session

__all__ = ["GuestResult", "UmlError", "guest_unavailable_reason", "main", "run_in_guest"]

KERNEL = "linux.uml"
MODULES_ROOT = Path("/usr/lib/uml/modules")
GUEST_MODULES = ("sit", "veth", "vxlan", "ppp_generic", "pppoe")  # pppoe: the PPPoE WAN tests
DEFAULT_MEM = "1G"
DEFAULT_TIMEOUT = 480.0
# The environment the command gets in the guest: the host's own is not passed wholesale (it
# may point HOME or TMPDIR at host paths the guest would write to).
# The line the init prints just before the command: the console is copied from there on (the
# boot messages before it stay in console.log).
COMMAND_MARK = "== uml-guest: the command starts"
PASSED_ENV = ("CI", "LANG", "LC_ALL", "PYTHONHASHSEED")


class UmlError(RuntimeError):
    """The guest could not run the command (one line, for the user)."""


@attrs.frozen
class GuestResult:
    """What came back from the guest."""

    returncode: int  # COMMAND's exit status in the guest
    seconds: float  # from starting the kernel to its exit
    run_dir: Path  # out/ holds status, console.log and whatever COMMAND left there


def guest_unavailable_reason() -> str | None:
    """Why no guest can boot here, or None when it can (needs linux.uml and kmod)."""
    if shutil.which(KERNEL) is None:
        return f"{KERNEL} is not installed (apt-get install user-mode-linux)"
    if not _modprobe():
        return "modprobe is not installed (apt-get install kmod)"
    try:
        _modules_dir()
    except UmlError as exc:
        return str(exc)
    return None


def _modprobe() -> str | None:
    for candidate in ("/usr/sbin/modprobe", "/sbin/modprobe"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("modprobe")


def _modules_dir() -> Path:
    """The guest kernel's module tree: /usr/lib/uml/modules/<its version>."""
    version = kernel_version()
    path = MODULES_ROOT / version
    if not (path / "modules.dep").is_file():
        raise UmlError(f"no modules for the UML kernel {version} in {path}")
    return path


def kernel_version() -> str:
    """The UML kernel's release, as `uname -r` will say it in the guest."""
    try:
        done = subprocess.run(
            [KERNEL, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UmlError(f"{KERNEL} --version: {exc}") from exc
    match = re.search(r"\d+\.\d+\S*", done.stdout)
    if done.returncode != 0 or match is None:
        raise UmlError(f"{KERNEL} --version said nothing usable: {done.stdout.strip()!r}")
    return match.group(0)


def _init_script(run_dir: Path, command: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    out, scratch = run_dir / "out", run_dir / "scratch"
    modules = " ".join(GUEST_MODULES)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    q = shlex.quote
    return f"""#!/bin/sh
# The init of a reconciler UML guest (reconciler/testing/uml.py). Runs as PID 1.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
status={q(str(out / "status"))}
scratch={q(str(scratch))}
say() {{ echo "$*" >> "$status"; }}
# sync: what the guest wrote to hostfs must reach the host before the kernel stops.
stop() {{ sync; halt -f || poweroff -f || echo o > /proc/sysrq-trigger; sleep 60; }}
need() {{ "$@" 2>> {q(str(out / "setup.log"))} || {{ say "setup-failed $*"; stop; }}; }}
say booted
need mount -t proc proc /proc
need mount -t sysfs sysfs /sys
need mount -t tmpfs -o mode=0755 tmpfs /run
need mount -t tmpfs -o mode=0755 tmpfs "$scratch"
release=$(uname -r)
need mkdir -p "$scratch/lib/modules/$release" "$scratch/home" "$scratch/tmp" "$scratch/bin"
need mount --bind /usr/lib/uml/modules/"$release" "$scratch/lib/modules/$release"
# What the kernel runs to autoload a module (ip link add ... type vxlan) must find them too.
printf '#!/bin/sh\\nexec modprobe -d %s "$@"\\n' "$scratch" > "$scratch/bin/modprobe"
need chmod 0755 "$scratch/bin/modprobe"
need sh -c "echo $scratch/bin/modprobe > /proc/sys/kernel/modprobe"
for module in {modules}; do
    if ! reason=$(modprobe -d "$scratch" "$module" 2>&1); then
        say "module-failed $module: $reason"
        stop
    fi
    [ -d "/sys/module/$module" ] || {{ say "module-failed $module: not in /sys/module"; stop; }}
done
say modules-loaded
ip link set lo up
cd {q(str(cwd))} || {{ say "setup-failed cd {cwd}"; stop; }}
say "command-started $(date +%s)"
echo {q(COMMAND_MARK)}
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$scratch/home" TMPDIR="$scratch/tmp" \\
    TERM=dumb PYTHONDONTWRITEBYTECODE=1 RECONCILER_UML_GUEST=1 RECONCILER_GUEST_OUT={q(str(out))} \\
    {exports} {" ".join(q(word) for word in command)} < /dev/null 2>&1
say "exit $?"
stop
"""


def run_in_guest(
    command: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    mem: str = DEFAULT_MEM,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    console: IO[str] | None = None,
    run_dir: Path | None = None,
    kernel_args: Sequence[str] = (),
) -> GuestResult:
    """Boot a guest, run `command` in it (from `cwd`), return its exit status.

    The guest's console (the command's output) is copied line by line to `console` as it
    comes, and kept in out/console.log. UmlError, with one line, when the guest did not
    boot, a module did not load, or it did not finish within `timeout` seconds.
    `kernel_args` are added to the guest kernel's command line.
    """
    reason = guest_unavailable_reason()
    if reason:
        raise UmlError(reason)
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="reconciler-uml-"))
    out = run_dir / "out"
    for sub in (out, run_dir / "scratch", run_dir / "uml"):
        sub.mkdir(parents=True, exist_ok=True)
    passed = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    init = run_dir / "init"
    where = (cwd or Path.cwd()).resolve()
    init.write_text(_init_script(run_dir, command, where, {**passed, **(env or {})}))
    init.chmod(0o755)
    # Unique on the machine: every process with it is killed at the end, and another run's
    # guest (another checkout's tests, at the same time) must never share it.
    umid = f"reconciler-{os.getpid()}-{os.urandom(4).hex()}"
    (run_dir / "umid").write_text(umid + "\n")
    argv = [
        KERNEL,
        f"mem={mem}",
        f"umid={umid}",
        "quiet",
        f"uml_dir={run_dir / 'uml'}",
        "rootfstype=hostfs",
        "rootflags=/",
        "rw",
        f"init={init}",
        "con=null",
        "con0=fd:0,fd:1",
        *kernel_args,  # after ours: the kernel takes the last of a repeated parameter
    ]
    log_path = out / "console.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        # In a session of its own: the kernel and its helper processes are one group to kill.
        runner = SubprocessRunner(env={**os.environ, "TMPDIR": _memory_dir(mem, run_dir)})
        kernel = runner.start(argv, stderr=subprocess.STDOUT)
        copier = threading.Thread(
            target=_copy_console, args=(kernel.stdout, log, console), daemon=True
        )
        copier.start()
        timed_out = False
        try:
            kernel.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_session(kernel, signal.SIGKILL)  # its helpers too, whatever happened
            kernel.wait()
            _end_every_process_of(umid)
            copier.join(timeout=10)
    seconds = time.monotonic() - started
    status = _read_status(out / "status")
    if timed_out:
        raise UmlError(
            f"the guest did not finish within {timeout:g} s ({_last_step(status)}; "
            f"console: {log_path})"
        )
    if "booted" not in status:
        raise UmlError(
            f"the guest did not boot ({KERNEL} exited {kernel.returncode}): "
            f"{_tail(log_path)} (console: {log_path})"
        )
    for line in status:
        if line.startswith(("module-failed ", "setup-failed ")):
            what, _, detail = line.partition(" ")
            if what == "module-failed":
                module, _, why = detail.partition(": ")
                raise UmlError(f"module {module} did not load in the guest: {why or '?'}")
            raise UmlError(f"the guest's setup failed: {detail} (see {out / 'setup.log'})")
    exits = [line.split()[1] for line in status if line.startswith("exit ")]
    if not exits:
        raise UmlError(
            f"the guest stopped before the command finished ({_last_step(status)}; "
            f"console: {log_path})"
        )
    return GuestResult(returncode=int(exits[-1]), seconds=seconds, run_dir=run_dir)


def _end_every_process_of(umid: str, limit: float = 20.0) -> None:
    """SIGKILL whatever still runs with this guest's umid and wait until none does: the
    kernel's helper processes (one per guest address space) need not share its process
    group, and SIGKILL is delivered, not waited for. None may outlive the run."""
    marker = f"umid={umid}".encode()
    deadline = time.monotonic() + limit
    clean_looks = 0
    while time.monotonic() < deadline and clean_looks < 5:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes().split(b"\0"):
                    left.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
        # Several clean looks in a row: a helper in the middle of dying can show no command
        # line for a moment and its own again... or not at all; only a quiet spell counts.
        clean_looks = clean_looks + 1 if not left else 0
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _memory_dir(mem: str, run_dir: Path) -> str:
    """Where the kernel keeps its memory file: /dev/shm when it has room for all of `mem`
    (a container's is often 64 MB, and a guest touching more would die of SIGBUS), else
    the run directory."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    match = re.fullmatch(r"(\d+)([KMG]?)", mem.upper())
    wanted = int(match.group(1)) * units.get(match.group(2), 1) if match else 1 << 30
    with contextlib.suppress(OSError):
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize > wanted * 1.25:
            return "/dev/shm"
    return str(run_dir)


def _copy_console(stream: IO[str] | None, log: IO[str], console: IO[str] | None) -> None:
    if stream is None:
        return
    copying = False
    for line in stream:
        log.write(line)
        log.flush()
        copying = copying or line.startswith(COMMAND_MARK)
        if console is not None and copying:
            console.write(line)
            console.flush()


def _read_status(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _last_step(status: list[str]) -> str:
    return f"last step: {status[-1]}" if status else "it never reached its init"


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no console output"
    return " | ".join(lines[-3:]) if lines else "no console output"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="uml-guest",
        description="Run COMMAND (from the current directory) in a user-mode Linux guest "
        "with sit, veth and vxlan loaded.",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    parser.add_argument("--mem", default=DEFAULT_MEM, help="guest memory (default 1G)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("command", nargs="+", help="the command to run in the guest")
    args = parser.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="reconciler-uml-"))
    try:
        result = run_in_guest(
            args.command, timeout=args.timeout, mem=args.mem, console=sys.stdout, run_dir=run_dir
        )
    except UmlError as exc:
        print(f"uml-guest: {exc}", file=sys.stderr)
        print(f"uml-guest: results and logs kept in {run_dir / 'out'}", file=sys.stderr)
        return 1
    print(f"uml-guest: the guest ran for {result.seconds:.0f} s; command exit {result.returncode}")
    if result.returncode != 0 or args.keep:
        print(f"uml-guest: results and logs kept in {run_dir / 'out'}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
