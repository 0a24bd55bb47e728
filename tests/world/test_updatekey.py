"""The update key file: what is a key, and what a message about a bad one may say."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconciler.world.updatekey import (
    MAX_KEY_LENGTH,
    UpdateKeyError,
    read_update_key,
    scrub,
    secret_forms,
)
from tests.daemon_helpers import key_encodings

# Keys that are not keys, each with the characters a message about it must never show.
BAD_KEYS = [
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b"  \n\t\n", "is empty", id="whitespace-only"),
    pytest.param("sékrit-update-key".encode(), "printable ASCII", id="latin-letter"),
    pytest.param("key-with-€-sign".encode(), "printable ASCII", id="euro-sign"),
    pytest.param("sékrit".encode("latin-1"), "printable ASCII", id="latin-1-bytes"),
    pytest.param(b"first-line\nsecond-line\n", "more than one line", id="two-lines"),
    pytest.param(b"ctl\x01inner", "printable ASCII", id="control-char"),
    pytest.param(b"x" * (MAX_KEY_LENGTH + 1), "more than", id="too-long"),
]


@pytest.mark.parametrize(("content", "problem"), BAD_KEYS)
def test_a_bad_key_file_is_one_line_that_shows_nothing_of_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    """The error names the file and the kind of problem, never a character, a position or
    an encoding's complaint."""
    path = tmp_path / "he.key"
    path.write_bytes(content)
    with pytest.raises(UpdateKeyError) as caught:
        read_update_key(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and problem in message
    words = {w for w in content.decode("utf-8", "replace").split() if len(w) > 2}
    assert not any(word in message for word in words)
    for needle in ("é", "€", "position", "codec", "0x", "\\x", "line 2", "character '"):
        assert needle not in message, needle
    # No exception about the content rides along (a traceback would print it).
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_a_good_key_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    """Printable ASCII (spaces and punctuation inside included), newline and spaces around
    dropped."""
    path = tmp_path / "he.key"
    path.write_bytes(b"  Ab+/=%&<>\"' \\z~-key \n")
    assert read_update_key(path) == "Ab+/=%&<>\"' \\z~-key"


def test_missing_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UpdateKeyError, match="does not exist"):
        read_update_key(tmp_path / "nope")
    with pytest.raises(UpdateKeyError, match="cannot be read"):
        read_update_key(tmp_path)


@pytest.mark.parametrize(
    "key", ["Ab+/=%&<>\"' \\z~-key", "k3y-Sup3rSecret-2f9a7c", "sékrit-€-not-sent-anyway"]
)
def test_every_encoding_of_the_key_is_scrubbed(key: str) -> None:
    """Whatever form an echo takes (the tests' own list of forms), the scrubber removes it."""
    forms = secret_forms("rcuser", key)
    for name, encoded in key_encodings(key).items():
        text = f"before {encoded.decode('latin-1')} after"
        cleaned = scrub(text, forms)
        for other in key_encodings(key).values():
            assert other.decode("latin-1") not in cleaned, (name, cleaned)
    token = base64.b64encode(f"rcuser:{key}".encode()).decode()
    assert scrub(f"Authorization: Basic {token}", forms) == "Authorization: Basic ***"
