"""Crash safety: a writer SIGKILLed at random moments never loses an acknowledged record."""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

from reconciler.eventlog import EventLog

from .helpers import record_for

ROUNDS = 200


def _child(path: Path, out_fd: int, batchy: bool) -> None:
    """Append forever, writing each acknowledged sequence number to the pipe."""
    try:
        with EventLog.open(path, segment_size=4096) as log:
            while True:
                nxt = log.last_seq + 1
                if batchy:
                    seqs = log.append_many([record_for(nxt + i) for i in range(7)])
                else:
                    seqs = [log.append(record_for(nxt))]
                os.write(out_fd, f"{seqs[-1]}\n".encode())
    finally:
        os._exit(1)


def test_sigkill_loop_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    """After each of 200 SIGKILLs the log opens, holds every acked record intact, contiguous."""
    rng = random.Random(20240611)
    acked = 0
    for round_no in range(ROUNDS):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            os.close(read_fd)
            _child(tmp_path, write_fd, batchy=round_no % 3 == 0)
        os.close(write_fd)
        wanted_acks = rng.randint(0, 12)
        got = b""
        deadline = time.monotonic() + 5
        while got.count(b"\n") < wanted_acks and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.5)
            if ready:
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    break
                got += chunk
        time.sleep(rng.random() * 0.003)  # land the kill anywhere in the next append
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(read_fd, 4096):  # acks written before the kill
            got += chunk
        os.close(read_fd)
        lines = got.split(b"\n")[:-1]
        if lines:
            acked = max(acked, int(lines[-1]))

        with EventLog.open(tmp_path, segment_size=4096) as log:
            assert log.last_seq >= acked, f"round {round_no}: lost acknowledged records"
            count = 0
            for seq, record in log.read():
                count += 1
                assert seq == count, f"round {round_no}: sequence gap at {seq}"
                assert record == record_for(seq), f"round {round_no}: record {seq} damaged"
            assert count == log.last_seq
            acked = log.last_seq  # what survived is the new baseline
    assert acked > ROUNDS  # the loop really appended
