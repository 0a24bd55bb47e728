"""`python -m bench eventlog`: the event log's figures, side by side with their yardsticks.

Prints durable single appends vs a raw os.write+fdatasync loop vs SQLite (WAL,
synchronous=FULL); group commits of 1000 vs SQLite 1000 rows per transaction; reading N
records vs plain msgpack.Unpacker; a replay fold of N facts (time, peak RSS), and the same fold
with the telemetry `reconciler metrics` adds; start-up from
a snapshot plus tail. The writers race round by round in a rotating order (`_race`), so disk
noise from a shared machine falls on every contender alike rather than on whoever ran last.
BENCH_QUICK=1 (or --quick) scales the counts down; BENCH_DIR picks the
file system (default: the current directory, so fdatasync hits a real disk, not tmpfs).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack

from reconciler.eventlog import EventLog, SnapshotStore
from reconciler.eventlog.format import encode_frame

__all__ = ["main"]


def _record(i: int) -> dict[str, Any]:
    """A record shaped like a real fact (a probe observation), about 110 bytes of msgpack."""
    return {
        "t": "probe-observed",
        "v": 1,
        "at": 1_700_000_000.0 + i,
        "src": "probe",
        "d": {"family": "ipv6", "target": "2001:db8::1", "ok": i % 7 != 0, "rtt_ms": 12.5},
    }


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class _Contender:
    """One writer in an interleaved race: `run(count)` does count operations, returns seconds."""

    def run(self, count: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LogSingles(_Contender):
    def __init__(self, base: Path) -> None:
        self.log = EventLog.open(base / "single")
        self.i = 0

    def run(self, count: int) -> float:
        t0 = time.perf_counter()
        for i in range(self.i, self.i + count):
            self.log.append(_record(i))
        self.i += count
        return time.perf_counter() - t0

    def close(self) -> None:
        self.log.close()


class _RawLoop(_Contender):
    """The same frame bytes through os.write + fdatasync: the limit."""

    def __init__(self, base: Path) -> None:
        self.fd = os.open(base / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.i = 0

    def run(self, count: int) -> float:
        frames = [
            encode_frame(i + 1, msgpack.packb(_record(i))) for i in range(self.i, self.i + count)
        ]
        self.i += count
        t0 = time.perf_counter()
        for frame in frames:
            os.write(self.fd, frame)
            os.fdatasync(self.fd)
        return time.perf_counter() - t0

    def close(self) -> None:
        os.close(self.fd)


class _Sqlite(_Contender):
    """SQLite in WAL mode with synchronous=FULL, `per_txn` rows per transaction."""

    def __init__(self, base: Path, per_txn: int) -> None:
        self.db = sqlite3.connect(base / f"sqlite-{per_txn}.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        self.per_txn = per_txn
        self.i = 0

    def run(self, count: int) -> float:
        records = [_record(i) for i in range(self.i, self.i + count)]
        self.i += count
        t0 = time.perf_counter()
        # Packing is timed, as it is inside EventLog.append: both store the same mappings.
        payloads = [msgpack.packb(r) for r in records]
        for start in range(0, count, self.per_txn):
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO events (body) VALUES (?)",
                ((p,) for p in payloads[start : start + self.per_txn]),
            )
            self.db.execute("COMMIT")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.db.close()


class _LogGroups(_Contender):
    def __init__(self, base: Path, size: int) -> None:
        self.log = EventLog.open(base / "group")
        self.records = [_record(i) for i in range(size)]

    def run(self, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(0, count, len(self.records)):
            self.log.append_many(self.records)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.log.close()


def _race(contenders: dict[str, _Contender], total: int, rounds: int) -> dict[str, float]:
    """Operations per second of each contender, run round by round in a rotating order.

    Each round gives every contender total/rounds operations; the order rotates so disk
    noise (other processes, write-back of the previous contender) falls on all alike.
    """
    names = list(contenders)
    spent = dict.fromkeys(names, 0.0)
    per_round = total // rounds
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                spent[name] += contenders[name].run(per_round)
    finally:
        for contender in contenders.values():
            contender.close()
    return {name: _rate(per_round * rounds, spent[name]) for name in names}


def _write_facts(path: Path, n: int) -> None:
    """n typed facts (a WAN observation every 100th, probes otherwise), in big group commits."""
    from reconciler.model.facts import ProbeObserved, WanAddressObserved, to_record

    with EventLog.open(path) as log:
        batch = []
        for i in range(n):
            if i % 100 == 0:
                fact: Any = WanAddressObserved("em0", f"198.51.100.{i % 200 + 1}", True)
            else:
                fact = ProbeObserved("ipv6", "2001:db8::1", i % 7 != 0, 12.5)
            batch.append(to_record(fact, at=1_700_000_000.0 + i, source="bench"))
            if len(batch) == 10_000:
                log.append_many(batch)
                batch = []
        log.append_many(batch)


def _reads(path: Path) -> tuple[float, float, int]:
    """(seconds through EventLog.read, seconds through a bare msgpack.Unpacker, records).

    Best of three each, the two taking turns round by round, so that load from other
    processes on a shared machine falls on both alike rather than on whichever ran last.
    """
    bare = path.parent / "bare.msgpack"
    with EventLog.open(path, readonly=True) as log:
        with bare.open("wb") as out:
            for _, record in log.read():
                out.write(msgpack.packb(record))
        ours = theirs = float("inf")
        count = plain = 0
        for _ in range(3):
            t0 = time.perf_counter()
            count = 0
            for _ in log.read():
                count += 1
            ours = min(ours, time.perf_counter() - t0)
            t0 = time.perf_counter()
            with bare.open("rb") as f:
                plain = sum(1 for _ in msgpack.Unpacker(f, raw=False))
            theirs = min(theirs, time.perf_counter() - t0)
    assert plain == count
    bare.unlink()
    return ours, theirs, count


_FOLD_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    from reconciler.eventlog import EventLog, SnapshotStore
    from reconciler.model.facts import from_record
    from reconciler.model.state import (
        SCHEMA_VERSION, ObservedState, fold, state_from_mapping, state_to_mapping
    )
    mode, path, snaps = sys.argv[1], sys.argv[2], sys.argv[3]
    t0 = time.perf_counter()
    c0 = time.process_time()
    if mode == "fold":
        state = ObservedState()
        with EventLog.open(path, readonly=True) as log:
            for seq, record in log.read():
                state = fold(state, from_record(seq, record))
    elif mode == "telemetry":  # what `reconciler metrics` does: the fold and the telemetry
        from reconciler.model.config import ReconcileConfig
        from reconciler.model.telemetry import Telemetry
        state = ObservedState()
        telemetry = Telemetry.starting_on(state, ReconcileConfig())
        with EventLog.open(path, readonly=True) as log:
            for seq, record in log.read():
                envelope = from_record(seq, record)
                after = fold(state, envelope)
                telemetry.observe(state, envelope, after)
                state = after
    elif mode == "snapshot":
        state = ObservedState()
        with EventLog.open(path, readonly=True) as log:
            for seq, record in log.read():
                state = fold(state, from_record(seq, record))
                if seq == log.last_seq - 1000:
                    mapping = state_to_mapping(state)
                    SnapshotStore(snaps).write(seq, mapping, SCHEMA_VERSION, log_id=log.log_id)
    else:  # start-up: the writer opens the log, loads the snapshot, folds the tail
        with EventLog.open(path) as log:
            seq, mapping = SnapshotStore(snaps).latest(SCHEMA_VERSION, log.log_id)
            state = state_from_mapping(mapping)
            for seq, record in log.read(seq + 1):
                state = fold(state, from_record(seq, record))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{elapsed} {cpu} {rss} {state.seq}")
    """
)


def _fold_child(mode: str, path: Path, snaps: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, last seq) of one replay in a fresh process.

    CPU time is printed beside wall time: on a shared machine wall time includes waiting
    for a core, CPU time does not.
    """
    done = subprocess.run(
        [sys.executable, "-c", _FOLD_CHILD, mode, str(path), str(snaps)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, cpu, rss, seq = done.stdout.split()
    return float(seconds), float(cpu), float(rss), int(seq)


def _have_fold() -> bool:
    try:
        import reconciler.model.state  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    quick = bool(os.environ.get("BENCH_QUICK")) or "--quick" in (argv or sys.argv[1:])
    singles = 300 if quick else 2000
    batches = 5 if quick else 50
    records = 100_000 if quick else 1_000_000
    base = Path(tempfile.mkdtemp(prefix="bench-eventlog-", dir=os.environ.get("BENCH_DIR", ".")))
    try:
        print(f"event log benchmark ({'quick' if quick else 'full'}) in {base}")
        rounds = 5 if quick else 10
        print(f"writers interleaved: {rounds} rounds, each contender in turn, order rotating;")
        print(
            "  EventLog and SQLite times include msgpack packing; the raw loop writes ready frames"
        )
        singles_rates = _race(
            {"log": _LogSingles(base), "raw": _RawLoop(base), "sqlite": _Sqlite(base, 1)},
            singles,
            rounds,
        )
        ours, raw, lite = singles_rates["log"], singles_rates["raw"], singles_rates["sqlite"]
        print(f"single durable appends ({singles}):")
        print(f"  EventLog.append          {ours:10.0f}/s")
        print(f"  os.write+fdatasync loop  {raw:10.0f}/s   ratio {ours / raw:.2f}x (target >= 0.8)")
        print(
            f"  SQLite WAL FULL 1 row/tx {lite:10.0f}/s   ratio {ours / lite:.2f}x (target >= 1.2)"
        )

        group_rates = _race(
            {"log": _LogGroups(base, 1000), "sqlite": _Sqlite(base, 1000)},
            batches * 1000,
            min(rounds, batches),
        )
        group, lite_group = group_rates["log"], group_rates["sqlite"]
        print(f"group commits of 1000 ({batches} batches):")
        print(f"  EventLog.append_many     {group:10.0f} records/s")
        print(
            f"  SQLite 1000 rows/tx      {lite_group:10.0f} records/s   "
            f"ratio {group / lite_group:.2f}x (target >= 1)"
        )

        facts = base / "facts"
        _write_facts(facts, records)
        mine, plain, count = _reads(facts)
        print(f"reading {count} records:")
        print(f"  EventLog.read (CRC, decode) {mine:6.2f} s  {_rate(count, mine):10.0f}/s")
        print(f"  msgpack.Unpacker (no frames){plain:6.2f} s  {_rate(count, plain):10.0f}/s")
        print(f"  ratio {plain / mine:.2f}x of Unpacker's speed (target >= 0.5)")

        if _have_fold():
            snaps = base / "snapshots"
            seconds, cpu, rss, seq = _fold_child("fold", facts, snaps)
            print(
                f"replay fold of {seq} facts: {seconds:.2f} s ({cpu:.2f} s CPU), "
                f"peak RSS {rss:.0f} MB"
            )
            print("  (targets for 1M: <= 5 s, <= 100 MB)")
            told, told_cpu, told_rss, _ = _fold_child("telemetry", facts, snaps)
            print(
                f"fold with telemetry (`reconciler metrics`): {told:.2f} s ({told_cpu:.2f} s "
                f"CPU, {told_cpu / cpu:.2f}x the fold's), peak RSS {told_rss:.0f} MB"
            )
            _fold_child("snapshot", facts, snaps)
            seconds, _, _, seq = _fold_child("startup", facts, snaps)
            print(
                f"start-up (open writer, snapshot at {seq - 1000}, fold 1000-fact tail): "
                f"{seconds:.3f} s (target <= 0.5 s)"
            )
        else:
            print("replay fold / start-up: reconciler.model.state not available, skipped")
            store = SnapshotStore(base / "snapshots")
            store.write(count - 1000, {"seq": count - 1000}, 1, log_id=None)
            t0 = time.perf_counter()
            with EventLog.open(facts) as log:
                snap = store.latest(1)
                assert snap is not None
                tail = sum(1 for _ in log.read(snap[0] + 1))
            took = time.perf_counter() - t0
            print(f"start-up without fold (open, snapshot, read {tail}): {took:.3f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
