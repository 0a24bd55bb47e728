"""A held-back action as JSON: one shape for `apply --json` and `status --json`."""

from __future__ import annotations

from typing import Any

from reconciler.model.plan import Held
from reconciler.render.timefmt import iso

__all__ = ["held_json"]


def held_json(item: Held) -> dict[str, Any]:
    """key, kind, why it is held (`backoff`, `permanent-failure`, ...), detail, and until when
    (ISO 8601 UTC; None when only a change of the configuration, or of the WAN for the
    `upstream` and `no-owner` holds, lifts it)."""
    return {
        "key": item.action.key,
        "kind": item.action.KIND,
        "why": item.why,
        "detail": item.detail,
        "until": iso(item.until),
    }
