"""What several commands share: finding the configuration and the state directory.

Commands that only read the event log (replay, log, status) must work while the rest of the
configuration is broken (a key file with the wrong mode, a typo elsewhere): the log is where
a post-mortem starts. `resolve_state_dir` then falls back to the file's `[daemon] state_dir`
alone, saying so in one stderr line. A state directory that does not exist is an error: a
typo'd path must not read as an empty, healthy log.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import ConfigError, ReconcilerError

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.eventlog import EventLog
    from reconciler.model.config import Config

__all__ = [
    "StateDirError",
    "load_config_for",
    "open_log_for_writing",
    "resolve_state_dir",
    "state_dir_from_toml",
]


class StateDirError(ReconcilerError):
    """The state directory a command should read does not exist (or is not a directory)."""


def load_config_for(args: argparse.Namespace, env: Environment) -> Config:
    """The configuration named by -c, $RECONCILER_CONFIG or the search order (ConfigError)."""
    from reconciler.configfile import find_config_path, load_config

    path = find_config_path(getattr(args, "config", None), env.environ, env.cwd)
    return load_config(path)


def resolve_state_dir(
    args: argparse.Namespace,
    env: Environment,
    config: Config | None = None,
    *,
    must_exist: bool = True,
) -> Path:
    """--state-dir when given, else `config`'s state_dir, else the configuration file's.

    Without `config`, the file is loaded; when it is invalid, only `[daemon] state_dir` is
    read from it (one stderr line says the rest is invalid), and when even that cannot be
    read the original ConfigError stands. The directory must exist (StateDirError) unless
    `must_exist` is false (a command that is about to write the log creates it).
    """
    given = getattr(args, "state_dir", None)
    if given:
        state_dir = (env.cwd / Path(given)).resolve()
    elif config is not None:
        state_dir = config.daemon.state_dir
    else:
        state_dir = _state_dir_from_config(args, env)
    if must_exist:
        _require_directory(state_dir, "--state-dir" if given else "daemon.state_dir")
    return state_dir


def state_dir_from_toml(path: Path) -> Path | None:
    """`[daemon] state_dir` of the TOML file at `path`, resolved against its directory; None
    when the file cannot be read or parsed or holds no such string."""
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: bad UTF-8 or TOML, huge ints
        return None
    daemon = document.get("daemon")
    value = daemon.get("state_dir") if isinstance(daemon, dict) else None
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    try:
        expanded = Path(value).expanduser()
    except RuntimeError:  # "~nosuchuser/x"
        return None
    # As the loader resolves it (normpath, not resolve: a symlink stays as configured).
    return Path(os.path.normpath(path.resolve().parent / expanded))


def _state_dir_from_config(args: argparse.Namespace, env: Environment) -> Path:
    from reconciler.configfile import find_config_path, load_config

    path = find_config_path(getattr(args, "config", None), env.environ, env.cwd)
    try:
        return load_config(path).daemon.state_dir
    except ConfigError as exc:
        fallback = state_dir_from_toml(path)
        if fallback is None:
            raise
        count = len(exc.problems)
        print(
            f"reconciler: {path}: the rest of the configuration is invalid "
            f"({count} problem{'s' if count != 1 else ''}, see `reconciler check-config`); "
            f"reading the event log in {fallback}",
            file=env.stderr,
        )
        return fallback


def _require_directory(state_dir: Path, origin: str) -> None:
    if not state_dir.exists():
        raise StateDirError(
            f"no event log: state directory {state_dir} does not exist (from {origin})"
        )
    if not state_dir.is_dir():
        raise StateDirError(f"state directory {state_dir} is not a directory (from {origin})")


def open_log_for_writing(state_dir: Path, origin: str = "daemon.state_dir") -> EventLog:
    """The event log in `state_dir`, opened for writing (created when missing).

    An OSError (a state_dir under /proc, a read-only file system, no permission) becomes one
    line naming `origin` and the reason; LogLockedError and CorruptLogError pass as they are.
    """
    from reconciler.eventlog import EventLog
    from reconciler.statedir import events_dir

    try:
        return EventLog.open(events_dir(state_dir))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        raise StateDirError(
            f"{origin}: cannot open the event log in {state_dir}: {reason}{where}"
        ) from None
