"""The update key reaches nothing a run produces, in any encoding, whatever HE echoes back.

A server echoing the Authorization header is the worst case: requests sends the Basic token
in latin-1, so a key outside ASCII once reached `apply --json`, the event log, a snapshot,
`replay` and `status --json` under an encoding the scrubber did not build. Such a key is
now refused before anything is sent; an ASCII key full of URL and HTML specials is sent and
its echo scrubbed. Every byte produced is searched for every encoding of the key (the tests'
own list: tests.daemon_helpers.key_encodings).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.daemon_helpers import (
    fake_he_control,
    fake_he_in,
    key_encodings,
    linux_config_text,
    router_netns,
    write_key,
)

REPO = Path(__file__).resolve().parents[2]


def _run(netns: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "reconciler", *argv],
        cwd=REPO, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "sent"),
    [
        pytest.param("sékrit-update-key-5e1a", False, id="non-ascii-refused"),
        pytest.param("key-€-7c2b", False, id="not-latin-1-refused"),
        pytest.param("Ab+/=%&<>\"'\\z~-k3y-9f0d", True, id="ascii-specials-echoed"),
    ],
)
def test_no_encoding_of_the_key_in_anything_a_run_produced(
    lab_available: None, tmp_path: Path, key: str, sent: bool
) -> None:
    """apply --json against an HE that echoes the Authorization header; then replay, status
    --json, diff --json and doctor; the outputs, the event log and the snapshots hold no form of the
    key. A key HE cannot have issued is refused in one line and never sent."""
    write_key(tmp_path, key)
    with (
        router_netns(f"rck{os.getpid()}") as netns,
        fake_he_in(netns, tmp_path) as update_url,
    ):
        config = tmp_path / "reconciler.conf"
        config.write_text(linux_config_text(tmp_path, wan="wan0", update_url=update_url))
        for _ in range(3):
            fake_he_control(netns, update_url, "reply?body=" + quote("echo: {authorization}"))
        runs = [_run(netns, "apply", "-c", str(config), "--json")]
        received = fake_he_control(netns, update_url, "stats")["updates_received"]
        state = ["--state-dir", str(tmp_path / "state")]
        runs += [
            _run(netns, "replay", *state),
            _run(netns, "replay", "--json", *state),
            _run(netns, "status", "--json", "-c", str(config)),
            _run(netns, "diff", "--json", "-c", str(config)),
            _run(netns, "check-config", "-c", str(config)),
        ]
        # doctor asks HE's tunnelInfo, which echoes the Authorization header too
        asks_he = tmp_path / "doctor.conf"
        info_url = update_url.replace("/nic/update", "/tunnelInfo.php")
        asks_he.write_text(
            config.read_text().replace(
                "[tunnelbroker]\n", f'[tunnelbroker]\ninfo_url = "{info_url}"\n', 1
            )
        )
        for _ in range(2):
            fake_he_control(netns, update_url, "reply?body=" + quote("echo: {authorization}"))
        runs += [
            _run(netns, "doctor", "--json", "-c", str(asks_he)),
            _run(netns, "doctor", "-c", str(asks_he)),
        ]
        # the netns has no default route, so doctor stops at check 2: ask check 4 directly
        check_4 = (
            "import sys\n"
            "from reconciler.configfile import load_config\n"
            "from reconciler.world.diagnose.checks import Doctor\n"
            "doctor = Doctor(load_config(sys.argv[1]))\n"
            "doctor.wan_address = '203.0.113.99'\n"
            "print(doctor.check_he_view())\n"
        )
        asked = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", check_4, str(asks_he)],
            cwd=REPO, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    produced = {f"{r.args[7]} #{i} {stream}": data for i, r in enumerate(runs)
                for stream, data in (("stdout", r.stdout), ("stderr", r.stderr))}  # fmt: skip
    produced["doctor's check 4"] = asked.stdout + asked.stderr
    for path in (tmp_path / "state").rglob("*") if (tmp_path / "state").exists() else []:
        if path.is_file():
            produced[str(path.relative_to(tmp_path))] = path.read_bytes()
    assert any("events" in name for name in produced) or not sent
    for name, data in produced.items():
        for form_name, form in key_encodings(key).items():
            assert form not in data, f"the key ({form_name}) leaked into {name}"
    if sent:
        assert b"tunnelInfo" in asked.stdout, asked  # HE was asked, and echoed the header
        assert received >= 1
        assert runs[0].returncode == 2, runs[0].stderr  # the echo is no answer HE gives
        assert b"Basic ***" in runs[0].stdout
    else:
        assert received == 0
        assert runs[0].returncode == 1
        lines = runs[0].stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "tunnelbroker.update_key_file" in lines[0], runs[0].stderr
        assert "printable ASCII" in lines[0]
