"""render_report on extracted reports: words the tables use for outcomes and open outages."""

from __future__ import annotations

from reconciler.model.facts import ActionFailed, ActionStarted, Envelope, ProbeObserved
from reconciler.model.incidents import extract
from reconciler.render.report import render_report
from tests.commands.test_report import page_text

T0 = 1_700_000_000.0


def _envelopes(*facts: tuple[float, object]) -> list[Envelope]:
    return [
        Envelope(seq, T0 + offset, "test", fact)  # type: ignore[arg-type]
        for seq, (offset, fact) in enumerate(facts, start=1)
    ]


def test_an_unconfirmed_update_and_an_open_outage_read_as_such() -> None:
    key = "update-he-endpoint:203.0.113.9"
    report = extract(
        _envelopes(
            (0, ProbeObserved("ipv6", "t", True)),
            (10, ProbeObserved("ipv6", "t", False)),
            (20, ProbeObserved("ipv6", "t", False)),
            (30, ProbeObserved("ipv6", "t", False)),
            (31, ActionStarted(key, "update-he-endpoint", "new address")),
            (61, ActionFailed(key, "update-he-endpoint", "temporary", "timeout", unconfirmed=True)),
        ),
        since=T0,
        until=T0 + 100,
    )
    text = page_text(render_report(report, generated=T0 + 100))
    assert "failed (temporary, unconfirmed: it may have taken effect)" in text
    assert "1 outage (1 still open at the end of the window)" in text
    assert "still open 1m30s so far" in text and "not yet" in text  # from the first failure
