"""Tests for reconciler.malloc: glibc's allocator held to one arena and a fixed mmap
threshold. Each case runs in a fresh interpreter, since the settings are process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from reconciler.malloc import MMAP_THRESHOLD

pytestmark = pytest.mark.skipif(
    not hasattr(os, "confstr") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only: other allocators have neither knob",
)

# malloc_info's totals, printed by the child: how many blocks are mmapped, how many heaps.
_MALLOC_INFO = textwrap.dedent(
    """
    import re, sys
    from reconciler.malloc import malloc_info as glibc_report

    def malloc_info():
        text = glibc_report()
        mmapped = int(re.search(r'<total type="mmap" count="(\\d+)"', text)[1])
        return mmapped, text.count("<heap nr=")

    if sys.argv[1] == "tuned":
        from reconciler.malloc import tune_malloc
        assert tune_malloc()
    """
)


def _child(script: str, tuned: bool) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _MALLOC_INFO + textwrap.dedent(script),
            "tuned" if tuned else "as-is",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


_BUFFER_AFTER_A_LARGER_FREE = """
    big = bytearray(4 << 20)  # mmapped; freeing it raises glibc's dynamic threshold
    del big
    before, _ = malloc_info()
    buffer = bytearray(256 << 10)  # asyncio's datagram buffer, as pyroute2 receives into
    after, _ = malloc_info()
    print(after - before)
"""


@pytest.mark.parametrize("tuned", [False, True], ids=["as-is", "tuned"])
def test_a_large_buffer_stays_in_mmap_after_a_larger_one_was_freed(tuned: bool) -> None:
    """The dynamic threshold would put the next 256 KiB buffer on the heap, where the small
    message it shrinks to pins a hole; with the threshold fixed it is mmapped, returned
    whole. The untuned case shows the test can tell the two apart."""
    assert MMAP_THRESHOLD < 256 << 10
    assert _child(_BUFFER_AFTER_A_LARGER_FREE, tuned) == ("1" if tuned else "0")


_THREADS_ALLOCATING_AT_ONCE = """
    import threading
    barrier = threading.Barrier(4)
    kept = []

    def allocate():
        kept.append([bytes(2000) for _ in range(500)])  # past pymalloc: malloc itself
        barrier.wait()

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(malloc_info()[1])
"""


@pytest.mark.parametrize("tuned", [False, True], ids=["as-is", "tuned"])
def test_threads_share_one_arena(tuned: bool) -> None:
    """Untuned, threads allocating at once get arenas of their own (each fragmenting on its
    own); tuned, every thread allocates from the one main arena."""
    heaps = int(_child(_THREADS_ALLOCATING_AT_ONCE, tuned))
    assert heaps == 1 if tuned else heaps > 1
