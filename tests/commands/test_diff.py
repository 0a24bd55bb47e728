"""`reconciler diff` through the real CLI on a real event log: exit codes, text, JSON."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from reconciler.cli import Environment, main
from reconciler.eventlog import EventLog
from reconciler.model import facts as f
from tests.config.test_configfile import VALID, write_config

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "story-state"


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, Environment(stdout=out, stderr=err, environ={}, cwd=cwd))
    return code, out.getvalue(), err.getvalue()


def story_copy(tmp_path: Path) -> Path:
    target = tmp_path / "story-state"
    shutil.copytree(FIXTURE, target)
    return target


def test_diff_on_story_log_shows_pending_restart(tmp_path: Path) -> None:
    """On the committed story log the tunnel still has the old address: exit 2, one action."""
    config = write_config(tmp_path)
    state = story_copy(tmp_path)
    code, out, err = run_cli(["diff", "-c", str(config), "--state-dir", str(state)], tmp_path)
    assert (code, err) == (2, "")
    assert "-/+ restart-tunnel" in out
    assert "203.0.113.7 to 198.51.100.1" in out and "203.0.113.9 to 198.51.100.1" in out
    assert out.rstrip().splitlines()[-1] == "Plan: 1 action (restart-tunnel)."


def test_diff_json_on_story_log(tmp_path: Path) -> None:
    """--json prints the versioned document with the same plan."""
    config = write_config(tmp_path)
    state = story_copy(tmp_path)
    code, out, _ = run_cli(
        ["diff", "--json", "-c", str(config), "--state-dir", str(state)], tmp_path
    )
    document = json.loads(out)
    assert code == 2 and document["schema"] == "reconciler.diff/1"
    assert [a["key"] for a in document["actions"]] == ["restart-tunnel:203.0.113.9->198.51.100.1"]
    assert document["changes"] is True and document["seq"] == 22


def test_diff_healthy_log_exit_0(tmp_path: Path) -> None:
    """A log showing everything as configured gives exit 0 and the no-changes line."""
    config = write_config(tmp_path)
    state = tmp_path / "state"
    addr = "203.0.113.7"
    with EventLog.open(state / "events") as log:
        for fact in [
            f.WanAddressObserved("veth0", addr, True),
            f.TunnelObserved("he-ipv6", True, True, addr, "198.51.100.1"),
            f.EndpointObserved(addr, "update", for_local=addr),
            f.ProbeObserved("ipv4", "198.51.100.53", True),
            f.ProbeObserved("ipv6", "2001:db8::53", True),
        ]:
            log.append(f.to_record(fact, at=1_714_564_800.0, source="test"))
    code, out, err = run_cli(["diff", "-c", str(config)], tmp_path)
    assert (code, err) == (0, "")
    assert out.endswith("No changes. The network matches the configuration.\n")


def test_diff_bad_config_exit_1(tmp_path: Path) -> None:
    """A broken config makes diff exit 1 with one line per problem, no traceback."""
    config = write_config(tmp_path, VALID.replace('mode = "vxlan"', 'mode = "tun"'))
    code, out, err = run_cli(["diff", "-c", str(config)], tmp_path)
    assert code == 1 and out == ""
    assert "tunnel.mode" in err and "Traceback" not in err


def test_diff_on_an_empty_state_dir_lists_what_is_not_observed(tmp_path: Path) -> None:
    """A state dir with no log never claims a match: it lists what is unobserved, exit 1."""
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    code, out, err = run_cli(["diff", "-c", str(config)], tmp_path)
    assert (code, err) == (1, "")
    assert "No changes" not in out
    assert out.rstrip().splitlines()[-1] == (
        "Not observed yet: WAN, IPv4 probe, IPv6 probe, tunnel (run `reconciler diff --observe`)."
    )


def test_diff_json_lists_unobserved_and_exits_1(tmp_path: Path) -> None:
    """A pending plan over a partly observed log still exits 1 and names the missing part."""
    config = write_config(tmp_path)
    with EventLog.open(tmp_path / "state" / "events") as log:
        for fact in [
            f.WanAddressObserved("veth0", "203.0.113.7", True),
            f.TunnelObserved("he-ipv6", True, True, "203.0.113.7", "198.51.100.1"),
            f.ProbeObserved("ipv4", "198.51.100.53", True),
        ]:
            log.append(f.to_record(fact, at=1_714_564_800.0, source="test"))
    code, out, _ = run_cli(["diff", "--json", "-c", str(config)], tmp_path)
    document = json.loads(out)
    assert code == 1
    assert document["unobserved"] == ["IPv6 probe"]
    assert document["summary"] == "Plan: 1 action (update-he-endpoint)."
    code, out, _ = run_cli(["diff", "-c", str(config)], tmp_path)
    assert code == 1
    assert out.rstrip().splitlines()[-1].startswith("Not observed yet: IPv6 probe (run")
