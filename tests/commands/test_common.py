"""Finding the state directory: the fallback to [daemon] state_dir, and a missing directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.commands._common import state_dir_from_toml
from tests.commands.test_diff import run_cli, story_copy
from tests.config.test_configfile import VALID, write_config


def _broken_config(tmp_path: Path, state: Path) -> Path:
    """A config whose key file others may read (invalid), naming `state` as its state dir."""
    text = VALID.replace('state_dir = "state"', f'state_dir = "{state.name}"')
    return write_config(tmp_path, text, key_mode=0o644)


def test_state_dir_from_toml_resolves_against_the_files_directory(tmp_path: Path) -> None:
    """A relative [daemon] state_dir resolves against the config file's directory."""
    path = tmp_path / "etc" / "reconciler.conf"
    path.parent.mkdir()
    path.write_text('[daemon]\nstate_dir = "../state"\nbogus = 1\n')
    assert state_dir_from_toml(path) == tmp_path / "state"


@pytest.mark.parametrize(
    "text", ["[daemon]\nlog = 'stderr'\n", "[daemon]\nstate_dir = 3\n", "not = [toml\n", ""]
)
def test_state_dir_from_toml_none_without_a_usable_value(tmp_path: Path, text: str) -> None:
    """No [daemon] state_dir string (or no TOML at all) gives None, not a guess."""
    path = tmp_path / "reconciler.conf"
    path.write_text(text)
    assert state_dir_from_toml(path) is None


def test_replay_reads_the_log_when_the_rest_of_the_config_is_invalid(tmp_path: Path) -> None:
    """replay with a bad key-file mode still reads the log, with one stderr line saying why."""
    state = story_copy(tmp_path)
    config = _broken_config(tmp_path, state)
    code, out, err = run_cli(["replay", "-c", str(config)], tmp_path)
    assert code == 0, err
    assert "restart-tunnel" in out
    assert len(err.splitlines()) == 1
    assert "rest of the configuration is invalid" in err and str(state) in err


def test_log_stats_reads_the_log_when_the_rest_of_the_config_is_invalid(tmp_path: Path) -> None:
    """log stats finds the log through [daemon] state_dir alone."""
    state = story_copy(tmp_path)
    config = _broken_config(tmp_path, state)
    code, out, err = run_cli(["log", "stats", "--json", "-c", str(config)], tmp_path)
    assert code == 0, err
    assert json.loads(out)["events"] == 22
    assert "rest of the configuration is invalid" in err


def test_status_shows_the_log_when_the_rest_of_the_config_is_invalid(tmp_path: Path) -> None:
    """status shows the observed state and says the plan needs the configuration."""
    state = story_copy(tmp_path)
    config = _broken_config(tmp_path, state)
    code, out, err = run_cli(["status", "--json", "-c", str(config)], tmp_path)
    assert code == 0, err
    report = json.loads(out)
    assert report["observed"]["wan"]["address"] == "203.0.113.9"
    assert report["held"] is None and "update_key_file" in report["config_problem"]


def test_diff_still_needs_the_full_config(tmp_path: Path) -> None:
    """diff plans from the config, so a bad key file is an error even with a readable log."""
    state = story_copy(tmp_path)
    config = _broken_config(tmp_path, state)
    code, out, err = run_cli(["diff", "-c", str(config)], tmp_path)
    assert code == 1 and out == ""
    assert "update_key_file" in err and "rest of the configuration" not in err


def test_an_unreadable_config_without_state_dir_is_the_config_error(tmp_path: Path) -> None:
    """With no [daemon] state_dir to fall back on, the configuration's problems are the error."""
    config = tmp_path / "reconciler.conf"
    config.write_text("[daemon]\nplatform = 7\n")
    code, out, err = run_cli(["replay", "-c", str(config)], tmp_path)
    assert code == 1 and out == ""
    assert "daemon.platform" in err


@pytest.mark.parametrize(
    "command",
    [
        ["replay"],
        ["replay", "--at", "2024-05-01T12:00:00Z"],
        ["status"],
        ["diff"],
        ["log", "verify"],
        ["log", "repair"],
        ["log", "stats"],
    ],
)
def test_a_missing_state_dir_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    """A state dir that does not exist is an error, never an empty, healthy log."""
    config = write_config(tmp_path)
    missing = tmp_path / "no-such-dir"
    code, out, err = run_cli([*command, "-c", str(config), "--state-dir", str(missing)], tmp_path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and str(missing) in err and "does not exist" in err
    assert not missing.exists()


def test_a_missing_configured_state_dir_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Without --state-dir, a configured state_dir that does not exist is the same error."""
    config = write_config(tmp_path)
    code, out, err = run_cli(["replay", "-c", str(config)], tmp_path)
    assert code == 1 and out == ""
    assert "daemon.state_dir" in err and "does not exist" in err


@pytest.mark.parametrize("command", [["run"], ["apply"], ["diff", "--observe"]])
def test_a_state_dir_that_cannot_be_created_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """A state_dir under /proc: one line naming daemon.state_dir and why, exit 1."""
    state = f"/proc/rc-no-such-dir-{os.getpid()}/state"
    config = write_config(tmp_path, VALID.replace('state_dir = "state"', f'state_dir = "{state}"'))
    code, out, err = run_cli([*command, "-c", str(config)], tmp_path)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "internal error" not in err
    assert "daemon.state_dir" in err and state in err and "No such file or directory" in err
