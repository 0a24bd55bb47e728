"""Checkpoints: replay windows fold from the checkpoint before them and print exactly what a
fold from the start prints; an older log gets its checkpoints built by the daemon's start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.checkpoints import (
    build_missing,
    checkpoints_dir,
    last_seq_until,
    log_id_of,
    start_at_or_before,
    start_before,
)
from reconciler.eventlog import EventLog
from reconciler.eventlog.checkpoints import CheckpointStore
from reconciler.model import facts as f
from reconciler.recorder import Recorder
from reconciler.render.timefmt import iso
from reconciler.statedir import events_dir
from tests.commands.test_diff import run_cli

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
ADDRESSES = ["203.0.113.7", "203.0.113.9", "198.51.100.4"]


def _write_days(state_dir: Path, *, checkpoints: bool, days: int = 4) -> None:
    """A few days of history through the daemon's recording path: probes every 10 min, a
    failure and an address change every few hours, one clock step back."""
    now = [T0]
    store = CheckpointStore(checkpoints_dir(state_dir)) if checkpoints else None
    with EventLog.open(events_dir(state_dir)) as log:
        recorder = Recorder(log, lambda: now[0], quiet_summary_interval=3600.0, checkpoints=store)
        for tick in range(days * 144):
            now[0] = T0 + 600.0 * tick - (900.0 if tick == 200 else 0.0)  # a step back
            address = ADDRESSES[(tick // 30) % len(ADDRESSES)]
            wan = f.WanAddressObserved("em0", address, True, addresses=(address,))
            recorder.record(wan, "observer:wan")
            ok = tick % 17 not in (5, 6, 7)
            probe = f.ProbeObserved("ipv6", "2001:db8::53", ok, 4.0 if ok else None)
            recorder.record(probe, "observer:probe:ipv6")
        recorder.record_final(lambda _state: f.DaemonStopped("test"), "daemon")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("checkpoints")
    _write_days(base / "with", checkpoints=True)
    shutil.copytree(base / "with" / "events", base / "without" / "events")
    return base / "with", base / "without"


def test_the_recorder_writes_a_checkpoint_a_day_that_chain(logs: tuple[Path, Path]) -> None:
    chunks = CheckpointStore(checkpoints_dir(logs[0])).index(log_id_of(logs[0]))
    assert len(chunks) == 3  # four days: the fourth's is not due yet
    assert chunks[0].since == 0
    assert [c.since for c in chunks[1:]] == [c.seq for c in chunks[:-1]]


@pytest.mark.parametrize(
    "args",
    [["--since", iso(T0 + 2.5 * 86400)], ["--since", iso(T0 + 86400 * 1.2),
     "--until", iso(T0 + 86400 * 2.7)], ["--until", iso(T0 + 86400)],
     ["--at", iso(T0 + 3.1 * 86400)], ["--at", iso(T0 + 600.0 * 199)], ["--json", "--since",
     iso(T0 + 3 * 86400)], ["--since", iso(T0 + 600.0 * 199 - 100)]],
)  # fmt: skip
def test_windows_print_exactly_what_a_fold_from_the_start_prints(
    logs: tuple[Path, Path], args: list[str], tmp_path: Path
) -> None:
    with_checkpoints = run_cli(["replay", "--state-dir", str(logs[0]), *args], tmp_path)
    from_the_start = run_cli(["replay", "--state-dir", str(logs[1]), *args], tmp_path)
    assert with_checkpoints == from_the_start
    assert with_checkpoints[0] == 0


def test_a_window_starts_from_the_checkpoint_before_it(logs: tuple[Path, Path]) -> None:
    """--since three and a half days in folds from the newest checkpoint, not from #1;
    --until finds its end through the index, --at its state from the checkpoint before."""
    chunks = CheckpointStore(checkpoints_dir(logs[0])).index(log_id_of(logs[0]))
    state, start, near = start_before(logs[0], T0 + 3.5 * 86400)
    assert near is not None  # where the record after it is: read without walking
    assert start == chunks[-1].seq and state.seq == start
    assert start_before(logs[1], T0 + 3.5 * 86400)[1] == 0  # no index: from the start
    end = last_seq_until(logs[0], T0 + 1.5 * 86400)
    assert end == last_seq_until(logs[1], T0 + 1.5 * 86400) > 0
    assert start_at_or_before(logs[0], end)[1] == chunks[0].seq


def test_an_older_log_gets_its_checkpoints_built(tmp_path: Path, logs: tuple[Path, Path]) -> None:
    """A log without checkpoints (as every log before them) gets them on the first start of
    a daemon that writes them; windows then print the same."""
    shutil.copytree(logs[1] / "events", tmp_path / "events")
    store = CheckpointStore(checkpoints_dir(tmp_path))
    with EventLog.open(events_dir(tmp_path)) as log:
        recorder = Recorder(log, checkpoints=store)
        recorder.build_checkpoints(lambda: False)
        last = log.last_seq
    chunks = store.index(log_id_of(tmp_path))
    assert chunks and chunks[-1].seq == last and chunks[0].since == 0
    with EventLog.open(events_dir(tmp_path), readonly=True) as log:
        assert build_missing(log, store, last, lambda: False) == 0  # nothing missing now
    args = ["--since", iso(T0 + 2.5 * 86400)]
    built = run_cli(["replay", "--state-dir", str(tmp_path), *args], tmp_path)
    assert built == run_cli(["replay", "--state-dir", str(logs[1]), *args], tmp_path)


def test_retention_takes_the_checkpoints_it_made_useless(
    tmp_path: Path, logs: tuple[Path, Path]
) -> None:
    """prune(first seq) forgets the checkpoints whose following records are gone, files too;
    the chain then starts at the log's first record."""
    shutil.copytree(logs[0], tmp_path / "state")
    store = CheckpointStore(checkpoints_dir(tmp_path / "state"))
    log_id = log_id_of(tmp_path / "state")
    chunks = store.index(log_id)
    store.prune(chunks[1].seq + 1, log_id)
    assert [c.seq for c in store.index(log_id)] == [c.seq for c in chunks[1:]]
    assert not store.path_for(chunks[0].seq).exists()
    assert store.path_for(chunks[1].seq).exists()


def test_status_and_start_up_begin_from_a_checkpoint_newer_than_any_snapshot(
    logs: tuple[Path, Path],
) -> None:
    """Without snapshots, the loader starts from the newest checkpoint and folds the tail."""
    from reconciler.history import load

    loaded = load(logs[0])
    assert (
        loaded.snapshot_seq
        == CheckpointStore(checkpoints_dir(logs[0])).index(log_id_of(logs[0]))[-1].seq
    )
    assert loaded.state == load(logs[1]).state
