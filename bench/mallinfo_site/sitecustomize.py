"""Loaded by a daemon the soak starts with this directory on PYTHONPATH (bench lab --soak
--malloc-info): writes glibc's malloc_info XML every $RC_MALLINFO_EVERY seconds into
$RC_MALLINFO_DIR, for the bench to read what the C heap holds and how much of it is free.
Every Python the lab starts loads it; only `reconciler run` writes. The files carry its pid."""

import os
import sys
import threading
import time

_DIR = os.environ.get("RC_MALLINFO_DIR")


def _dump_forever(directory: str, every: float) -> None:
    from reconciler.malloc import malloc_info

    number = 0
    while True:
        time.sleep(every)
        xml = malloc_info()
        if xml is not None:
            path = os.path.join(directory, f"{os.getpid()}-{number:04d}-{time.time():.0f}.xml")
            with open(path + ".tmp", "w") as out:
                out.write(xml)
            os.replace(path + ".tmp", path)
        number += 1


if _DIR and sys.argv[1:2] == ["run"]:
    every = float(os.environ.get("RC_MALLINFO_EVERY", "30"))
    # Set glibc as `reconciler run` will (it does so again, harmlessly) before this thread
    # takes an arena of its own: the figures are then the daemon's own.
    from reconciler.malloc import tune_malloc

    tune_malloc()
    threading.Thread(target=_dump_forever, args=(_DIR, every), daemon=True).start()
