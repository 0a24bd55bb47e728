"""`reconciler lab demo`: the network-namespace lab, shown live (needs root)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.cli import Environment

__all__ = ["run"]


def run(args: argparse.Namespace, env: Environment) -> int:
    """Dispatch `lab ACTION`; only `demo` exists."""
    from reconciler.lab.demo import run_demo

    if args.lab_command == "demo":
        return run_demo(env.stdout, env.stderr)
    print(f"reconciler lab: unknown action {args.lab_command!r}", file=env.stderr)
    return 1
