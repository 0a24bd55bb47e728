"""What several commands share: finding the configuration and the state directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.model.config import Config

__all__ = ["load_config_for", "resolve_state_dir"]


def load_config_for(args: argparse.Namespace, env: Environment) -> Config:
    """The configuration named by -c, $RECONCILER_CONFIG or the search order (ConfigError)."""
    from reconciler.configfile import find_config_path, load_config

    path = find_config_path(getattr(args, "config", None), env.environ, env.cwd)
    return load_config(path)


def resolve_state_dir(args: argparse.Namespace, env: Environment) -> Path:
    """--state-dir when given, else the configuration's state_dir."""
    given = getattr(args, "state_dir", None)
    if given:
        return (env.cwd / Path(given)).resolve()
    return load_config_for(args, env).daemon.state_dir
