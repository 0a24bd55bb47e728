"""`reconciler init`: from the old setup, from HE, or from a link, to a valid configuration."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.configfile import load_config
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.testing.runner import RecordingRunner
from reconciler.world.discovery import DiscoveryError, default_route_interface
from tests.netns import namespace

FIXTURES = Path(__file__).parents[1] / "init" / "fixtures"
KEY = "Init-Upd4te-K3y-91c"


def init(
    tmp_path: Path, *argv: str, stdin: str = "", platform: str = "openbsd"
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdin=io.StringIO(stdin), stdout=out, stderr=err, environ={}, cwd=tmp_path)
    code = main(["init", "--platform", platform, *argv], env)
    return code, out.getvalue(), err.getvalue()


def old_setup(tmp_path: Path, hostname: str = "script/hostname.gif0") -> list[str]:
    return [
        "-o", str(tmp_path / "reconciler.conf"),
        "--key-file", str(tmp_path / "keys" / "he.key"),
        "--tunnel-id", "123456",
        "--username", "oldadmin",
        "--from-hostname-file", str(FIXTURES / hostname),
        "--from-ifstated", str(FIXTURES / "ifstated.conf"),
    ]  # fmt: skip


@pytest.mark.parametrize("hostname", ["script/hostname.gif0", "plain/hostname.gif0"])
def test_the_original_setup_becomes_a_valid_configuration(tmp_path: Path, hostname: str) -> None:
    """The seed's hostname.gif0 (either spelling) and ifstated.conf give a configuration that
    loads; the key file is made 0600 from standard input; the config is 0640; the output
    says where each value came from and what was guessed, and never shows the key."""
    code, out, err = init(tmp_path, *old_setup(tmp_path, hostname), stdin=KEY + "\n")
    assert (code, err) == (0, "")
    config_path = tmp_path / "reconciler.conf"
    key_path = tmp_path / "keys" / "he.key"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o640
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_text().strip() == KEY
    config = load_config(config_path)
    assert config.daemon.platform == "openbsd"
    assert config.wan.interface == "em0"
    assert config.wan.restart_command is None  # the platform's own way
    tunnel = config.tunnel
    assert (tunnel.interface, tunnel.mode, tunnel.server_ipv4) == ("gif0", "gif", "216.66.22.2")
    assert str(tunnel.client_ipv6) == "2001:db8:1f06:abc::2"
    assert str(tunnel.server_ipv6) == "2001:db8:1f06:abc::1"
    assert tunnel.prefixlen == 128
    assert tunnel.hostname_file == Path("/etc/hostname.gif0")
    assert config.probes["ipv4"].interval == 60 and config.probes["ipv6"].interval == 60
    assert config.tunnelbroker.tunnel_id == "123456"
    assert config.daemon.state_dir == Path("/var/db/reconciler")
    text = config_path.read_text()
    assert "# Every key is documented" in text and "# The interface that carries IPv4" in text
    assert f'tunnel.server_ipv4 = "216.66.22.2"  ({FIXTURES / hostname}:' in out
    assert 'wan.interface = "em0"  (' in out
    assert "guessed (check these):" in out and 'probe.ipv4.target = "8.8.8.8"' in out
    assert f"next: reconciler diff --observe -c {config_path}" in out
    assert KEY not in out + text


def test_an_existing_file_is_never_replaced_without_force(tmp_path: Path) -> None:
    """One line, exit 1, the old file and the missing key file both as they were."""
    target = tmp_path / "reconciler.conf"
    target.write_text("# mine\n")
    code, out, err = init(tmp_path, *old_setup(tmp_path), stdin=KEY)
    assert code == 1 and out == ""
    assert err == f"reconciler: {target} exists; use --force to replace it\n"
    assert target.read_text() == "# mine\n"
    assert not (tmp_path / "keys").exists()
    code, _, err = init(tmp_path, *old_setup(tmp_path), "--force", stdin=KEY)
    assert (code, err) == (0, "")
    assert load_config(target).tunnel.interface == "gif0"


def test_the_installed_example_is_replaced_without_force(tmp_path: Path) -> None:
    """/etc/reconciler.conf as scripts/install-linux left it (the Linux example, byte for
    byte) holds nothing of anyone's: init replaces it without --force. Changed by one byte,
    it is someone's file again."""
    target = tmp_path / "reconciler.conf"
    example = (Path(__file__).parents[2] / "etc" / "reconciler.linux.conf").read_text()
    target.write_text(example.replace("eth0", "eth1", 1))
    code, _, err = init(tmp_path, *old_setup(tmp_path), stdin=KEY, platform="linux")
    assert code == 1 and "exists; use --force" in err
    target.write_text(example)
    code, _, err = init(tmp_path, *old_setup(tmp_path), stdin=KEY, platform="linux")
    assert (code, err) == (0, "")
    assert target.read_text() != example
    assert load_config(target).tunnelbroker.tunnel_id == "123456"


def test_an_existing_key_file_is_kept_and_nothing_is_read(tmp_path: Path) -> None:
    """With the key file there, standard input is not asked and the file is left alone."""
    key_path = tmp_path / "keys" / "he.key"
    key_path.parent.mkdir()
    key_path.write_text("Existing-K3y\n")
    key_path.chmod(0o600)
    code, out, _ = init(tmp_path, *old_setup(tmp_path), stdin="")
    assert code == 0
    assert key_path.read_text() == "Existing-K3y\n"
    assert f"update key: {key_path} (exists, left as it is)" in out


@pytest.mark.parametrize(
    ("change", "stdin", "message"),
    [
        ({"--from-hostname-file": "bad"}, KEY, ":2: cannot understand 'frobnicate'"),
        ({"--from-ifstated": "noping"}, KEY, "no ping or ping6 test"),
        ({"--tunnel-id": "12a"}, KEY, "--tunnel-id must be HE's numeric tunnel id"),
        ({}, "", "does not exist and no update key came on standard input"),
        ({}, "s\u00e9krit-key\n", "holds characters other than printable ASCII"),
        ({"--from-hostname-file": "missing"}, KEY, "cannot read"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(
    tmp_path: Path, change: dict[str, str], stdin: str, message: str
) -> None:
    """Whatever is wrong: one line on stderr, exit 1, no config and no key file."""
    (tmp_path / "bad").write_text("tunnel 192.0.2.1 192.0.2.9\nfrobnicate 3\n")
    (tmp_path / "noping").write_text("init-state auto\n")
    argv = old_setup(tmp_path)
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = str(tmp_path / value) if flag.startswith("--from") else value
    code, out, err = init(tmp_path, *argv, stdin=stdin)
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "noping"]


def test_the_old_scripts_update_url_names_the_tunnel_and_gives_the_key(tmp_path: Path) -> None:
    """--from-script: id, login and key from HE_UPDATE_URL; the key goes only to its file."""
    argv = old_setup(tmp_path)
    for flag in ("--tunnel-id", "--username"):
        del argv[argv.index(flag) : argv.index(flag) + 2]
    code, out, err = init(
        tmp_path, *argv, "--from-script", str(FIXTURES / "restart_ipv6.sh"), "--json"
    )
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["schema"] == "reconciler.init/1"
    assert report["key_file"]["created"] is True
    found = {f["key"]: f for f in report["found"]}
    assert found["tunnelbroker.tunnel_id"]["value"] == "654321"
    assert found["tunnelbroker.username"]["source"].endswith("restart_ipv6.sh:4")
    assert (tmp_path / "keys" / "he.key").read_text().strip() == "0ld-Upd4te-K3y"
    assert "0ld-Upd4te-K3y" not in out + (tmp_path / "reconciler.conf").read_text()


def he_argv(tmp_path: Path, fake: FakeTunnelbroker) -> list[str]:
    return [
        "-o", str(tmp_path / "reconciler.conf"),
        "--key-file", str(tmp_path / "he.key"),
        "--tunnel-id", fake.tunnel_id,
        "--username", fake.username,
        "--wan", "eth0",
        "--from-he", "--info-url", fake.info_url,
    ]  # fmt: skip


def test_from_he_fills_the_tunnel_and_notes_the_routed_prefixes(tmp_path: Path) -> None:
    """tunnelInfo.php, read with Basic auth: both ends, the prefix length, and the routed /64
    and /48 as comments; info_url is switched on so the daemon asks HE too."""
    with FakeTunnelbroker(key=KEY, routed48="2001:db8:abcd::/48") as fake:
        code, out, err = init(tmp_path, *he_argv(tmp_path, fake), stdin=KEY, platform="linux")
        assert fake.counts["info"] == 1 and fake.counts["update"] == 0
    assert (code, err) == (0, ""), out
    config = load_config(tmp_path / "reconciler.conf")
    assert config.daemon.platform == "linux" and config.tunnel.mode == "sit"
    assert (config.tunnel.interface, config.tunnel.server_ipv4) == ("he-ipv6", "203.0.113.1")
    assert str(config.tunnel.client_ipv6) == "2001:db8:1f06:abc::2"
    assert str(config.tunnel.server_ipv6) == "2001:db8:1f06:abc::1"
    assert config.tunnel.prefixlen == 64
    assert config.tunnelbroker.info_url == fake.info_url
    assert config.daemon.log == "stderr" and config.tunnel.hostname_file is None
    text = (tmp_path / "reconciler.conf").read_text()
    assert "# HE routes this /64 to the tunnel: 2001:db8:1f07:abc::/64" in text
    assert "# HE routes this /48 to the tunnel: 2001:db8:abcd::/48" in text
    assert KEY not in out + text


INJECTED = '2001:db8:1f07:abc::/64\ntunnel.hostname_file = "/etc/passwd"\n[daemon]\nlog = "x"'


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("routed64", INJECTED, "HE tunnelInfo's routed64 is not an IPv6 /64 prefix: '2001:"),
        ("routed64", "2001:db8:1f07::/48", "HE tunnelInfo's routed64 is not a /64"),
        ("routed48", "2001:db8:" + "ab" * 5000 + "::/48", "... (10014 chars)"),
        ("routed48", "2001:db8::/48 # ok", "routed48 is not an IPv6 /48 prefix"),
        ("server_ipv4", "203.0.113.1\u2028x", "serverv4 is not an IPv4 address: '203.0.113.1?x'"),
        ("server_ipv6", "2001:db8::1\u0085/64", "serverv6 is not an IPv6 address[/length]"),
        ("client_ipv6", "::2/64\u00ad", "clientv6 is not an IPv6 address[/length]"),
    ],
)
def test_from_he_refuses_a_value_that_is_not_what_it_claims(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    """A hostile (or impersonated) tunnelInfo: each value must be what its field claims, or
    init stops with one clean line naming the field, and writes nothing (a newline in
    routed64 used to start live TOML: tunnel.hostname_file = "/etc/passwd")."""
    with FakeTunnelbroker(key=KEY, **{field: value}) as fake:  # type: ignore[arg-type]
        code, out, err = init(tmp_path, *he_argv(tmp_path, fake), stdin=KEY, platform="linux")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.isprintable() is False and err[:-1].isprintable(), err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


def test_from_he_control_characters_never_reach_the_config(tmp_path: Path) -> None:
    """Control characters (ESC, BEL) in tunnelInfo: XML refuses most of them, the checks the
    rest; either way one printable line and no file."""
    with FakeTunnelbroker(key=KEY, routed48="2001:db8::/48\x1b]0;owned\x07") as fake:
        code, out, err = init(tmp_path, *he_argv(tmp_path, fake), stdin=KEY, platform="linux")
    assert (code, out) == (1, "") and err[:-1].isprintable() and "\x1b" not in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("tunnel_id", "key", "message"),
    [("123456", "Wrong-K3y", "HTTP 401: badauth"), ("999", KEY, "lists no tunnel 999")],
)
def test_from_he_badauth_or_an_unknown_tunnel_writes_nothing(
    tmp_path: Path, tunnel_id: str, key: str, message: str
) -> None:
    """HE refusing the login or not knowing the id: one line, exit 1, no files, no key."""
    with FakeTunnelbroker(key=KEY) as fake:
        argv = he_argv(tmp_path, fake)
        argv[argv.index("--tunnel-id") + 1] = tunnel_id
        code, out, err = init(tmp_path, *argv, stdin=key)
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1
    assert key not in err
    assert list(tmp_path.iterdir()) == []


def test_openbsd_finds_the_wan_on_the_default_route() -> None:
    """`route -n get -inet default` names the interface; without a default route, one line."""
    runner = RecordingRunner()
    runner.script(
        ["route", "-n", "get", "-inet", "default"],
        stdout="   route to: default\ndestination: default\n       mask: default\n"
        "    gateway: 198.51.100.1\n  interface: em0\n      flags: <UP,GATEWAY,DONE,STATIC>\n",
    )
    assert default_route_interface("openbsd", runner) == "em0"
    runner = RecordingRunner()
    runner.script(
        ["route", "-n", "get", "-inet", "default"],
        returncode=1,
        stderr="route: writing to routing socket: No such process\n",
    )
    with pytest.raises(DiscoveryError, match="no IPv4 default route"):
        default_route_interface("openbsd", runner)


def init_in(ns: str, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real command, run in a test namespace."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "reconciler", "init", *argv],
        input=KEY,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_linux_takes_the_wan_from_the_default_route(tmp_path: Path, lab_available: None) -> None:
    """In a namespace whose default route leaves through `uplink0`, that is the WAN; in one
    with no default route, init says so in one line and writes nothing."""
    argv = [*old_setup(tmp_path), "--platform", "linux"]
    del argv[argv.index("--from-ifstated") : argv.index("--from-ifstated") + 2]
    ns = f"rcinit{os.getpid()}"
    with namespace(ns):
        done = init_in(ns, tmp_path, *argv)
        assert done.returncode == 1
        assert (
            done.stderr
            == "reconciler: no IPv4 default route: name the WAN interface with --wan IF\n"
        )
        assert list(tmp_path.iterdir()) == []
        for step in (
            ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
            ["link", "set", "uplink0", "up"],
            ["addr", "add", "192.0.2.10/24", "dev", "uplink0"],
            ["route", "add", "default", "via", "192.0.2.1", "dev", "uplink0"],
        ):
            subprocess.run(["ip", "-n", ns, *step], check=True)
        done = init_in(ns, tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert 'wan.interface = "uplink0"  (the interface of the IPv4 default route)' in done.stdout
    assert (
        "WAN owner: no DHCP client, network manager or pppd owns uplink0: restart-wan only "
        "observes (set wan.restart_command to act)\n"
    ) in done.stdout
    assert load_config(tmp_path / "reconciler.conf").wan.interface == "uplink0"


def test_from_link_reads_an_existing_tunnel(tmp_path: Path, lab_available: None) -> None:
    """An existing vxlan link (the kind every kernel here has): remote, ttl, mtu, id, port and
    its IPv6 address become the tunnel section."""
    ns = f"rclink{os.getpid()}"
    setup = [
        ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
        ["link", "set", "uplink0", "up"],
        ["addr", "add", "192.0.2.10/24", "dev", "uplink0"],
        ["route", "add", "default", "via", "192.0.2.1"],
        ["link", "add", "tun6", "type", "vxlan", "id", "42", "remote", "192.0.2.9",
         "local", "192.0.2.10", "dstport", "4789", "ttl", "200", "dev", "uplink0"],
        ["link", "set", "tun6", "mtu", "1450", "up"],
        ["-6", "addr", "add", "2001:db8:77::2/64", "dev", "tun6"],
        ["-6", "route", "add", "default", "via", "2001:db8:77::1", "dev", "tun6"],
    ]  # fmt: skip
    with namespace(ns, *setup):
        done = init_in(
            ns, tmp_path,
            "-o", str(tmp_path / "r.conf"), "--key-file", str(tmp_path / "k"),
            "--platform", "linux", "--tunnel-id", "7", "--username", "u",
            "--from-link", "tun6",
        )  # fmt: skip
        wrong = init_in(
            ns, tmp_path,
            "-o", str(tmp_path / "r2.conf"), "--key-file", str(tmp_path / "k"),
            "--platform", "linux", "--tunnel-id", "7", "--username", "u",
            "--from-link", "uplink0",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tunnel = load_config(tmp_path / "r.conf").tunnel
    assert (tunnel.interface, tunnel.mode, tunnel.server_ipv4) == ("tun6", "vxlan", "192.0.2.9")
    assert (tunnel.ttl, tunnel.mtu, tunnel.vxlan_id, tunnel.vxlan_port) == (200, 1450, 42, 4789)
    assert (str(tunnel.client_ipv6), str(tunnel.server_ipv6)) == (
        "2001:db8:77::2",
        "2001:db8:77::1",
    )
    assert tunnel.prefixlen == 64
    assert "(link tun6)" in done.stdout
    assert wrong.returncode == 1
    assert wrong.stderr == (
        "reconciler: --from-link: uplink0 is a veth link, not a sit or vxlan tunnel\n"
    )


def test_from_link_reads_a_peer_address_the_right_way_round(
    tmp_path: Path, lab_available: None
) -> None:
    """On a tunnel whose IPv6 address has a peer (`ip addr add OURS peer HE`), the client is
    ours (IFA_LOCAL) and the server the peer (IFA_ADDRESS), not the other way round."""
    ns = f"rcpeer{os.getpid()}"
    setup = [
        ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
        ["link", "set", "uplink0", "up"],
        ["addr", "add", "192.0.2.10/24", "dev", "uplink0"],
        ["link", "add", "tun6", "type", "vxlan", "id", "42", "remote", "192.0.2.9",
         "local", "192.0.2.10", "dstport", "4789", "dev", "uplink0"],
        ["link", "set", "tun6", "up"],
        ["-6", "addr", "add", "2001:db8:77::2", "peer", "2001:db8:77::1/128", "dev", "tun6"],
    ]  # fmt: skip
    with namespace(ns, *setup):
        done = init_in(
            ns, tmp_path,
            "-o", str(tmp_path / "r.conf"), "--key-file", str(tmp_path / "k"),
            "--platform", "linux", "--tunnel-id", "7", "--username", "u",
            "--wan", "uplink0", "--from-link", "tun6",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tunnel = load_config(tmp_path / "r.conf").tunnel
    client, server = str(tunnel.client_ipv6), str(tunnel.server_ipv6)
    assert (client, server) == ("2001:db8:77::2", "2001:db8:77::1")
