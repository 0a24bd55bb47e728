"""`reconciler doctor`: why is there no IPv6? Eleven checks, bottom up, to the first failure.

Each check prints one line: its verdict and the evidence; the first that fails also says
what to do, and the checks after it are not run (they rest on it). It reads and probes,
and changes nothing: no fact is recorded, no link or route touched, HE only asked for its
tunnelInfo (when `info_url` is set). Exit 0 when nothing failed, 2 when a check did (its
number and name in `--json`), 1 when it cannot run (no configuration file to read).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.verdict import CheckResult, Diagnosis

__all__ = ["run"]

_MARK = {
    "pass": "ok  ",
    "fail": "FAIL",
    "warn": "warn",
    "unknown": "??  ",
    "skipped": "skip",
    "not-run": "    ",
}


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.configfile import find_config_path, load_config
    from reconciler.model.verdict import CHECKS, CheckResult, Diagnosis

    started = time.monotonic()
    timings: list[float] = []
    path = find_config_path(getattr(args, "config", None), env.environ, env.cwd)
    try:
        config = load_config(path)
    except ConfigError as exc:
        if not path.is_file():
            raise  # nothing to check: the CLI prints it, exit 1
        first = CheckResult.of(
            "config",
            "fail",
            exc.problems[0] if exc.problems else f"{path} is invalid",
            "`reconciler check-config` lists every problem",
        )
        rest = [CheckResult.of(s.name, "not-run", "after the failure above") for s in CHECKS[1:]]
        diagnosis = Diagnosis((first, *rest))
    else:
        from reconciler.world.diagnose.checks import HE_PING_SOURCE, Doctor

        key_file = config.tunnelbroker.update_key_file
        first = CheckResult.of(
            "config",
            "pass",
            f"{path} valid; the key file {key_file} is 0600 and holds a key",
        )
        doctor = Doctor(config, he_ping_source=args.he_ping_source or HE_PING_SOURCE)
        diagnosis = doctor.run(first)
        timings = doctor.timings
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(_json(diagnosis, elapsed, timings), indent=2), file=env.stdout)
    else:
        _print_text(diagnosis, elapsed, env)
    return diagnosis.exit_code


def _json(diagnosis: Diagnosis, elapsed: float, timings: list[float]) -> dict[str, Any]:
    failed = diagnosis.failed
    return {
        "schema": "reconciler.doctor/1",
        "ok": failed is None,
        "failed": None
        if failed is None
        else {"number": failed.number, "name": failed.name, "advice": failed.advice},
        "seconds": round(elapsed, 3),
        "checks": [
            {
                "number": c.number,
                "name": c.name,
                "title": c.title,
                "status": c.status,
                "evidence": c.evidence,
                "advice": c.advice,
                "seconds": round(timings[i], 3) if i < len(timings) else None,
            }
            for i, c in enumerate(diagnosis.checks)
        ],
    }


def _print_text(diagnosis: Diagnosis, elapsed: float, env: Environment) -> None:
    for check in diagnosis.checks:
        print(_line(check), file=env.stdout)
    failed = diagnosis.failed
    if failed is None:
        print(f"\nIPv6 should work: every check passed ({elapsed:.2f} s).", file=env.stdout)
        return
    print(f"\nThe first failing check: {failed.number}, {failed.title}.", file=env.stdout)
    if failed.advice:
        print(f"What to do: {failed.advice}", file=env.stdout)


def _line(check: CheckResult) -> str:
    text = f"{_MARK[check.status]} {check.number:>2} {check.title}"
    if check.status == "not-run":
        return f"{text}: not run"
    return f"{text}: {check.evidence}"
