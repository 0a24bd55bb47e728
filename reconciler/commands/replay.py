"""`reconciler replay [--since T] [--until T] [--at T] [--json]`: the log as a post-mortem.

The whole log is folded from its first record (so the state at every entry is exact, unless
retention removed older segments: then a note says from where the fold starts) and streamed:
entries are printed as they are read, never collected. `--at T` prints the state as it was
at T instead. Times are ISO 8601 (UTC when no zone is given) or epoch seconds.

Ranges follow the log's order, not raw timestamps: a router without a real-time clock
records facts stamped in the past until NTP steps its clock, so times in the log need not
rise. The range runs from the first fact (in log order) stamped at or after --since to the
last one stamped at or before --until, and --at shows the state after the last fact stamped
at or before T. A fact stamped out of order inside that span is shown where it was recorded.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reconciler.commands._common import StateDirError
from reconciler.errors import ReconcilerError
from reconciler.history import first_seq, iter_envelopes, log_fold_error
from reconciler.model.config import ReconcileConfig
from reconciler.model.facts import Envelope, ObservationsCounted
from reconciler.model.state import ObservedState, fold
from reconciler.model.telemetry import Telemetry
from reconciler.render.replay import (
    BUSY_SPAN,
    REPLAY_SCHEMA,
    counted_line,
    counted_span,
    entry_json,
    entry_lines,
    folded_counts,
    is_notable,
    quiet_line,
    state_changes,
    state_json,
    state_text,
)
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["NoFactsError", "TimeArgumentError", "parse_time", "run"]


class TimeArgumentError(ReconcilerError):
    """A --since/--until/--at value that is not a time."""


class NoFactsError(ReconcilerError):
    """--at names a time before the first fact: there is no state to show."""


def parse_time(option: str, text: str) -> float:
    """Epoch seconds for an ISO 8601 time (UTC unless it names a zone) or a plain number.

    Only times a UTC datetime can show are accepted (nan, inf, 1e20 are not): every value
    ends up printed, and rendering is no place to find out it cannot be.
    """
    try:
        seconds = float(text)
    except ValueError:
        seconds = _parse_iso(option, text)
    try:
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise TimeArgumentError(
            f"{option}: {text!r} is not a time between years 1 and 9999 (UTC)"
        ) from None
    return seconds


def _parse_iso(option: str, text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeArgumentError(
            f"{option}: {text!r} is not a time (use ISO 8601, e.g. 2024-05-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        return math.nan


def run(args: argparse.Namespace, env: Environment) -> int:
    since = parse_time("--since", args.since) if args.since else None
    until = parse_time("--until", args.until) if args.until else None
    at = parse_time("--at", args.at) if args.at else None
    if at is not None and (since is not None or until is not None):
        raise TimeArgumentError("--at prints one state: it does not go with --since/--until")
    if since is not None and until is not None and until < since:
        raise TimeArgumentError("--until is before --since")
    state_dir = _state_dir(args, env)
    if not events_dir(state_dir).is_dir():  # as status and log say it: no log is no story
        raise StateDirError(f"no event log in {state_dir} ({events_dir(state_dir)} does not exist)")
    first = first_seq(state_dir)
    trimmed = first if first is not None and first > 1 else None
    if trimmed is not None and not args.json:
        print(
            f"note: history before #{trimmed} was removed by retention; "
            f"states are folded from #{trimmed}",
            file=env.stdout,
        )
    if at is not None:
        return _print_state_at(state_dir, at, args.json, env.stdout, trimmed)
    return _print_timeline(
        state_dir,
        since,
        until,
        args.json,
        env.stdout,
        trimmed,
        _reconcile_bounds(args, env),
        verbose=bool(getattr(args, "verbose", False)),
    )


def _state_dir(args: argparse.Namespace, env: Environment) -> Path:
    from reconciler.commands._common import resolve_state_dir

    return resolve_state_dir(args, env)


def _reconcile_bounds(args: argparse.Namespace, env: Environment) -> ReconcileConfig:
    """[reconcile] of the configuration, which says when the restart limit needs attention;
    the defaults when the configuration cannot be loaded (replay must work without it)."""
    from reconciler.commands._common import load_config_for

    try:
        return load_config_for(args, env).reconcile
    except ReconcilerError:
        return ReconcileConfig()


def _print_state_at(
    state_dir: Path, at: float, as_json: bool, out: TextIO, trimmed: int | None
) -> int:
    from reconciler.checkpoints import last_seq_until, start_at_or_before

    # The state after the last fact (in log order) stamped <= at, folded from the newest
    # checkpoint before it: the index finds that fact without reading the whole log.
    end = last_seq_until(state_dir, at)
    if not end:
        raise NoFactsError(f"no facts at or before {iso(at)} in {state_dir}")
    then, start, near = start_at_or_before(state_dir, end)
    for envelope in iter_envelopes(state_dir, start + 1, near):
        if envelope.seq > end:
            break
        then = fold(then, envelope, log_fold_error)
    if as_json:
        document = {**state_json(then, at), "history_from": trimmed or 1}
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
    else:
        out.write(state_text(then, at))
    return 0


def _last_seq_until(state_dir: Path, until: float) -> int:
    """The last sequence number stamped at or before `until` (0: none), found through the
    checkpoint index (reconciler.checkpoints; the whole log is read without one)."""
    from reconciler.checkpoints import last_seq_until

    return last_seq_until(state_dir, until)


def _flush_quiet(quiet: int, counted: list[Envelope], out: TextIO) -> int:
    """Print what was only counted since the last entry (and forget it): 0."""
    if quiet:
        print(quiet_line(quiet), file=out)
    if counted:
        print(counted_line(counted), file=out)
        counted.clear()
    return 0


def _busy(counted: list[Envelope], news_at: float) -> bool:
    """Whether the counts were flushed by a busy minute: their observations span little and
    news follows them closely (a quiet stretch's counts keep their own line)."""
    if not counted:
        return False
    first, last = counted_span(counted)
    return last - first <= BUSY_SPAN and news_at - last <= BUSY_SPAN


def _print_timeline(
    state_dir: Path,
    since: float | None,
    until: float | None,
    as_json: bool,
    out: TextIO,
    trimmed: int | None,
    reconcile: ReconcileConfig,
    verbose: bool = False,
) -> int:
    state = ObservedState()
    # The notifications each fact caused, told as the daemon tells its hooks.
    telemetry = Telemetry.starting_on(state, reconcile)
    shown = quiet = 0
    counted: list[Envelope] = []  # consecutive ObservationsCounted, printed as one line
    if as_json:
        out.write(
            f'{{"schema": "{REPLAY_SCHEMA}", "since": {json.dumps(iso(since))}, '
            f'"until": {json.dumps(iso(until))}, "history_from": {trimmed or 1}, "entries": ['
        )
    end = _last_seq_until(state_dir, until) if until is not None else None
    started = since is None
    start, near = 0, None
    if since is not None:
        from reconciler.checkpoints import start_before

        # Every fact up to the checkpoint is stamped before --since: the window starts after.
        state, start, near = start_before(state_dir, since)
        telemetry = Telemetry.starting_on(state, reconcile)
    for envelope in iter_envelopes(state_dir, start + 1, near):
        if end is not None and envelope.seq > end:
            break
        after = fold(state, envelope, log_fold_error)
        notices = telemetry.observe(state, envelope, after)
        started = started or (since is not None and envelope.at >= since)
        if started:
            changes = state_changes(state, after)
            if as_json:
                entry = entry_json(envelope, changes, notices)
                out.write(("," if shown else "") + "\n  " + json.dumps(entry))
                shown += 1
            elif isinstance(envelope.fact, ObservationsCounted) and not notices:
                counted.append(envelope)
            elif is_notable(envelope, changes) or notices:
                folded = ""
                if not verbose and _busy(counted, envelope.at):
                    folded = folded_counts(counted)
                    counted.clear()
                quiet = _flush_quiet(quiet, counted, out)
                lines = entry_lines(envelope, changes, after, notices)
                lines[0] += folded
                print("\n".join(lines), file=out)
                shown += 1
            else:
                if counted:
                    _flush_quiet(0, counted, out)
                quiet += 1
        state = after
    if as_json:
        out.write(f'\n], "count": {shown}}}\n')
        return 0
    had_counts = bool(counted)
    _flush_quiet(quiet, counted, out)
    if not shown and not quiet and not had_counts:
        print("The event log holds nothing in this time range.", file=out)
    return 0
