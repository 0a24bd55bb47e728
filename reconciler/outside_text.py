"""Text from outside (a hook's or a command's stderr, HE's bodies, tunnelInfo values): one
cleaning, where it enters a fact, and a last guard where anything reaches a terminal.

Such text may carry terminal escapes: an OSC that retitles the window, a CSI that clears the
screen or moves the cursor to overwrite a line with fake text, a bidi override that turns a
line around. `clean_line` removes escape sequences whole (ESC and C1 forms: CSI, OSC, DCS,
SOS, PM, APC and the two-character ones), turns every other character that is not printable
(C0 and C1 controls, DEL, format and separator characters) into a space, makes the result
one line and bounds its length. `last_line` is the same for a program's output, keeping its
last non-blank line (the reason a failing command gives).

`printable_output` is the guard for what is printed: it keeps newlines and tabs and shows any
other control character as a visible escape (`\\x1b`), so that even a fact written before
this cleaning existed (an old log) cannot drive the terminal that shows it.
"""

from __future__ import annotations

import io
import re
from typing import TextIO

__all__ = ["LIMIT", "SafeStream", "clean_line", "last_line", "printable_output"]

LIMIT = 300  # characters kept of one line of outside text, by default

# Escape sequences, ESC-introduced or as C1 controls: CSI (ESC [ or 0x9b) parameters and a
# final byte; OSC, DCS, SOS, PM, APC (ESC ] P X ^ _ or 0x9d 0x90 0x98 0x9e 0x9f) up to BEL
# or ST (ESC \ or 0x9c), or to the end of the text when unterminated; any other ESC and the
# character after it.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[\x20-\x3f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x7e]?",
    re.DOTALL,
)
# What a terminal may act on: C0 but newline and tab, DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _without_escapes(text: str) -> str:
    return _ESCAPE.sub("", text)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _bounded(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: max(0, limit - 3)] + "..."


def clean_line(text: str, limit: int = LIMIT) -> str:
    """`text` without escape sequences or other unprintable characters, as one line (runs
    of whitespace become one space), at most `limit` characters ("..." ends a cut line)."""
    return _bounded(" ".join(_printable(_without_escapes(text)).split()), limit)


def last_line(text: str, limit: int = 200) -> str:
    """The last non-blank line of a program's output, cleaned as clean_line does."""
    for line in reversed(_without_escapes(text).splitlines()):
        cleaned = clean_line(line, limit)
        if cleaned:
            return cleaned
    return ""


def _shown(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable_output(text: str) -> str:
    """`text` with every control character but newline and tab shown as `\\xNN`."""
    return _CONTROL.sub(_shown, text) if _CONTROL.search(text) else text


class SafeStream(io.TextIOBase):
    """A text stream that writes through printable_output to `target` (the CLI's stdout and
    stderr)."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(printable_output(text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def writable(self) -> bool:
        return True
