"""diff rendering against golden files (text and JSON), and its summary lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reconciler.model.facts import (
    ActionFailed,
    ActionStarted,
    ProbeObserved,
    TunnelObserved,
    WanAddressObserved,
)
from reconciler.render.diff import (
    NO_CHANGES,
    diff_json,
    diff_text,
    not_observed_line,
    summary_line,
    unobserved,
)
from tests.model.test_plan import healthy
from tests.model.world import HE_SERVER, History

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REGENERATE = bool(os.environ.get("RECONCILER_REGEN_GOLDEN"))


def story_history() -> History:
    """Story 2 at the moment the WAN is back with a new address, the update backing off."""
    history = healthy(History())
    history.record(WanAddressObserved("em0", "203.0.113.9", True))
    history.record(TunnelObserved("gif0", True, True, "203.0.113.7", HE_SERVER))
    history.record(ProbeObserved("ipv6", "2001:db8::53", False))
    key = "update-he-endpoint:203.0.113.9"
    history.record(ActionStarted(key, "update-he-endpoint", "x"))
    history.record(ActionFailed(key, "update-he-endpoint", "temporary", "911 from HE"))
    return history


def compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (RECONCILER_REGEN_GOLDEN=1 rewrites it)"


def test_diff_text_matches_golden() -> None:
    """The text plan (actions, held, summary) is exactly the golden transcript."""
    history = story_history()
    plan = history.plan(later=2)
    compare("diff_story.txt", diff_text(plan, history.state, history.desired()))


def test_diff_json_matches_golden() -> None:
    """The JSON plan is exactly the golden document, with its versioned schema."""
    history = story_history()
    plan = history.plan(later=2)
    document = diff_json(plan, history.state, history.desired())
    assert document["schema"] == "reconciler.diff/1"
    compare("diff_story.json", json.dumps(document, indent=2, sort_keys=True) + "\n")


def test_no_changes_summary() -> None:
    """A healthy world renders the no-changes line as its summary."""
    history = healthy(History())
    plan = history.plan()
    assert summary_line(plan) == NO_CHANGES
    assert diff_text(plan, history.state, history.desired()).endswith(NO_CHANGES + "\n")


def test_unobserved_names_what_the_config_observes_and_the_log_lacks() -> None:
    """With a hostname file configured, an empty state lacks WAN, probes, file and tunnel."""
    history = History()
    missing = unobserved(history.state, history.config)
    assert missing == ("WAN", "IPv4 probe", "IPv6 probe", "hostname file", "tunnel")
    assert unobserved(healthy(History()).state, history.config) == ()


def test_an_unobserved_world_never_renders_no_changes() -> None:
    """An empty plan over an unobserved state ends with the not-observed line, not a match."""
    history = History()
    plan = history.plan()
    missing = unobserved(history.state, history.config)
    text = diff_text(plan, history.state, history.desired(), missing)
    assert NO_CHANGES not in text
    assert text.endswith(not_observed_line(missing) + "\n")
    document = diff_json(plan, history.state, history.desired(), missing)
    assert document["summary"] == not_observed_line(missing) and document["unobserved"]
