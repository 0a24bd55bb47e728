"""`reconciler replay` tells the notifications each fact caused, as the daemon tells its
[notify] hooks (the same reconciler.model.notices logic), in text and in --json."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_diff import FIXTURE, run_cli


def test_replay_shows_the_notifications_of_the_story(tmp_path: Path) -> None:
    code, out, err = run_cli(["replay", "--state-dir", str(FIXTURE)], tmp_path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    changed = "    notice address-changed: the WAN address changed from 203.0.113.7 to 203.0.113.9"
    assert changed in lines
    failed = [line for line in lines if line.startswith("    notice action-failed: restart-tunnel")]
    assert failed
    # each notice sits under the record that caused it
    head = next(h for h in reversed(lines[: lines.index(changed)]) if not h.startswith(" "))
    assert "wan-address-observed" in head


def test_replay_json_carries_the_notifications(tmp_path: Path) -> None:
    code, out, _ = run_cli(["replay", "--json", "--state-dir", str(FIXTURE)], tmp_path)
    assert code == 0
    entries = json.loads(out)["entries"]
    told = [(e["seq"], n) for e in entries for n in e["notices"]]
    events = [n["event"] for _, n in told]
    assert "address-changed" in events and "action-failed" in events
    seq, change = next((s, n) for s, n in told if n["event"] == "address-changed")
    assert change["seq"] == seq
    assert (change["wan_address"], change["previous_address"]) == ("203.0.113.9", "203.0.113.7")
