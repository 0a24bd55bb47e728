"""docs/threat-model.md names the test behind each defence: every test it names exists (a
`::test_x` after a `tests/file.py::test_y` is in that same file)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAMED = re.compile(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?`")


def test_every_test_the_threat_model_names_exists() -> None:
    text = (REPO / "docs" / "threat-model.md").read_text()
    current: Path | None = None
    named = 0
    for match in _NAMED.finditer(text):
        path, test = match.groups()
        if path is None and test is None:
            continue
        if path is not None:
            current = REPO / path
            assert current.is_file(), path
        if test is not None:
            assert current is not None, test
            assert re.search(rf"^def {test}\(", current.read_text(), re.M), f"{current}::{test}"
            named += 1
    assert named >= 15
