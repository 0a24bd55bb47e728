"""Times as the CLI shows them: UTC, ISO 8601, to the second, and short durations."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["duration", "iso"]


def iso(at: float | None) -> str | None:
    """`2024-05-01T12:00:00Z` for an epoch time; None stays None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A short human duration: `45s`, `3m20s`, `2h05m`, `3d04h`."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
