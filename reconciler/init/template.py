"""The documented example configuration, with values filled in and its comments kept.

`fill(template, values, notes)` edits the example line by line: a key's line (active, or
commented out like `# info_url = ...`) gets the new value; a key set to None is commented
out, which gives the platform's default; `notes` are comment lines put under a section's
header. Everything else, the documentation above each key included, stays as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = ["comment_text", "example_config", "fill", "toml_value"]

_SECTION = re.compile(r"^\[([A-Za-z0-9_.]+)\]\s*$")
_KEY = re.compile(r"^(#\s*)?([A-Za-z0-9_]+)\s*=")
# The example puts a key's own remark after three spaces: `key = value   # remark`.
_REMARK = "   # "


def example_config(platform: str = "openbsd") -> str:
    """The platform's example shipped with the package (the repository's etc/reconciler.conf
    for OpenBSD, etc/reconciler.linux.conf for Linux)."""
    name = "example-linux.conf" if platform == "linux" else "example.conf"
    return resources.files("reconciler.init").joinpath(name).read_text("utf-8")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _toml_string(text: str) -> str:
    """A TOML basic string that reads back as `text` and stays on its line: quote,
    backslash, every control character (DEL and C1 included) and the Unicode line and
    paragraph separators escaped. A lone surrogate has no TOML form (ValueError)."""
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04X}")
        elif unicodedata.category(ch) == "Cs":
            raise ValueError(f"no TOML form for a lone surrogate (U+{ord(ch):04X})")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def comment_text(text: str) -> str:
    """`text` fit for a `# ...` line: anything that could end the line or confuse a
    terminal (control characters, line separators) shown as `?`."""
    return "".join(
        "?" if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch for ch in text
    )


def fill(
    template: str,
    values: Mapping[str, Any],
    notes: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """`template` with each "section.key" in `values` set (None: commented out)."""
    notes = notes or {}
    lines = template.splitlines()
    out: list[str] = []
    section = ""
    done: set[str] = set()
    pending: dict[str, list[str]] = {}  # section -> keys still to append at its end

    def close_section() -> None:
        for name in pending.pop(section, []):
            if values[name] is not None:
                _insert_before_blank(out, f"{name.rsplit('.', 1)[1]} = {toml_value(values[name])}")
            done.add(name)

    wanted_sections: dict[str, list[str]] = {}
    for name in values:
        wanted_sections.setdefault(name.rsplit(".", 1)[0], []).append(name)

    for line in lines:
        header = _SECTION.match(line)
        if header:
            close_section()
            section = header.group(1)
            pending[section] = [n for n in wanted_sections.get(section, []) if n not in done]
            out.append(line)
            out.extend(f"# {comment_text(note)}" for note in notes.get(section, ()))
            continue
        match = _KEY.match(line)
        name = f"{section}.{match.group(2)}" if match else ""
        if match and name in values and name not in done:
            commented = match.group(1) is not None
            # A commented-out example further down may be the key's documented default:
            # fill the first line that names the key, active or not, and only once.
            remark = line[line.index(_REMARK) :] if commented and _REMARK in line else ""
            value = values[name]
            if value is None:
                out.append(line if commented else f"# {line}")
            else:
                out.append(f"{match.group(2)} = {toml_value(value)}{remark}")
            done.add(name)
            pending[section] = [n for n in pending.get(section, []) if n != name]
            continue
        out.append(line)
    close_section()
    for head, names in wanted_sections.items():  # sections the example does not have
        missing = [n for n in names if n not in done and values[n] is not None]
        if missing:
            out.extend(["", f"[{head}]"])
            out.extend(f"{n.rsplit('.', 1)[1]} = {toml_value(values[n])}" for n in missing)
    return "\n".join(out) + "\n"


def _insert_before_blank(out: list[str], line: str) -> None:
    """Append `line` to the section just written, above the blank lines that end it."""
    at = len(out)
    while at > 0 and not out[at - 1].strip():
        at -= 1
    out.insert(at, line)
