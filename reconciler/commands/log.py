"""`reconciler log verify|repair|stats`: check, mend and measure the event log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.commands._common import StateDirError, resolve_state_dir
from reconciler.errors import ReconcilerError
from reconciler.eventlog import repair, stats, verify
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["run"]

STATS_SCHEMA = "reconciler.log-stats/1"


def run(args: argparse.Namespace, env: Environment) -> int:
    state_dir = resolve_state_dir(args, env)  # StateDirError when it does not exist
    directory = events_dir(state_dir)
    if not directory.is_dir():  # "0 segments: ok" would pass a wrong path for a clean log
        raise StateDirError(f"no event log in {state_dir} ({directory} does not exist)")
    if args.log_command == "verify":
        return _verify(directory, env)
    if args.log_command == "repair":
        return _repair(directory, env)
    return _stats(directory, env, as_json=getattr(args, "json", False))


def _verify(directory: Path, env: Environment) -> int:
    report = verify(directory)
    out = env.stdout
    _print_ignored(report.ignored, env)
    for problem in report.problems:
        print(f"damaged: {problem}", file=out)
    if report.torn_tail is not None:
        print(f"torn tail (a writer cuts it on open): {report.torn_tail}", file=out)
    verdict = "ok" if report.ok else "DAMAGED (run `reconciler log repair`)"
    print(f"{directory}: {report.segments} segments, {report.records} records: {verdict}", file=out)
    return 0 if report.ok else 1


class RepairError(ReconcilerError):
    """`log repair` could not write (a full disk, a read-only file system)."""


def _repair(directory: Path, env: Environment) -> int:
    try:
        report = repair(directory)
    except OSError as exc:  # the segments it rewrote so far are whole; nothing was deleted
        where = f" ({exc.filename})" if exc.filename else ""
        raise RepairError(
            f"cannot repair {directory}: {exc.strerror or exc}{where}; nothing was deleted, "
            "run it again once the file system takes writes"
        ) from None
    out = env.stdout
    _print_ignored(report.ignored, env)
    for problem in report.problems:
        print(f"damaged: {problem}", file=out)
    for segment, aside in report.moved_aside:
        print(
            f"moved {segment.name} aside to {aside.name}; rewrote it from intact frames", file=out
        )
    for segment, aside in report.set_aside:
        print(f"moved {segment.name} aside to {aside.name}: it held no records", file=out)
    if report.lost:
        print(
            f"{len(report.lost)} records unreadable, each replaced by a lost-record marker "
            f"(sequence {_ranges(report.lost)})",
            file=out,
        )
    if report.torn_tail is not None:
        print(f"cut torn tail: {report.torn_tail} (bytes kept in a .broken file)", file=out)
    if not report.moved_aside and not report.set_aside and report.torn_tail is None:
        print(f"{directory}: nothing to repair", file=out)
    else:
        print(
            f"{directory}: repaired, {report.salvaged} records salvaged, nothing deleted", file=out
        )
    return 0


def _print_ignored(ignored: list[tuple[Path, str]], env: Environment) -> None:
    for path, what in ignored:
        print(f"ignored: {path}: {what} named like a segment (left alone)", file=env.stdout)


def _stats(directory: Path, env: Environment, *, as_json: bool) -> int:
    figures = stats(directory)
    if as_json:
        doc = {"schema": STATS_SCHEMA, "directory": str(directory), **figures.as_dict()}
        print(json.dumps(doc, sort_keys=True), file=env.stdout)
        return 0
    out = env.stdout
    print(f"directory:  {directory}", file=out)
    print(f"segments:   {figures.segments}", file=out)
    print(f"events:     {figures.events}", file=out)
    if figures.first_seq is not None:
        print(f"sequence:   {figures.first_seq} .. {figures.last_seq}", file=out)
    print(f"bytes:      {figures.bytes}", file=out)
    print(f"first time: {_when(figures.first_time)}", file=out)
    print(f"last time:  {_when(figures.last_time)}", file=out)
    return 0


def _when(at: float | None) -> str:
    return iso(at) or "-"


def _ranges(numbers: list[int]) -> str:
    spans: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(spans)
