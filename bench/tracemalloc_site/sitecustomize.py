"""Loaded by a daemon the soak starts with this directory on PYTHONPATH (bench lab --soak
--tracemalloc): traces allocations and dumps a tracemalloc snapshot every
$RC_TRACEMALLOC_EVERY seconds into $RC_TRACEMALLOC_DIR, for the bench to compare. Every
Python the lab starts loads it; only `reconciler run` traces. The files carry its pid."""

import os
import sys
import threading
import time
import tracemalloc

_DIR = os.environ.get("RC_TRACEMALLOC_DIR")


def _dump_forever(directory: str, every: float) -> None:
    number = 0
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot()
        name = f"{os.getpid()}-{number:04d}-{time.time():.0f}.tracemalloc"
        path = os.path.join(directory, name)
        snapshot.dump(path + ".tmp")
        os.replace(path + ".tmp", path)
        number += 1


# Only `reconciler run` (argv is ["-m", "run", ...] here): tracing slows the fake HE's start.
if _DIR and sys.argv[1:2] == ["run"]:
    tracemalloc.start(int(os.environ.get("RC_TRACEMALLOC_FRAMES", "12")))
    every = float(os.environ.get("RC_TRACEMALLOC_EVERY", "60"))
    threading.Thread(target=_dump_forever, args=(_DIR, every), daemon=True).start()
