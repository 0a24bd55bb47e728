"""A log's identity: snapshots and checkpoints are used only with the log they were folded
from. `events/` replaced by another log (a restore, a fresh start) or a restored older copy
of the same log must give exactly what a fold from the start gives; format-1 logs (no
identity) stay readable and get one from their next segment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.checkpoints import checkpoints_dir, log_id_of
from reconciler.eventlog import EventLog, SnapshotStore, verify
from reconciler.eventlog.checkpoints import CheckpointStore
from reconciler.eventlog.format import (
    SEGMENT_HEADER,
    SEGMENT_HEADER_V1,
    decode_segment_header,
    encode_frame,
    encode_segment_header,
    segment_name,
)
from reconciler.history import load
from reconciler.model import facts as f
from reconciler.recorder import Recorder
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir, snapshots_dir
from tests.commands.test_diff import run_cli

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
DAY = 86400.0


def _history(
    state_dir: Path, addresses: list[str], *, days: float, start: float = T0, stop: bool = True
) -> None:
    """Probes every 10 min and, when `addresses` names any, the WAN address every 5 hours
    (taking turns), recorded the daemon's way: snapshots every 50 facts, a checkpoint a day,
    and one at the `stop` (False: the daemon is still running, or was killed)."""
    now = [start]
    with EventLog.open(events_dir(state_dir)) as log:
        recorder = Recorder(
            log,
            lambda: now[0],
            snapshots=SnapshotStore(snapshots_dir(state_dir)),
            snapshot_every=50,
            checkpoints=CheckpointStore(checkpoints_dir(state_dir)),
        )
        for tick in range(int(days * 144)):
            now[0] = start + 600.0 * tick
            if addresses and tick % 30 == 0:
                address = addresses[(tick // 30) % len(addresses)]
                recorder.record(f.WanAddressObserved("em0", address, True), "observer:wan")
            ok = tick % 17 not in (5, 6, 7)
            probe = f.ProbeObserved("ipv6", "2001:db8::53", ok, 4.0 if ok else None)
            recorder.record(probe, "observer:probe:ipv6")
        if stop:
            recorder.snapshot()


def _log_only(state_dir: Path, tmp_path: Path) -> Path:
    """A state directory holding only `state_dir`'s events: every reader folds from #1."""
    bare = tmp_path / "bare"
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(events_dir(state_dir), events_dir(bare))
    return bare


WINDOWS = [
    ["--at", iso(T0 + 1.6 * DAY)],
    ["--at", iso(T0 + 0.4 * DAY)],
    ["--since", iso(T0 + 1.2 * DAY), "--until", iso(T0 + 1.7 * DAY)],
]


def _same_as_a_full_fold(state_dir: Path, tmp_path: Path) -> None:
    bare = _log_only(state_dir, tmp_path)
    for window in WINDOWS:
        got = run_cli(["replay", "--state-dir", str(state_dir), *window], tmp_path)
        assert got == run_cli(["replay", "--state-dir", str(bare), *window], tmp_path), window
        assert got[0] == 0
    assert load(state_dir).state == load(bare).state
    assert _status(state_dir, tmp_path) == _status(bare, tmp_path)


def _status(state_dir: Path, tmp_path: Path) -> dict[str, object]:
    code, out, err = run_cli(["status", "--json", "--state-dir", str(state_dir)], tmp_path)
    assert (code, err) == (0, "")
    shown = json.loads(out)
    del shown["now"], shown["state_dir"]  # when and where it ran
    return shown


def test_events_replaced_by_another_log(tmp_path: Path) -> None:
    """The snapshots and checkpoints of the old log stay behind; `replay --at` and `status`
    show the new log's history, never an address only the old one held."""
    state = tmp_path / "state"
    _history(state, ["203.0.113.7", "203.0.113.9"], days=2.5)
    other = tmp_path / "other"
    _history(other, [], days=2.2)  # a log that never saw a WAN address
    old_id = log_id_of(state)
    assert CheckpointStore(checkpoints_dir(state)).index(old_id)  # the old log has them
    shutil.rmtree(events_dir(state))
    shutil.copytree(events_dir(other), events_dir(state))
    assert log_id_of(state) not in (None, old_id)
    _same_as_a_full_fold(state, tmp_path)
    _, shown, _ = run_cli(["replay", "--state-dir", str(state), *WINDOWS[0]], tmp_path)
    assert "203.0.113." not in shown


def test_a_restored_older_copy_of_the_same_log(tmp_path: Path) -> None:
    """events/ put back from a backup of the same log, then a different history recorded
    on it: checkpoints and snapshots of the lost future (same id, same numbers, other
    records) are not used."""
    state = tmp_path / "state"
    _history(state, ["203.0.113.7"], days=0.8)
    backup = tmp_path / "backup"
    shutil.copytree(events_dir(state), backup)
    _history(state, ["203.0.113.9", "203.0.113.11"], days=1.1, start=T0 + 0.8 * DAY)
    shutil.rmtree(events_dir(state))
    shutil.copytree(backup, events_dir(state))
    # A little longer than the lost future, and still running: its newest snapshot is older
    # than the lost future's last one, which the log has grown past.
    _history(state, [], days=1.2, start=T0 + 0.8 * DAY, stop=False)
    _same_as_a_full_fold(state, tmp_path)
    assert load(state).state.last_wan_address == "203.0.113.7"  # what the restored log holds


def _format_1_log(directory: Path, records: int) -> None:
    """A log as the release before identities wrote it (format-1 header)."""
    directory.mkdir(parents=True)
    frames = b"".join(
        encode_frame(seq, b"\x82\xa1t\xa1x\xa2at" + bytes([0xCB]) + bytes(8))
        for seq in range(1, records + 1)
    )
    (directory / segment_name(1)).write_bytes(encode_segment_header(1, None) + frames)


def test_a_format_1_log_reads_and_gets_an_identity_from_its_next_segment(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events"
    _format_1_log(events, 3)
    with EventLog.open(events, readonly=True) as reader:
        assert reader.log_id is None
        assert [seq for seq, _ in reader.read()] == [1, 2, 3]
    with EventLog.open(events) as writer:
        log_id = writer.log_id
        assert log_id is not None and writer.append({"t": "y"}) == 4
        assert writer.append({"t": "z"}) == 5
        assert [first for first, _ in writer.segments()] == [1, 4]
    old, new = (events / segment_name(1)).read_bytes(), (events / segment_name(4)).read_bytes()
    first = decode_segment_header(old)
    second = decode_segment_header(new)
    assert not isinstance(first, str) and not isinstance(second, str)
    assert (first.log_id, first.size) == (None, SEGMENT_HEADER_V1)
    assert (second.log_id, second.size) == (log_id, SEGMENT_HEADER)
    with EventLog.open(events, readonly=True) as reader:
        assert reader.log_id == log_id
        assert [record["t"] for _, record in reader.read(2)] == ["x", "x", "y", "z"]
    assert verify(events).ok
    with EventLog.open(events) as writer:  # the identity is kept from then on
        assert writer.log_id == log_id


def test_every_new_segment_carries_the_same_identity(tmp_path: Path) -> None:
    events = tmp_path / "events"
    with EventLog.open(events, segment_size=200) as log:
        for n in range(6):
            log.append({"n": n, "pad": "x" * 80})
        ids = {
            decode_segment_header(seg.read_bytes()).log_id  # type: ignore[union-attr]
            for _, seg in log.segments()
        }
        assert len(log.segments()) > 2 and ids == {log.log_id}
    with EventLog.open(tmp_path / "another") as other:
        other.append({"n": 0})
        assert other.log_id != log.log_id


@pytest.mark.parametrize("version", [1, 2])
def test_a_snapshot_of_either_format_reads(tmp_path: Path, version: int) -> None:
    """Format-1 snapshots (no identity) serve only a log without one (nothing tells which log
    they came from once it has one); format 2 only with their log."""
    from reconciler.eventlog.snapshot import decode_snapshot, encode_snapshot

    log_id = b"I" * 16 if version == 2 else None
    data = encode_snapshot(7, {"a": 1}, 3, log_id)
    if version == 1:  # the old layout: no id field
        import struct
        import zlib

        payload = data[44:-4]
        body = struct.pack("<8sHHIQI", data[:8], 1, 0, 3, 7, len(payload)) + payload
        data = body + struct.pack("<I", zlib.crc32(body))
    assert decode_snapshot(data) == (3, 7, {"a": 1}, log_id)
    store = SnapshotStore(tmp_path)
    store.path_for(7).parent.mkdir(exist_ok=True)
    store.path_for(7).write_bytes(data)
    assert store.latest(3, log_id) == (7, {"a": 1})
    assert store.latest(3, b"J" * 16) is None
    assert (store.latest(3, b"I" * 16) is None) == (version == 1)


def test_a_checkpoint_whose_frame_is_not_in_the_log_is_not_used(tmp_path: Path) -> None:
    """Same id, but the log holds another record where the checkpoint's ended: not used."""
    import attrs

    from reconciler.checkpoints import start_at_or_before

    state = tmp_path / "state"
    _history(state, ["203.0.113.7", "203.0.113.9"], days=2.5)
    store, log_id = CheckpointStore(checkpoints_dir(state)), log_id_of(state)
    chunks = store.index(log_id)
    assert chunks and all(c.crc for c in chunks)
    assert start_at_or_before(state, chunks[-1].seq)[1] == chunks[-1].seq
    store._write_index([attrs.evolve(c, crc=c.crc ^ 1) for c in chunks], log_id)
    assert start_at_or_before(state, chunks[-1].seq)[1] == 0
    _same_as_a_full_fold(state, tmp_path)
