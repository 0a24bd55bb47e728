"""Tests for `reconciler apply`: a real Linux platform in a namespace, the fake HE there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from reconciler.eventlog import EventLog
from reconciler.model.facts import ActionStarted, from_record
from tests.daemon_helpers import (
    TEST_KEY,
    fake_he_control,
    fake_he_in,
    linux_config_text,
    router_netns,
)

REPO = Path(__file__).resolve().parents[2]


def _apply(netns: str, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "reconciler", "apply",
         "-c", str(config), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_apply_converges_then_has_nothing_to_do(lab_available: None, tmp_path: Path) -> None:
    """The first apply updates HE and builds the tunnel (exit 0); the second does nothing."""
    with (
        router_netns(f"rca{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=update_url))
        first = _apply(netns, config, "--json")
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["schema"] == "reconciler.apply/1"
        assert report["result"] == "done"
        keys = [entry["key"] for entry in report["actions"]]
        assert "update-he-endpoint:203.0.113.7" in keys
        assert any(key.startswith("restart-tunnel:203.0.113.7->") for key in keys)
        assert all(entry["status"] == "ok" for entry in report["actions"])

        second = _apply(netns, config)
        assert second.returncode == 0, second.stderr
        assert "No changes" in second.stdout
        assert TEST_KEY not in first.stdout + first.stderr + second.stdout + second.stderr


def test_apply_exits_2_when_an_action_fails(lab_available: None, tmp_path: Path) -> None:
    """HE unreachable: the update fails, is recorded, and apply exits 2 naming it."""
    with router_netns(f"rcb{os.getpid()}") as netns:
        config = tmp_path / "reconciler.conf"
        config.write_text(
            linux_config_text(tmp_path, wan="wan0", update_url="http://127.0.0.1:9/nic/update")
        )
        done = _apply(netns, config)
        assert done.returncode == 2, done.stderr
        assert "FAILED (temporary)" in done.stdout and "update-he-endpoint" in done.stdout
        with EventLog.open(tmp_path / "state" / "events", readonly=True) as log:
            started = [
                from_record(seq, record).fact
                for seq, record in log.read(1)
                if record.get("t") == ActionStarted.TYPE
            ]
        assert [f.key for f in started] == ["update-he-endpoint:203.0.113.7"]


def test_apply_exits_2_while_a_permanent_failure_holds_the_repair(
    lab_available: None, tmp_path: Path
) -> None:
    """After badauth nothing runs, yet the tunnel stays broken: apply says so and exits 2."""
    with (
        router_netns(f"rcp{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=update_url))
        fake_he_control(netns, update_url, "script?answers=badauth")
        first = _apply(netns, config)
        assert first.returncode == 2, first.stderr
        assert "FAILED (permanent)" in first.stdout

        second = _apply(netns, config, "--json")
        assert second.returncode == 2, second.stderr
        report = json.loads(second.stdout)
        assert report["result"] == "blocked" and report["actions"] == []
        assert "permanent-failure" in {entry["why"] for entry in report["held"]}
        third = _apply(netns, config)
        assert third.returncode == 2
        assert "stuck by permanent-failure" in third.stdout
        assert fake_he_control(netns, update_url, "stats")["updates_received"] == 1


def test_apply_on_a_full_disk_acts_and_says_so_in_one_line(
    lab_available: None, tmp_path: Path
) -> None:
    """The state directory full: apply still repairs (HE updated, tunnel built), then says in
    one line that the event log could not take what happened, and exits 1; with space back
    the next apply records normally and the log verifies clean."""
    from reconciler.eventlog import verify
    from tests.smallfs import fill_up, small_filesystem

    with (
        small_filesystem() as state,
        router_netns(f"rcf{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        (tmp_path / "state").symlink_to(state)
        EventLog.open(state / "events").close()  # the daemon ran here before
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=update_url))
        ballast = fill_up(state)
        full = _apply(netns, config)
        assert full.returncode == 1, full.stdout + full.stderr
        (line,) = full.stderr.splitlines()
        assert line.startswith(
            f"reconciler: the event log in {tmp_path / 'state'} could not take "
        ) and line.endswith(
            " facts (No space left on device): what was observed and done is not recorded"
        )
        assert "done" in full.stdout and "update-he-endpoint:203.0.113.7" in full.stdout
        assert fake_he_control(netns, update_url, "stats")["updates_received"] == 1
        assert verify(state / "events").ok

        ballast.unlink()
        again = _apply(netns, config)
        assert again.returncode == 0, again.stderr
        assert verify(state / "events").ok
        with EventLog.open(state / "events", readonly=True) as log:
            assert log.last_seq > 0


def test_apply_rebuilds_the_tunnel_after_an_update_answered_too_late(
    lab_available: None, tmp_path: Path
) -> None:
    """HE applies the update but answers after the read timeout: apply records it as
    unconfirmed and goes on to rebuild the tunnel for the new address in the same run (so
    that the tunnel can tell whether HE has it); it exits 2, the update having failed."""
    with (
        router_netns(f"rcu{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=update_url))
        fake_he_control(netns, update_url, "reply?apply=1&delay=3")
        done = _apply(netns, config, "--json")
        assert done.returncode == 2, done.stderr
        report = json.loads(done.stdout)
        statuses = {entry["key"]: entry["status"] for entry in report["actions"]}
        assert statuses["update-he-endpoint:203.0.113.7"] == "temporary"
        assert any(
            key.startswith("restart-tunnel:203.0.113.7->") and status == "ok"
            for key, status in statuses.items()
        ), statuses
        assert fake_he_control(netns, update_url, "stats")["endpoint"] == "203.0.113.7"


def test_a_log_stamped_in_the_future_does_not_hold_the_update(
    lab_available: None, tmp_path: Path
) -> None:
    """The last update is stamped 2 h ahead of the clock (a clock that was wrong, then
    corrected): after a WAN change the next apply sends HE the update at once; it used to
    be held by min_update_interval, the hold sliding forward with every run."""
    import time

    from reconciler.model.facts import (
        ActionSucceeded,
        EndpointObserved,
        WanAddressObserved,
        to_record,
    )

    with (
        router_netns(f"rcz{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path, endpoint="203.0.113.9") as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        text = linux_config_text(
            tmp_path, wan="wan0", update_url=update_url, min_update_interval=600.0
        )
        config.write_text(text)
        key = "update-he-endpoint:203.0.113.9"
        ahead = time.time() + 7200.0
        with EventLog.open(tmp_path / "state" / "events") as log:
            for fact in (
                WanAddressObserved("wan0", "203.0.113.9", True),
                ActionStarted(key, "update-he-endpoint", "WAN changed"),
                ActionSucceeded(key, "update-he-endpoint", "good 203.0.113.9"),
                EndpointObserved("203.0.113.9", "update", for_local="203.0.113.9"),
            ):
                log.append(to_record(fact, at=ahead, source="test"))
        first = json.loads(_apply(netns, config, "--json").stdout)
        statuses = {entry["key"]: entry["status"] for entry in first["actions"]}
        assert statuses.get("update-he-endpoint:203.0.113.7") == "ok", first
        second = json.loads(_apply(netns, config, "--json").stdout)
        assert (second["actions"], second["held"]) == ([], []), second
        stats = fake_he_control(netns, update_url, "stats")
        assert stats["endpoint"] == "203.0.113.7" and stats["updates_received"] == 1
