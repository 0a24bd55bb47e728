"""The CLI shell: exit statuses and one-line errors, never a traceback."""

from __future__ import annotations

import argparse
import io
import sys
import types

import pytest

from reconciler import cli
from reconciler.cli import Environment, ExitStatus, main
from reconciler.errors import ConfigError, ReconcilerError


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, Environment(stdout=out, stderr=err, environ=environ or {}))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fake_command(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Route `reconciler check-config` to a module the test controls."""
    module = types.ModuleType("reconciler.commands.check_config")
    monkeypatch.setitem(sys.modules, "reconciler.commands.check_config", module)
    return module


def test_a_usage_error_is_an_error_not_changes_pending() -> None:
    """A typo exits 1 (never diff's 2, "changes pending"), with argparse's usage line on the
    injected stderr and no traceback."""
    code, out, err = run(["diff", "--typo"])
    assert code == ExitStatus.ERROR
    assert "unrecognized arguments: --typo" in err
    assert "Traceback" not in err and out == ""


def test_help_exits_0_on_the_injected_stdout() -> None:
    """--help prints to the environment's stdout and exits 0."""
    code, out, _ = run(["--help"])
    assert code == 0
    assert "usage: reconciler" in out


def test_a_closed_pipe_ends_quietly(fake_command: types.ModuleType) -> None:
    """When the reader of our output goes away (`| head`), exit 141 without a message."""

    def write_forever(args: argparse.Namespace, env: Environment) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    fake_command.run = write_forever
    code, _, err = run(["check-config"])
    assert (code, err) == (ExitStatus.PIPE_CLOSED, "")


def test_config_errors_print_one_line_per_problem(fake_command: types.ModuleType) -> None:
    """Every problem of a ConfigError gets its own line, and the exit status is 1."""

    def fail(args: argparse.Namespace, env: Environment) -> int:
        raise ConfigError("x.conf", ["x.conf: wan.interface: missing", "x.conf: tunnel.mtu: 9"])

    fake_command.run = fail
    code, _, err = run(["check-config"])
    assert code == ExitStatus.ERROR
    assert err.splitlines() == ["x.conf: wan.interface: missing", "x.conf: tunnel.mtu: 9"]


def test_reconciler_errors_print_one_line(fake_command: types.ModuleType) -> None:
    """Errors raised on purpose print as a single line prefixed with the program name."""

    def fail(args: argparse.Namespace, env: Environment) -> int:
        raise ReconcilerError("state dir is not writable")

    fake_command.run = fail
    code, _, err = run(["check-config"])
    assert (code, err) == (1, "reconciler: state dir is not writable\n")


def test_bugs_print_one_line_unless_debugging(fake_command: types.ModuleType) -> None:
    """An unexpected exception is one line; RECONCILER_DEBUG=1 lets the traceback through."""

    def crash(args: argparse.Namespace, env: Environment) -> int:
        raise KeyError("boom")

    fake_command.run = crash
    code, _, err = run(["check-config"])
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "internal error" in err
    with pytest.raises(KeyError):
        run(["check-config"], {"RECONCILER_DEBUG": "1"})


def test_every_command_has_a_module() -> None:
    """Each subcommand the parser knows is dispatched to a module name."""
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(choices) == set(cli._COMMANDS)
