"""`reconciler report [--since T] [--until T] [-o FILE]`: the log as one HTML page.

The window defaults to the last 7 days up to now; when --since is not given and the log
begins later, it starts at the log's first fact (a young log fills the page, not a sliver
of it). Times follow the log's order, as in `replay` (see `model.incidents`). The log is
folded from its first record with the same fold as `replay`, so the state at `--since` is
exact; the extraction is `model.incidents.extract`, the page `render.report.render_report`.
`-o FILE` is written atomically (0644); without it the page goes to stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.atomicfile import probe_writable, write_atomically
from reconciler.commands.replay import TimeArgumentError, parse_time
from reconciler.errors import ReconcilerError
from reconciler.history import first_seq, iter_envelopes, log_fold_error
from reconciler.model.incidents import extract
from reconciler.render.report import render_report
from reconciler.statedir import events_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["DEFAULT_WINDOW", "ReportOutputError", "run"]

DEFAULT_WINDOW = 7 * 86_400.0


class ReportOutputError(ReconcilerError):
    """The page could not be written where -o says."""


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.commands._common import StateDirError, resolve_state_dir

    now = time.time()
    since = parse_time("--since", args.since) if args.since else None
    until = parse_time("--until", args.until) if args.until else now
    if since is not None and until < since:
        if args.until is None:
            raise TimeArgumentError("--since is in the future (--until defaults to now)")
        raise TimeArgumentError("--until is before --since")
    output = (env.cwd / Path(args.output)) if args.output else None
    if output is not None:
        _check_writable(output)
    state_dir = resolve_state_dir(args, env)
    if not events_dir(state_dir).is_dir():  # as replay says it: no log is no story
        raise StateDirError(f"no event log in {state_dir} ({events_dir(state_dir)} does not exist)")
    notes = []
    first = first_seq(state_dir)
    if first is not None and first > 1:
        notes.append(
            f"History before #{first} was removed by retention: states are folded from #{first}."
        )
    if since is None:
        since = max(until - DEFAULT_WINDOW, _first_fact_at(state_dir, until))
    report = extract(iter_envelopes(state_dir), since=since, until=until, on_error=log_fold_error)
    page = render_report(report, generated=now, notes=notes)
    if output is None:
        env.stdout.write(page)
        return 0
    try:
        write_atomically(output, page.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise ReportOutputError(_cannot_write(output, exc)) from None
    print(output, file=env.stdout)
    return 0


def _first_fact_at(state_dir: Path, until: float) -> float:
    """When the log's first fact was recorded (`until` when it holds none)."""
    for envelope in iter_envelopes(state_dir):
        return min(envelope.at, until)
    return until


def _check_writable(output: Path) -> None:
    """Refuse an -o that cannot be written before the (possibly long) fold, not after."""
    if output.is_dir():
        raise ReportOutputError(f"-o {output}: is a directory")
    parent = output.parent
    if not parent.is_dir():
        raise ReportOutputError(f"-o {output}: directory {parent} does not exist")
    try:
        probe_writable(parent, output.name)
    except OSError as exc:
        raise ReportOutputError(_cannot_write(output, exc)) from None


def _cannot_write(output: Path, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"-o {output}: cannot write: {reason}"
