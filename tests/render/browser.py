"""A real headless Chromium for the report's tests: the DOM after scripts ran, screenshots,
and a PNG decoder (zlib and struct; no image library) to look at the pixels."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import IN_CI

__all__ = ["Browser", "browser_or_skip", "png_pixels"]

_NAMES = ("chromium", "chromium-browser")


class Browser:
    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="reconciler-chromium-") as profile:
            argv = [
                self.path,
                "--headless",
                "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
                "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
            ]
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def dump_dom(self, url: str) -> str:
        """The DOM as serialised after the page's scripts ran."""
        done = self._run("--dump-dom", url)
        assert done.returncode == 0 and done.stdout, done.stderr[-2000:]
        return done.stdout

    def screenshot(
        self, url: str, target: Path, *, size: tuple[int, int] = (1280, 1400), dark: bool = False
    ) -> Path:
        extra = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark else []
        done = self._run(
            f"--screenshot={target}", f"--window-size={size[0]},{size[1]}", *extra, url
        )
        assert done.returncode == 0 and target.exists(), done.stderr[-2000:]
        return target

    def print_to_pdf(self, url: str, target: Path) -> bytes:
        """The page printed (print style sheet) as Chromium's PDF."""
        done = self._run("--no-pdf-header-footer", f"--print-to-pdf={target}", url)
        assert done.returncode == 0 and target.exists(), done.stderr[-2000:]
        return target.read_bytes()


def browser_or_skip() -> Browser:
    """Debian's chromium; missing, the test is skipped, except in CI, where it fails."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return Browser(path)
    reason = "needs chromium (scripts/system-deps installs it as root)"
    if IN_CI:
        pytest.fail(f"browser tests must run in CI but cannot: {reason}")
    pytest.skip(reason)


def png_pixels(path: Path) -> tuple[int, int, Counter[tuple[int, int, int]]]:
    """Width, height and a count of every RGB colour of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat = 8, b""
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    colours: Counter[tuple[int, int, int]] = Counter()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        for i in range(0, stride, channels):
            colours[(line[i], line[i + 1], line[i + 2])] += 1
        previous = line
    return width, height, colours
