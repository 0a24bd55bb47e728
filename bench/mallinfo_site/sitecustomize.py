"""Loaded by a daemon the soak starts with this directory on PYTHONPATH (bench lab --soak
--malloc-info): writes glibc's malloc_info XML every $RC_MALLINFO_EVERY seconds into
$RC_MALLINFO_DIR, for the bench to read what the C heap holds and how much of it is free.
Every Python the lab starts loads it; only `reconciler run` writes. The files carry its pid."""

import ctypes
import os
import sys
import threading
import time

_DIR = os.environ.get("RC_MALLINFO_DIR")


def _dump_forever(directory: str, every: float) -> None:
    time.sleep(every)
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    number = 0
    while True:
        path = os.path.join(directory, f"{os.getpid()}-{number:04d}-{time.time():.0f}.xml")
        stream = libc.fopen((path + ".tmp").encode(), b"w")
        if stream:
            libc.malloc_info(0, stream)
            libc.fclose(stream)
            os.replace(path + ".tmp", path)
        number += 1
        time.sleep(every)


if _DIR and sys.argv[1:2] == ["run"]:
    every = float(os.environ.get("RC_MALLINFO_EVERY", "30"))
    # Set glibc as `reconciler run` will (it does so again, harmlessly) before this thread
    # takes an arena of its own: the figures are then the daemon's own.
    from reconciler.malloc import tune_malloc

    tune_malloc()
    threading.Thread(target=_dump_forever, args=(_DIR, every), daemon=True).start()
