"""Tests for reconciler.errors' one-line helpers (the one copy every module uses)."""

from __future__ import annotations

from reconciler.errors import ConfigError, error_line, one_line


def test_one_line_joins_lines_and_runs_of_whitespace() -> None:
    """Newlines, tabs and repeated spaces become single spaces; ends are trimmed."""
    assert one_line("  first\n\tsecond   third \r\n") == "first second third"


def test_one_line_cuts_to_the_limit_with_an_ellipsis() -> None:
    """A longer line is cut to exactly `limit` characters ending in "..."; a short one is
    untouched; without a limit nothing is cut."""
    assert one_line("x" * 20, 10) == "x" * 7 + "..."
    assert one_line("short", 10) == "short"
    assert one_line("y" * 500) == "y" * 500


def test_error_line_names_the_type_first() -> None:
    """An exception becomes "Type: message" on one line, the type alone without a message."""
    assert error_line(ValueError("bad\nvalue")) == "ValueError: bad value"
    assert error_line(TimeoutError()) == "TimeoutError"
    assert error_line(ConfigError("x.conf", ["a", "b"])) == "ConfigError: a b"
