"""glibc's allocator, set for a daemon that runs for months: one arena, a fixed mmap threshold.

Why (measured with `python -m bench lab --soak`, glibc's malloc_info sampled every 30 s): the
daemon's memory in use stayed at 10.0 MB while glibc's heap grew by about 100 KiB a minute
of address changes, all of it free chunks, most of them near 256 KiB. pyroute2 reads netlink
through asyncio, which receives every datagram into a 256 KiB buffer and shrinks it to the
message. glibc serves such a buffer from mmap at first, but raises its mmap threshold each
time a larger mmapped block is freed; from then on the buffers come from the heap, and the
shrunk messages that outlive them pin 256 KiB holes that later allocations only partly
reuse. A fixed threshold (setting it turns the raising off) keeps large buffers in mmap,
returned whole when freed.

One arena: glibc gives threads arenas of their own (up to 8 per core), each fragmenting on
its own. The GIL serialises the daemon's allocations anyway, so the extra arenas buy no
speed, only resident memory.

On another C library (OpenBSD's, musl) this does nothing: their allocators have neither
knob, and OpenBSD's returns freed pages by design.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import tempfile

__all__ = ["MMAP_THRESHOLD", "malloc_info", "tune_malloc"]

_log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# glibc's own default threshold, held fixed: blocks this large or larger are mmapped.
MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> bool:
    """Set glibc's allocator for a long run; True if it was set. Call it before the daemon
    starts its threads (an arena is taken when a thread first allocates)."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = int(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1
    done = int(mallopt(_M_ARENA_MAX, 1)) == 1 and done
    if not done:
        _log.debug("glibc's mallopt refused a setting: allocator partly as it was")
    return done


def malloc_info() -> str | None:
    """glibc's own account of its heap (malloc_info's XML: arenas, free chunks, mmapped
    blocks), or None outside glibc. For measuring (bench lab --soak --malloc-info, tests)."""
    libc = _glibc()
    if libc is None:
        return None
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = (ctypes.c_int, ctypes.c_char_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    with tempfile.TemporaryFile() as out:
        stream = libc.fdopen(os.dup(out.fileno()), b"w")
        if not stream:
            return None
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        out.seek(0)
        return out.read().decode()


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc and reachable."""
    if not _is_glibc():
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  # glibc's, or this is not the library we mean
    except (OSError, AttributeError) as exc:
        _log.debug("glibc's allocator is not reachable (%s): left as it is", exc)
        return None
    return libc


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):  # no such name outside glibc
        return False
