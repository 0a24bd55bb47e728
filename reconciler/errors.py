"""One family of errors: everything reconciler raises on purpose derives from ReconcilerError.

Messages are one line, name what failed (a file and offset, a config key), and never carry
the tunnelbroker update key. `one_line` and `error_line` make a message one line, for
every module that reports a failure.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ActionError",
    "ConfigError",
    "CorruptLogError",
    "LogLockedError",
    "PermanentError",
    "PlatformUnsupportedError",
    "ReconcilerError",
    "TemporaryError",
    "error_line",
    "one_line",
]


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class LogLockedError(ReconcilerError):
    """Another writer holds the event log's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"event log {path} is locked by {holder}")


class CorruptLogError(ReconcilerError):
    """A frame failed its checksum (or is malformed) somewhere other than a torn tail."""

    def __init__(self, segment: Path, offset: int, reason: str) -> None:
        self.segment = segment
        self.offset = offset
        self.reason = reason
        super().__init__(f"{segment}: corrupt at byte {offset}: {reason}")


class ConfigError(ReconcilerError):
    """The configuration is invalid; `problems` holds every error, one line each."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) if self.problems else f"{path}: invalid")


class PlatformUnsupportedError(ReconcilerError):
    """The host cannot do what the configuration asks (e.g. no `sit` in the kernel)."""


class ActionError(ReconcilerError):
    """An action failed; executors turn it into an ActionFailed fact, never into a crash."""

    temporary: bool = False

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)


class TemporaryError(ActionError):
    """Worth retrying after `retry_after` seconds (or the planner's backoff when None)."""

    temporary = True


class PermanentError(ActionError):
    """Retrying cannot help until the configuration changes."""

    temporary = False


def one_line(text: str, limit: int | None = None) -> str:
    """`text` as one line (runs of whitespace, newlines included, become one space), cut to
    `limit` characters with "..." when it is longer: fit for a fact, a log line or a CLI
    error."""
    line = " ".join(text.split())
    if limit is None or len(line) <= limit:
        return line
    return line[: max(0, limit - 3)] + "..."


def error_line(exc: BaseException) -> str:
    """An exception as one line, its type first ("TimeoutError: timed out"); the type alone
    when it has no message."""
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
