"""The command line: `reconciler <command>`. Each command lives in reconciler/commands/.

`main(argv, env) -> ExitStatus`: streams and environment are injected, so tests run the
real CLI in-process. Errors reconciler raises on purpose print as one line (a config error
as one line per problem), never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO, cast

import attrs
from attrs import field, frozen

from reconciler import __version__
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.outside_text import SafeStream

__all__ = ["Environment", "ExitStatus", "build_parser", "main"]


class ExitStatus(enum.IntEnum):
    """Documented in the README. 2 means "changes pending" (diff) or "an action failed" (apply);
    a usage error is 1, like any other error, so a script never takes a typo for a change."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    INTERRUPTED = 130
    PIPE_CLOSED = 141  # as a process killed by SIGPIPE


@frozen
class Environment:
    stdin: TextIO = field(factory=lambda: sys.stdin)
    stdout: TextIO = field(factory=lambda: sys.stdout)
    stderr: TextIO = field(factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(factory=lambda: dict(os.environ))
    cwd: Path = field(factory=Path.cwd)


# command name -> module in reconciler.commands exposing `run(args, env) -> int`
_COMMANDS = {
    "run": "run",
    "apply": "apply",
    "status": "status",
    "doctor": "doctor",
    "diff": "diff",
    "replay": "replay",
    "report": "report",
    "check-config": "check_config",
    "init": "init",
    "metrics": "metrics",
    "log": "log",
    "lab": "lab",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="configuration file (default: $RECONCILER_CONFIG, ./etc/reconciler.conf, "
        "/etc/reconciler.conf)",
    )
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir", metavar="DIR", help="state directory (default: the config's state_dir)"
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keeps a router's Hurricane Electric IPv6 tunnel alive.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    sub.add_parser("apply", parents=[common, as_json], help="observe, reconcile once, and exit")
    sub.add_parser(
        "status",
        parents=[common, state, as_json],
        help="observed state, last actions, what backoff holds back",
    )
    doctor = sub.add_parser(
        "doctor",
        parents=[common, as_json],
        help="why is there no IPv6? checks each layer, bottom up (reads, changes nothing)",
    )
    doctor.add_argument(
        "--he-ping-source",
        metavar="ADDR",
        help="where HE's pings come from (default 66.220.2.74; a lab sets its own)",
    )
    diff = sub.add_parser(
        "diff", parents=[common, state, as_json], help="show what would be done (like a plan)"
    )
    diff.add_argument(
        "--observe", action="store_true", help="observe everything first (acts on nothing)"
    )
    replay = sub.add_parser(
        "replay", parents=[common, state, as_json], help="tell the story the event log holds"
    )
    replay.add_argument("--since", metavar="T", help="start at time T (ISO 8601, UTC default)")
    replay.add_argument("--until", metavar="T", help="stop at time T")
    replay.add_argument("--at", metavar="T", help="print the state as it was at time T")
    replay.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show busy minutes' counts of unchanged observations as lines of their own",
    )
    report = sub.add_parser(
        "report", parents=[common, state], help="the log as one HTML page (timeline, incidents)"
    )
    report.add_argument("--since", metavar="T", help="start at time T (default: 7 days ago)")
    report.add_argument("--until", metavar="T", help="end at time T (default: now)")
    report.add_argument("-o", "--output", metavar="FILE", help="write the page to FILE")
    check = sub.add_parser(
        "check-config", parents=[common], help="validate the configuration and exit"
    )
    check.add_argument(
        "--unit",
        metavar="FILE",
        help="the systemd unit to check paths against (default: systemctl cat reconciler.service)",
    )
    _add_init(sub, as_json)
    sub.add_parser(
        "metrics", parents=[common, state], help="the Prometheus metrics, computed from the log"
    )

    log = sub.add_parser("log", help="inspect and mend the event log")
    log_sub = log.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    log_sub.add_parser(
        "verify", parents=[common, state], help="check every frame; exit 1 if damaged"
    )
    log_sub.add_parser(
        "repair", parents=[common, state], help="salvage intact frames; deletes nothing"
    )
    log_sub.add_parser("stats", parents=[common, state, as_json], help="segments, events, bytes")

    lab = sub.add_parser("lab", help="the network-namespace lab (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    lab_sub.add_parser("demo", help="build the lab, break the WAN, watch the repair, tear down")
    return parser


def _add_init(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], as_json: argparse.ArgumentParser
) -> None:
    init = sub.add_parser(
        "init",
        parents=[as_json],
        help="write a configuration from the old setup, from HE, or from defaults",
    )
    init.add_argument("-o", "--output", metavar="PATH", help="where (default /etc/reconciler.conf)")
    init.add_argument("--platform", choices=("openbsd", "linux"), help="default: this system's")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.add_argument("--tunnel-id", metavar="ID", help="HE's numeric tunnel id")
    init.add_argument("--username", metavar="NAME", help="your tunnelbroker.net login")
    init.add_argument(
        "--key-file",
        metavar="FILE",
        help="the update key's file (default /etc/reconciler/tunnelbroker.key); "
        "made from standard input when it does not exist",
    )
    init.add_argument(
        "--wan", metavar="IF", help="the WAN interface (default: the IPv4 default route's)"
    )
    init.add_argument("--tunnel-interface", metavar="IF", help="the tunnel interface")
    init.add_argument("--state-dir", metavar="DIR", help="default: the platform's")
    init.add_argument("--from-he", action="store_true", help="read the tunnel from HE's tunnelInfo")
    init.add_argument("--info-url", metavar="URL", help="where tunnelInfo.php is (tests, mirrors)")
    init.add_argument("--ca-file", metavar="FILE", help="a private CA for --info-url (tests)")
    init.add_argument("--from-hostname-file", metavar="FILE", help="an OpenBSD /etc/hostname.gif0")
    init.add_argument(
        "--from-ifstated", metavar="FILE", help="an /etc/ifstated.conf with ping tests"
    )
    init.add_argument("--from-link", metavar="NAME", help="an existing Linux sit or vxlan link")
    init.add_argument(
        "--from-script",
        metavar="FILE",
        action="append",
        help="a script holding the tunnelbroker update URL (id, username, key)",
    )


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = _printable(env or Environment())
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or --version (0), or a usage error argparse printed
        # A usage error must not read as diff's "changes pending" (2): it is an error.
        return ExitStatus.OK if not exc.code else ExitStatus.ERROR
    module = importlib.import_module(f"reconciler.commands.{_COMMANDS[args.command]}")
    try:
        return int(module.run(args, env))
    except BrokenPipeError:  # `reconciler replay | head`: the reader has seen enough
        _silence_stdout(env)
        return ExitStatus.PIPE_CLOSED
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=env.stderr)
        return ExitStatus.ERROR
    except ReconcilerError as exc:
        print(f"reconciler: {exc}", file=env.stderr)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only on request
        if env.environ.get("RECONCILER_DEBUG"):
            raise
        print(
            f"reconciler: internal error: {type(exc).__name__}: {exc} "
            "(set RECONCILER_DEBUG=1 for a traceback)",
            file=env.stderr,
        )
        return ExitStatus.ERROR


def _printable(env: Environment) -> Environment:
    """`env` with stdout and stderr that show control characters as `\\xNN` (newline and
    tab pass): whatever a command prints (a fact from an old log, a path, a message), the
    terminal is never driven by it. JSON is unchanged (json.dumps escapes controls)."""
    return attrs.evolve(
        env,
        stdout=cast(TextIO, SafeStream(env.stdout)),
        stderr=cast(TextIO, SafeStream(env.stderr)),
    )


def _silence_stdout(env: Environment) -> None:
    """Point a closed stdout at /dev/null so flushing it at exit raises nothing more."""
    stdout = env.stdout.target if isinstance(env.stdout, SafeStream) else env.stdout
    if stdout is sys.stdout:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
