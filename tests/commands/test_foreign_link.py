"""A tunnel.interface that names a link reconciler did not make: `apply` leaves the link as
it is, the restart-tunnel fails permanently in one line, and `diff` and `status` show why
(real links in a test namespace, the fake HE there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import fake_he_in, linux_config_text, router_netns

REPO = Path(__file__).resolve().parents[2]

REFUSAL = (
    "wanpeer is a veth link, not a vxlan tunnel: reconciler deletes or changes only vxlan "
    "tunnels (delete wanpeer yourself, or set another tunnel.interface)"
)


def _cli(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "reconciler", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _link(netns: str, name: str) -> dict[str, object]:
    shown = subprocess.run(
        ["ip", "-n", netns, "-d", "-j", "link", "show", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    link: dict[str, object] = json.loads(shown.stdout)[0]
    return link


def test_apply_leaves_a_link_of_another_kind_and_says_so(
    lab_available: None, tmp_path: Path
) -> None:
    with (
        router_netns(f"rcf{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        text = linux_config_text(tmp_path, wan="wan0", update_url=update_url)
        config.write_text(text.replace('interface = "rctun0"', 'interface = "wanpeer"'))
        before = _link(netns, "wanpeer")

        applied = _cli(netns, "apply", "-c", str(config), "--json")
        assert applied.returncode == 2, applied.stderr
        report = json.loads(applied.stdout)
        tunnel = [e for e in report["actions"] if e["key"].startswith("restart-tunnel:")]
        assert [(e["status"], e["message"]) for e in tunnel] == [("permanent", REFUSAL)]

        after = _link(netns, "wanpeer")
        assert after["ifindex"] == before["ifindex"]
        assert after["linkinfo"] == before["linkinfo"]  # still the veth, untouched
        wan = _link(netns, "wan0")
        assert wan["linkinfo"]["info_kind"] == "veth"  # type: ignore[index]

        diff = _cli(netns, "diff", "-c", str(config))
        assert REFUSAL in diff.stdout, diff.stdout + diff.stderr
        status = _cli(netns, "status", "-c", str(config))
        assert status.returncode in (0, 2), status.stderr
        assert REFUSAL in status.stdout, status.stdout
