"""The crash-safe event log: msgpack mappings under sequence numbers, in CRC-checked segments.

Persistence only: the log knows nothing of networks or of fact types.
"""

from __future__ import annotations

from reconciler.eventlog.log import DEFAULT_SEGMENT_SIZE, EventLog
from reconciler.eventlog.maintenance import (
    LogStats,
    RepairReport,
    VerifyReport,
    apply_retention,
    repair,
    stats,
    verify,
)
from reconciler.eventlog.snapshot import SnapshotStore

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "EventLog",
    "LogStats",
    "RepairReport",
    "SnapshotStore",
    "VerifyReport",
    "apply_retention",
    "repair",
    "stats",
    "verify",
]
