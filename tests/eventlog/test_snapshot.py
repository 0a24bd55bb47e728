"""SnapshotStore: atomic snapshots with a CRC; damaged or other-schema ones are skipped."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.eventlog import EventLog, SnapshotStore


def test_latest_returns_the_newest_snapshot_of_the_schema(tmp_path: Path) -> None:
    """The newest snapshot written with the asked schema comes back with its seq."""
    store = SnapshotStore(tmp_path / "snaps")
    store.write(10, {"a": 1}, schema=1, log_id=None)
    store.write(20, {"a": 2, "nested": {"x": [1, 2]}}, schema=1, log_id=None)
    assert store.latest(1) == (20, {"a": 2, "nested": {"x": [1, 2]}})
    assert store.latest(2) is None
    assert SnapshotStore(tmp_path / "none").latest(1) is None


def test_other_schema_is_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer snapshot of another schema is passed over for an older one of ours."""
    store = SnapshotStore(tmp_path)
    store.write(10, {"v": "old"}, schema=1, log_id=None)
    store.write(20, {"v": "new"}, schema=2, log_id=None)
    with caplog.at_level(logging.INFO):
        assert store.latest(1) == (10, {"v": "old"})
    assert "schema 2" in caplog.text


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_snapshot_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A snapshot failing its CRC or cut short is ignored (logged) and the older one is used."""
    store = SnapshotStore(tmp_path)
    store.write(10, {"v": "old"}, schema=1, log_id=None)
    newest = store.write(20, {"v": "new" * 50}, schema=1, log_id=None)
    data = bytearray(newest.read_bytes())
    if damage == "flip":
        data[40] ^= 0xFF
    elif damage == "truncate":
        data = data[:-3]
    else:
        data = bytearray()
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert store.latest(1) == (10, {"v": "old"})
    assert newest.name in caplog.text


def test_only_the_newest_few_are_kept_and_no_tmp_left(tmp_path: Path) -> None:
    """Writing prunes to `keep` snapshots and leaves no temporary files behind."""
    store = SnapshotStore(tmp_path, keep=2)
    for seq in (1, 2, 3, 4):
        store.write(seq, {"seq": seq}, schema=1, log_id=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{3:020d}.snapshot",
        f"{4:020d}.snapshot",
    ]


def _fold(state: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A toy fold: last writer wins per key, plus a count."""
    new = dict(state)
    new["count"] = new.get("count", 0) + 1
    new[str(record["k"])] = record["v"]
    return new


records = st.lists(
    st.fixed_dictionaries(
        {"k": st.integers(0, 5), "v": st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)}
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=records, cut=st.integers(min_value=0))
def test_snapshot_plus_tail_equals_full_fold(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]], cut: int
) -> None:
    """Start-up from the snapshot at any seq plus the log tail gives the state a full fold gives."""
    base = tmp_path_factory.mktemp("fold")
    with EventLog.open(base / "events", segment_size=256) as log:
        log.append_many(records)
        cut = cut % (len(records) + 1)
        state: dict[str, Any] = {}
        for _, record in log.read():
            state = _fold(state, record)
        full = state
        prefix: dict[str, Any] = {}
        for seq, record in log.read():
            if seq > cut:
                break
            prefix = _fold(prefix, record)
        SnapshotStore(base / "snaps").write(cut, prefix, schema=7, log_id=None)
    snap = SnapshotStore(base / "snaps").latest(7)
    assert snap is not None
    seq, started = snap
    state = dict(started)
    with EventLog.open(base / "events", readonly=True) as reader:
        for _, record in reader.read(seq + 1):
            state = _fold(state, record)
    assert state == full
