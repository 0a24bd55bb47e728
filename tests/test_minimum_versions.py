"""pyproject.toml's lower bounds and constraints/minimum.txt say the same versions, so that
what `make test-minimum` runs against is exactly what the package declares (Debian 12's)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEBIAN_12 = {
    "attrs": "22.2.0",
    "requests": "2.28.1",
    "apscheduler": "3.9.1",
    "prometheus-client": "0.16.0",
    "msgpack": "1.0.3",
    "pyroute2": "0.7.2",
}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _release(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def test_every_lower_bound_is_the_pinned_minimum_and_debian_12s() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement)
        assert match, f"no lower bound in {requirement!r}"
        bounds[_name(match.group(1))] = _release(match.group(2))
    pins = {}
    for line in (REPO / "constraints" / "minimum.txt").read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9_.-]+)==([0-9.]+)$", line.strip()):
            pins[_name(match.group(1))] = _release(match.group(2))
    assert {name: pins.get(name) for name in bounds} == bounds
    assert bounds == {name: _release(version) for name, version in DEBIAN_12.items()}
