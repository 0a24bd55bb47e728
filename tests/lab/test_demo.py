"""`reconciler lab demo`: the whole demo; refuses politely without root; one line per fact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.lab.demo import describe_envelope
from reconciler.lab.topology import MODE_ENV
from reconciler.model.facts import Envelope, WanAddressObserved

# Import everything first: once unprivileged, root's interpreter files may be unreadable.
_AS_NOBODY = """
import os, sys
import reconciler.cli, reconciler.commands.lab, reconciler.lab.demo
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(reconciler.cli.main(["lab", "demo"]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root")
def test_demo_without_root_says_so_in_one_line_and_exits_1() -> None:
    """Run as `nobody`, the demo prints one line naming root and exits 1, no traceback."""
    done = subprocess.run([sys.executable, "-c", _AS_NOBODY], capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_demo_names_its_tunnel_mode_and_shows_the_repair(lab_available: None) -> None:
    """The demo runs to its end: it says which tunnel it uses (sit where the kernel has it,
    as in the UML guest; vxlan otherwise), the repair after the WAN move, and a diff with
    nothing left to do."""
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "lab", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    for line in done.stdout.splitlines():  # the demo leaves its report for the user: not ours
        if line.startswith("the report of this run: "):
            shutil.rmtree(Path(line.split(": ", 1)[1].split()[0]).parent, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    # By now the lab's own probe has loaded the sit module wherever the kernel has one.
    expected = os.environ.get(MODE_ENV) or ("sit" if Path("/sys/module/sit").exists() else "vxlan")
    assert f"== tunnel mode: {expected} (" in done.stdout
    assert "== repaired: IPv6 crosses the tunnel again" in done.stdout
    assert "No changes. The network matches the configuration." in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_describe_envelope_is_one_line_with_time_source_type_and_news() -> None:
    """A fact becomes one line: UTC time, source, type, and only the fields that say something."""
    fact = WanAddressObserved(interface="wan0", address="203.0.113.11", link_up=True)
    line = describe_envelope(Envelope(seq=7, at=0.5, source="observer:wan", fact=fact))
    assert "\n" not in line
    assert line.startswith("00:00:00.500  observer:wan")
    assert "wan-address-observed" in line and "address=203.0.113.11" in line
    assert "addresses=" not in line


def test_demo_runs_the_repair_and_writes_the_report_of_its_run(lab_available: None) -> None:
    """`reconciler lab demo` end to end: the repair is seen, and the page it points to holds
    the run's outage, closed, with its actions."""
    import io
    import re
    import shutil
    from pathlib import Path

    from reconciler.lab.demo import run_demo

    out, err = io.StringIO(), io.StringIO()
    assert run_demo(out, err) == 0, out.getvalue() + err.getvalue()
    said = re.search(r"the report of this run: (\S+\.html)", out.getvalue())
    assert said is not None, out.getvalue()[-3000:]
    page = Path(said[1])
    try:
        html = page.read_text()
        assert re.search(r'<tr id="inc-\d+" class="incident closed"', html)
        assert re.search(r"update-he-endpoint: <span class=\"o-ok\">succeeded", html)
        assert page.parent.stat().st_mode & 0o777 == 0o755
    finally:
        shutil.rmtree(page.parent)
