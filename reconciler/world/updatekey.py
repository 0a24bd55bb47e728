"""The HE update key: read from its file, checked, and every form it could take in a message.

HE issues update keys of printable ASCII (the Advanced tab shows them), so a key file must
hold one line of printable ASCII, surrounding whitespace aside (`echo KEY > file` adds a
newline). Anything else is a mistake in the file, refused before any request with one line
that names the file and what is wrong, never the key nor any part of it: not a character,
not a position. (Sending such a key would also leak it: requests encodes the Basic token in
latin-1 where a scrubber building it from UTF-8 would not recognise it.)

`secret_forms()` lists what a message must never contain: the key itself and each encoding
a server, a proxy or an exception could echo it in (Basic tokens in UTF-8 and latin-1,
URL-, HTML- and JSON-escaped). `scrub()` replaces each with `***`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
from pathlib import Path
from typing import Final
from urllib.parse import quote, quote_plus

__all__ = [
    "MAX_KEY_LENGTH",
    "UpdateKeyError",
    "key_problem",
    "read_update_key",
    "scrub",
    "secret_forms",
]

# HE's keys are 16 characters; a user-chosen one is short too. A file far longer is not a key.
MAX_KEY_LENGTH: Final = 256
# Whitespace allowed around the key (a trailing newline, stray spaces).
_AROUND: Final = b" \t\r\n"


class UpdateKeyError(Exception):
    """The key file is missing, unreadable or does not hold a key; the message names the file
    and the problem, never its content."""


def read_update_key(path: Path) -> str:
    """The update key in `path`, checked; UpdateKeyError (one line, no secret) otherwise."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_LENGTH * 4 + 64)
    except FileNotFoundError:
        raise UpdateKeyError(f"update key file {path} does not exist") from None
    except OSError as exc:
        reason = exc.strerror or "unreadable"
        raise UpdateKeyError(f"update key file {path} cannot be read: {reason}") from None
    problem = key_problem(data)
    if problem is not None:
        raise UpdateKeyError(f"update key file {path} {problem}")
    return data.strip(_AROUND).decode("ascii")


def key_problem(data: bytes) -> str | None:
    """What makes the content of a key file unusable (a phrase after the file's name), or
    None. The phrase says what kind of problem, never which character or where."""
    key = data.strip(_AROUND)
    if not key:
        return "is empty"
    if b"\n" in key or b"\r" in key:
        return "holds more than one line (it must hold the update key alone)"
    if len(key) > MAX_KEY_LENGTH:
        return f"holds more than {MAX_KEY_LENGTH} characters (not an update key)"
    if any(byte < 0x20 or byte > 0x7E for byte in key):
        return (
            "holds characters other than printable ASCII (HE issues update keys of "
            "printable ASCII: copy it again from the Advanced tab)"
        )
    return None


def secret_forms(username: str, key: str) -> tuple[str, ...]:
    """The key and every encoding of it a message could carry, longest first (so a form that
    contains another is replaced whole)."""
    if not key:
        return ()
    forms = {key, quote(key, safe=""), quote(key), quote_plus(key), html.escape(key)}
    forms.add(json.dumps(key)[1:-1])
    forms.add(json.dumps(key, ensure_ascii=False)[1:-1])
    forms.add(repr(key)[1:-1])
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):
            raw_key = key.encode(encoding)
            # Bytes read back in another encoding (an echo decoded as latin-1, say).
            forms.add(raw_key.decode("latin-1"))
            forms.add(quote(raw_key, safe=""))
            forms.add(quote_plus(raw_key))
        for text in (f"{username}:{key}", key):
            try:
                raw = text.encode(encoding)
            except UnicodeEncodeError:
                continue
            for token in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
                forms.add(token.decode("ascii"))
                forms.add(token.decode("ascii").rstrip("="))
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def scrub(text: str, forms: tuple[str, ...]) -> str:
    """`text` with every form of the secret replaced by ***."""
    for form in forms:
        text = text.replace(form, "***")
    return text
