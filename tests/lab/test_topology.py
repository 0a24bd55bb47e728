"""The lab's topology on its own: namespaces, the veth internet, the tunnel, teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest

from reconciler.lab.topology import (
    FIRST_WAN_ADDRESS,
    HE_ADDRESS,
    HE_PORT,
    MODE_ENV,
    TUNNEL_ID,
    USERNAME,
    Lab,
    LabError,
    render_toml,
    wait_until,
)


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _kernel_mode() -> str:
    """The tunnel mode a Lab() should pick: $RECONCILER_LAB_MODE, else "sit" when the kernel
    has sit (by then the lab's probe has loaded the module), else "vxlan"."""
    return os.environ.get(MODE_ENV) or ("sit" if Path("/sys/module/sit").exists() else "vxlan")


def test_prebuilt_tunnel_carries_ipv6_from_router_to_he(lab_available: None) -> None:
    """A fresh lab pings HE's tunnel address from the router, across the tunnel."""
    with Lab(with_fake_he=False) as lab:
        assert lab.mode == _kernel_mode()  # sit where the kernel has it
        assert lab.tunnel_local() == FIRST_WAN_ADDRESS
        # A few seconds for the first packet (neighbour discovery) on a loaded host.
        wait_until(lab.ping6_through_tunnel, timeout=10, what="IPv6 across a fresh tunnel")


def test_new_wan_address_breaks_the_tunnel_until_both_ends_move(lab_available: None) -> None:
    """After the ISP moves the WAN address, IPv6 works again only once both ends follow."""
    with Lab(with_fake_he=False) as lab:
        lab.set_wan_address("203.0.113.11")
        assert not lab.ping6_through_tunnel(timeout=0.5)
        _move_both_tunnel_ends(lab, "203.0.113.11")
        assert lab.he_tunnel_remote() == "203.0.113.11"
        wait_until(lab.ping6_through_tunnel, timeout=10, what="IPv6 once both ends moved")


def _move_both_tunnel_ends(lab: Lab, address: str) -> None:
    """What the daemon and HE would do for a new WAN address, done by hand."""
    subprocess.run(
        ["ip", "-n", lab.router_ns, "link", "set", "he-ipv6", "type", lab.mode,
         "local", address],
        check=True,
    )  # fmt: skip
    lab.move_he_end(address)


def test_time_to_repair_runs_from_the_change_to_the_first_ping_across(
    lab_available: None,
) -> None:
    """move_wan_and_time_repair starts the clock before the change (the link going down,
    with link_down_first) and stops it at the first ping across: here both ends are moved
    by hand a second later. A tunnel that is never repaired is a LabError naming the
    address."""
    with Lab(with_fake_he=False) as lab:
        wait_until(lab.ping6_through_tunnel, timeout=10, what="IPv6 across a fresh tunnel")
        moved_at: list[float] = []

        def follow_by_hand() -> None:
            _move_both_tunnel_ends(lab, "203.0.113.11")
            moved_at.append(time.monotonic())

        hand = threading.Timer(1.0, follow_by_hand)
        before = time.monotonic()
        hand.start()
        try:
            seconds = lab.move_wan_and_time_repair("203.0.113.11", timeout=30, link_down_first=True)
        finally:
            hand.join()
        after = time.monotonic()
        assert lab.interface_state("wan0")["operstate"] == "UP"  # back up with the address
        # the clock started after `before` (a call away) and stopped at a ping that could
        # only cross once both ends had moved
        assert moved_at[0] - before - 0.1 < seconds <= after - before
        with pytest.raises(LabError, match=r"after moving to 203\.0\.113\.12"):
            lab.move_wan_and_time_repair("203.0.113.12", timeout=1)


def test_wan_link_and_tunnel_controls_change_the_kernel(lab_available: None) -> None:
    """wan_link, remove_wan_address and tunnel_down act on the router's real interfaces."""
    with Lab(with_fake_he=False) as lab:
        lab.tunnel_down()
        state = lab.tunnel_state()
        assert state is not None and "UP" not in state["flags"]
        lab.remove_wan_address()
        shown = subprocess.run(
            ["ip", "-n", lab.router_ns, "-4", "addr", "show", "wan0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "inet " not in shown
        lab.wan_link(False)
        assert (
            "state DOWN"
            in subprocess.run(
                ["ip", "-n", lab.router_ns, "link", "show", "wan0"], capture_output=True, text=True
            ).stdout
        )


def test_teardown_deletes_namespaces_and_files_even_after_an_error(lab_available: None) -> None:
    """Leaving the lab by an exception still deletes both namespaces and the work dir."""
    lab = Lab(with_fake_he=False)
    with pytest.raises(RuntimeError), lab:
        assert lab.router_ns in _namespaces()
        raise RuntimeError("a failing test")
    listed = _namespaces()
    assert lab.router_ns not in listed and lab.he_ns not in listed
    assert not lab.workdir.exists()


# A daemon that ignores SIGTERM and leaves behind a helper, in its own session, that ignores
# it too (a hung child such as a stuck ping); it prints the helper's pid once both run.
_STUBBORN_DAEMON = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
helper = subprocess.Popen(
    [sys.executable, "-c",
     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
    start_new_session=True,
)
print(helper.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has left its namespaces: it counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_teardown_kills_a_daemon_that_ignores_sigterm_and_its_leftovers(
    lab_available: None,
) -> None:
    """A daemon deaf to SIGTERM is killed, a helper it left in the namespace too, and both
    namespaces are deleted."""
    lab = Lab(with_fake_he=False, stop_grace=0.5)
    helper_pid = 0
    try:
        with lab:
            lab.daemon = subprocess.Popen(
                ["ip", "netns", "exec", lab.router_ns, lab.python, "-c", _STUBBORN_DAEMON],
                stdout=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            assert lab.daemon.stdout is not None
            helper_pid = int(lab.daemon.stdout.readline())
            assert _alive(helper_pid)
        assert lab.daemon.returncode == -signal.SIGKILL
        assert not _alive(helper_pid), "a process outlived the lab, keeping its namespace"
        listed = _namespaces()
        assert lab.router_ns not in listed and lab.he_ns not in listed
        assert lab.teardown_problems == []
    finally:
        if helper_pid and _alive(helper_pid):
            os.kill(helper_pid, signal.SIGKILL)
        if lab.daemon is not None and lab.daemon.stdout is not None:
            lab.daemon.stdout.close()


def test_key_file_is_private(lab_available: None) -> None:
    """The update key file the lab writes is readable by its owner only."""
    with Lab(with_fake_he=False) as lab:
        assert lab.key_file.stat().st_mode & 0o777 == 0o600


def test_config_overrides_use_section_and_key() -> None:
    """`probe_ipv6__interval=60` overrides [probe.ipv6] interval; None removes a key."""
    lab = Lab(with_fake_he=False)
    try:
        tables = lab.config(
            probe_ipv6__interval=60, daemon__watch_kernel=False, wan__restart_command=None
        )
        assert tables["probe.ipv6"]["interval"] == 60
        assert tables["daemon"]["watch_kernel"] is False
        assert "restart_command" not in tables["wan"]
        text = render_toml(tables)
        assert tomllib.loads(text)["probe"]["ipv6"]["interval"] == 60
        assert "watch_kernel = false" in text
    finally:
        lab.close()


_UPDATE_FROM_ROUTER = """
import base64, sys, urllib.request
user, url = sys.argv[1], sys.argv[2]
key = sys.stdin.read().strip()
request = urllib.request.Request(url)
token = base64.b64encode(f"{user}:{key}".encode()).decode()
request.add_header("Authorization", f"Basic {token}")
with urllib.request.urlopen(request, timeout=10) as answer:
    print(answer.read().decode())
"""


def test_good_update_at_the_fake_he_moves_its_tunnel_end(lab_available: None) -> None:
    """An update sent from the router's new address makes HE point its tunnel end there."""
    with Lab() as lab:
        assert lab.he_update_calls() == 0
        lab.set_wan_address("203.0.113.12")
        url = f"http://{HE_ADDRESS}:{HE_PORT}/nic/update?hostname={TUNNEL_ID}&myip=203.0.113.12"
        answer = subprocess.run(
            ["ip", "netns", "exec", lab.router_ns, lab.python, "-c", _UPDATE_FROM_ROUTER,
             USERNAME, url],
            input=lab.update_key, capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert answer.strip() == "good 203.0.113.12"
        assert lab.he_update_calls() == 1
        assert lab.he_stats()["endpoint"] == "203.0.113.12"
        wait_until(lambda: lab.he_tunnel_remote() == "203.0.113.12", timeout=5, what="HE's end")
