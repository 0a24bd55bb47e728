"""Loading the configuration: the shipped example, the search order, and broken configs that
`reconciler check-config` rejects with exit 1 and a line naming the key."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from reconciler.cli import Environment, main
from reconciler.configfile import DEFAULT_STATE_DIRS, find_config_path, load_config
from reconciler.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = """\
[daemon]
platform = "linux"
state_dir = "state"
log = "stderr"

[wan]
interface = "veth0"
public_address = "interface"

[probe.ipv4]
target = "198.51.100.53"
interval = 60
timeout = 1

[probe.ipv6]
target = "2001:db8::53"
interval = 60

[tunnel]
interface = "he-ipv6"
mode = "vxlan"
server_ipv4 = "198.51.100.1"
client_ipv6 = "2001:db8:1f06:abc::2"
server_ipv6 = "2001:db8:1f06:abc::1"
vxlan_id = 42

[tunnelbroker]
tunnel_id = "123456"
username = "example"
update_key_file = "he.key"
update_url = "https://127.0.0.1:8443/nic/update"
min_update_interval = 600

[firewall]
reload_command = []
"""


def write_config(tmp_path: Path, text: str = VALID, key_mode: int = 0o600) -> Path:
    key = tmp_path / "he.key"
    key.write_text("s3cret-update-key\n")
    key.chmod(key_mode)
    path = tmp_path / "reconciler.conf"
    path.write_text(text)
    return path


def check(path: Path, cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={}, cwd=cwd)
    code = main(["check-config", "-c", str(path)], env)
    return code, out.getvalue(), err.getvalue()


def test_valid_config_loads(tmp_path: Path) -> None:
    """A valid file loads, resolving relative paths against its directory."""
    config = load_config(write_config(tmp_path))
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.tunnelbroker.update_key_file == tmp_path / "he.key"
    assert config.tunnel.vxlan_id == 42 and config.firewall.reload_command == ()


def test_check_config_valid_exit_0(tmp_path: Path) -> None:
    """check-config prints a summary and exits 0 for a valid file, never the key."""
    code, out, err = check(write_config(tmp_path), tmp_path)
    assert (code, err) == (0, "")
    assert "valid" in out and "s3cret" not in out


def test_shipped_example_is_valid_but_for_its_key_file(tmp_path: Path) -> None:
    """etc/reconciler.conf parses; its only problem here is the absent /etc key file."""
    text = (REPO / "etc" / "reconciler.conf").read_text()
    text = text.replace("/etc/reconciler/tunnelbroker.key", str(tmp_path / "he.key"))
    config = load_config(write_config(tmp_path, text))
    assert (config.wan.interface, config.tunnel.interface) == ("em0", "gif0")
    assert config.probes["ipv6"].target == "2001:4860:4860::8888"


def test_digest_changes_with_key_file_not_its_secret(tmp_path: Path) -> None:
    """Rewriting the key file changes the digest; the digest does not contain the key."""
    path = write_config(tmp_path)
    first = load_config(path).digest
    key = tmp_path / "he.key"
    key.write_text("another-key-value\n")
    os.utime(key, ns=(1, 1))
    assert load_config(path).digest != first


@pytest.mark.parametrize(
    ("platform", "mode", "expected"),
    [("openbsd", "gif", "/var/db/reconciler"), ("linux", "vxlan", "/var/lib/reconciler")],
)
def test_state_dir_default_is_the_platforms(
    tmp_path: Path, platform: str, mode: str, expected: str
) -> None:
    """Without daemon.state_dir the state lives where the platform keeps daemon state (the
    systemd unit makes /var/lib/reconciler writable)."""
    text = _replace('state_dir = "state"\n', "").replace(
        'platform = "linux"', f'platform = "{platform}"'
    )
    text = text.replace('mode = "vxlan"', f'mode = "{mode}"')
    if mode != "vxlan":
        text = text.replace("vxlan_id = 42\n", "")
    if platform == "openbsd":  # OpenBSD names: a driver and a unit number
        text = text.replace('"veth0"', '"em0"').replace('"he-ipv6"', '"gif0"')
    config = load_config(write_config(tmp_path, text))
    assert config.daemon.state_dir == Path(expected)


def test_systemd_unit_can_write_the_linux_default_state_dir() -> None:
    """The shipped systemd unit's ReadWritePaths covers the Linux default state directory."""
    unit = (REPO / "etc" / "systemd" / "reconciler.service").read_text()
    assert f"ReadWritePaths={DEFAULT_STATE_DIRS['linux']}" in unit


def test_retention_is_off_unless_asked_for(tmp_path: Path) -> None:
    """The log is kept whole by default; retain_days and retain_mb are read when given."""
    assert load_config(write_config(tmp_path, VALID)).daemon.retain_days == 0
    text = _replace('log = "stderr"', 'log = "stderr"\nretain_days = 30\nretain_mb = 16')
    daemon = load_config(write_config(tmp_path, text)).daemon
    assert (daemon.retain_days, daemon.retain_mb) == (30, 16)


def test_search_order(tmp_path: Path) -> None:
    """-c wins over $RECONCILER_CONFIG, which wins over ./etc/reconciler.conf."""
    (tmp_path / "etc").mkdir()
    local = tmp_path / "etc" / "reconciler.conf"
    local.write_text("")
    other = tmp_path / "other.conf"
    other.write_text("")
    assert find_config_path(None, {}, tmp_path) == local
    assert find_config_path(None, {"RECONCILER_CONFIG": str(other)}, tmp_path) == other
    assert find_config_path(str(local), {"RECONCILER_CONFIG": str(other)}, tmp_path) == local
    with pytest.raises(ConfigError, match="no such configuration file"):
        find_config_path("missing.conf", {}, tmp_path)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Validation is complete: several problems give several lines in one error."""
    text = VALID.replace('"198.51.100.1"', '"nope"').replace("interval = 60\n", "intervall = 60\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    keys = " ".join(caught.value.problems)
    assert "tunnel.server_ipv4" in keys and "probe.ipv4.intervall" in keys


def _replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


BROKEN = [
    ("missing section", VALID.replace("[wan]\n", "[wanx]\n"), "wan"),
    ("missing platform", _replace('platform = "linux"\n', ""), "daemon.platform"),
    ("bad platform", _replace('platform = "linux"', 'platform = "bsd"'), "daemon.platform"),
    ("bad log", _replace('log = "stderr"', 'log = "file"'), "daemon.log"),
    ("typo key", _replace('log = "stderr"', 'logg = "stderr"'), "daemon.logg"),
    ("missing wan iface", _replace('interface = "veth0"\n', ""), "wan.interface"),
    ("shell string", _replace("[wan]\n", '[wan]\nrestart_command = "sh /etc/netstart"\n'),
     "wan.restart_command"),
    ("public_address", _replace('public_address = "interface"', 'public_address = "nat"'),
     "wan.public_address"),
    ("v6 target for v4", _replace('target = "198.51.100.53"', 'target = "2001:db8::1"'),
     "probe.ipv4.target"),
    ("bad v6 target", _replace('target = "2001:db8::53"', 'target = "2001:db8::zz"'),
     "probe.ipv6.target"),
    ("interval type", _replace("interval = 60\ntimeout", 'interval = "60"\ntimeout'),
     "probe.ipv4.interval"),
    ("timeout too long", _replace("timeout = 1", "timeout = 90"), "probe.ipv4.timeout"),
    ("fail_after zero", _replace("timeout = 1", "timeout = 1\nfail_after = 0"),
     "probe.ipv4.fail_after"),
    ("bad server v4", _replace('server_ipv4 = "198.51.100.1"', 'server_ipv4 = "198.51.100"'),
     "tunnel.server_ipv4"),
    ("client v6 is v4", _replace('"2001:db8:1f06:abc::2"', '"10.0.0.1"'),
     "tunnel.client_ipv6"),
    ("gif on linux", _replace('mode = "vxlan"', 'mode = "gif"'), "tunnel.mode"),
    ("mtu small", _replace("vxlan_id = 42", "vxlan_id = 42\nmtu = 576"), "tunnel.mtu"),
    ("prefixlen", _replace("vxlan_id = 42", "vxlan_id = 42\nprefixlen = 129"), "tunnel.prefixlen"),
    ("vxlan id missing", _replace("vxlan_id = 42\n", ""), "tunnel.vxlan_id"),
    ("hostname dir", _replace("vxlan_id = 42", 'vxlan_id = 42\nhostname_file = "no/such/dir/h"'),
     "tunnel.hostname_file"),
    ("hostname file on linux",
     _replace("vxlan_id = 42", 'vxlan_id = 42\nhostname_file = "he-ipv6.netdev"'),
     "tunnel.hostname_file"),
    ("owner unknown", _replace("vxlan_id = 42", 'vxlan_id = 42\nowner = "netplan"'),
     "tunnel.owner"),
    ("owner without netdev",
     _replace("vxlan_id = 42", 'vxlan_id = 42\nowner = "networkd"\nnetworkd_dir = "."'),
     "tunnel.owner"),
    ("networkd_dir for ifupdown",
     _replace("vxlan_id = 42", 'vxlan_id = 42\nnetworkd_dir = "."'), "tunnel.networkd_dir"),
    ("local bad", _replace("vxlan_id = 42", 'vxlan_id = 42\nlocal = "0.0.0.0"'), "tunnel.local"),
    ("tunnel id", _replace('tunnel_id = "123456"', 'tunnel_id = "abc"'), "tunnelbroker.tunnel_id"),
    ("username type", _replace('username = "example"', "username = 7"), "tunnelbroker.username"),
    ("key file missing", _replace('"he.key"', '"../nowhere/he.key"'),
     "tunnelbroker.update_key_file"),
    ("key file dir", _replace('"he.key"', '"."'), "tunnelbroker.update_key_file"),
    ("url scheme", _replace('"https://127.0.0.1:8443/nic/update"', '"ftp://x/nic"'),
     "tunnelbroker.update_url"),
    ("url creds", _replace('"https://127.0.0.1:8443/nic/update"', '"https://u:p@x/nic"'),
     "tunnelbroker.update_url"),
    ("interval negative", _replace("min_update_interval = 600", "min_update_interval = -1"),
     "tunnelbroker.min_update_interval"),
    ("interval zero", _replace("min_update_interval = 600", "min_update_interval = 0"),
     "tunnelbroker.min_update_interval"),
    ("url bad ipv6 host", _replace('"https://127.0.0.1:8443/nic/update"', '"https://[::1/nic"'),
     "tunnelbroker.update_url"),
    ("url port range", _replace('"https://127.0.0.1:8443/nic/update"', '"https://x:99999/nic"'),
     "tunnelbroker.update_url"),
    ("url port text", _replace('"https://127.0.0.1:8443/nic/update"', '"https://x:web/nic"'),
     "tunnelbroker.update_url"),
    ("url port zero", _replace('"https://127.0.0.1:8443/nic/update"', '"https://x:0/nic"'),
     "tunnelbroker.update_url"),
    ("info url bad host", _replace("min_update_interval = 600",
                                   'min_update_interval = 600\ninfo_url = "http://[zz/info"'),
     "tunnelbroker.info_url"),
    ("server v4 unspecified", _replace('server_ipv4 = "198.51.100.1"', 'server_ipv4 = "0.0.0.0"'),
     "tunnel.server_ipv4"),
    ("server v4 broadcast",
     _replace('server_ipv4 = "198.51.100.1"', 'server_ipv4 = "255.255.255.255"'),
     "tunnel.server_ipv4"),
    ("server v4 multicast", _replace('server_ipv4 = "198.51.100.1"', 'server_ipv4 = "224.0.0.1"'),
     "tunnel.server_ipv4"),
    ("v4 target multicast", _replace('target = "198.51.100.53"', 'target = "239.1.2.3"'),
     "probe.ipv4.target"),
    ("v4 target unspecified", _replace('target = "198.51.100.53"', 'target = "0.0.0.0"'),
     "probe.ipv4.target"),
    ("v6 target unspecified", _replace('target = "2001:db8::53"', 'target = "::"'),
     "probe.ipv6.target"),
    ("v6 target scoped", _replace('target = "2001:db8::53"', 'target = "fe80::1%eth0"'),
     "probe.ipv6.target"),
    ("v6 source multicast", _replace('target = "2001:db8::53"',
                                     'target = "2001:db8::53"\nsource = "ff02::1"'),
     "probe.ipv6.source"),
    ("client v6 scoped", _replace('"2001:db8:1f06:abc::2"', '"fe80::2%eth0"'),
     "tunnel.client_ipv6"),
    ("client v6 unspecified", _replace('"2001:db8:1f06:abc::2"', '"::"'), "tunnel.client_ipv6"),
    ("server v6 multicast", _replace('"2001:db8:1f06:abc::1"', '"ff02::1"'),
     "tunnel.server_ipv6"),
    ("firewall string", _replace("reload_command = []", 'reload_command = "pfctl -f x"'),
     "firewall.reload_command"),
    ("backoff order", VALID + "\n[reconcile]\nbackoff_min = 60\nbackoff_max = 5\n",
     "reconcile.backoff_max"),
    ("he backoff order", VALID + "\n[reconcile]\nbackoff_min = 60\nhe_backoff_max = 5\n",
     "reconcile.he_backoff_max"),
    ("he backoff zero", VALID + "\n[reconcile]\nhe_backoff_max = 0\n",
     "reconcile.he_backoff_max"),
    ("retain negative", _replace('log = "stderr"', 'log = "stderr"\nretain_days = -1'),
     "daemon.retain_days"),
    ("retain type", _replace('log = "stderr"', 'log = "stderr"\nretain_mb = "64M"'),
     "daemon.retain_mb"),
    ("unknown section", VALID + "\n[extra]\nx = 1\n", "extra"),
    ("toml syntax", VALID + "\n[wan\n", "TOML syntax"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "key"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_exit_1_names_key(tmp_path: Path, case: str, text: str, key: str) -> None:
    """Each broken config makes check-config exit 1 with a one-line error naming the key."""
    path = write_config(tmp_path, text)
    code, out, err = check(path, tmp_path)
    assert code == 1, (case, out, err)
    lines = err.strip().splitlines()
    assert any(f"{path}: {key}" in line for line in lines) or (
        key == "TOML syntax" and key in err
    ), err
    assert "Traceback" not in err and "s3cret" not in err + out


def test_tunnel_owner_and_local_any_load(tmp_path: Path) -> None:
    """owner = "networkd" with a .netdev naming the tunnel in networkd_dir; local = "any"
    needs nothing of the owner (nothing is told)."""
    netdevs = tmp_path / "network"
    netdevs.mkdir()
    (netdevs / "he.netdev").write_text("[NetDev]\nName=he-ipv6\nKind=vxlan\n")
    owned = 'vxlan_id = 42\nowner = "networkd"\nnetworkd_dir = "network"'
    config = load_config(write_config(tmp_path, _replace("vxlan_id = 42", owned)))
    assert (config.tunnel.owner, config.tunnel.networkd_dir) == ("networkd", netdevs)
    assert config.tunnel.local == "wan"
    code, out, _err = check(tmp_path / "reconciler.conf", tmp_path)
    assert (
        code == 0 and f"made by networkd (told the local end through a drop-in in {netdevs})" in out
    )
    (netdevs / "he.netdev").unlink()
    any_local = 'vxlan_id = 42\nowner = "networkd"\nnetworkd_dir = "network"\nlocal = "any"'
    config = load_config(write_config(tmp_path, _replace("vxlan_id = 42", any_local)))
    assert config.tunnel.local == "any"


def test_malformed_url_is_one_problem_among_all_the_others(tmp_path: Path) -> None:
    """A URL urlsplit cannot parse is reported for its key, with every other problem too."""
    text = _replace('"https://127.0.0.1:8443/nic/update"', '"https://[::1/nic"').replace(
        'log = "stderr"', 'log = "file"'
    )
    code, _, err = check(write_config(tmp_path, text), tmp_path)
    assert code == 1
    assert "internal error" not in err.lower()
    assert "tunnelbroker.update_url" in err and "daemon.log" in err


def test_min_update_interval_of_one_second_is_allowed(tmp_path: Path) -> None:
    """The smallest rate gate, 1 s (the lab's), is valid; only 0 and below are refused."""
    text = _replace("min_update_interval = 600", "min_update_interval = 1")
    assert load_config(write_config(tmp_path, text)).tunnelbroker.min_update_interval == 1


def test_host_addresses_accept_ordinary_unicast(tmp_path: Path) -> None:
    """Loopback and unscoped addresses still pass the host check (the lab and tests use them)."""
    text = _replace('target = "198.51.100.53"', 'target = "127.0.0.1"').replace(
        'target = "2001:db8::53"', 'target = "::1"'
    )
    config = load_config(write_config(tmp_path, text))
    assert (config.probes["ipv4"].target, config.probes["ipv6"].target) == ("127.0.0.1", "::1")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_file_readable_by_others_rejected(tmp_path: Path, mode: int) -> None:
    """A key file group- or world-readable is refused, naming the key and the mode."""
    code, _, err = check(write_config(tmp_path, key_mode=mode), tmp_path)
    assert code == 1
    assert "tunnelbroker.update_key_file" in err and f"{mode:04o}" in err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("content", "what"),
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"\n  \n", "is empty", id="blank"),
        pytest.param("sékrit-update-key".encode(), "printable ASCII", id="non-ascii"),
        pytest.param("key-€-sign".encode(), "printable ASCII", id="euro"),
        pytest.param(b"first-line\nsecond-line\n", "more than one line", id="two-lines"),
    ],
)
def test_a_key_file_without_a_usable_key_is_refused_without_showing_it(
    tmp_path: Path, content: bytes, what: str
) -> None:
    """check-config reads the key file to check it holds one line of printable ASCII: an
    empty or non-ASCII key is one line naming the file, quoting nothing of the key."""
    path = write_config(tmp_path)
    (tmp_path / "he.key").write_bytes(content)
    code, out, err = check(path, tmp_path)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "tunnelbroker.update_key_file" in lines[0] and what in lines[0]
    assert str(tmp_path / "he.key") in lines[0]
    for needle in ("sékrit", "é", "€", "first-line", "second-line", "position", "codec"):
        assert needle not in err, needle


def test_he_backoff_max_defaults_to_ten_minutes_and_can_be_set(tmp_path: Path) -> None:
    """The ceiling of the back-off after trouble at HE is 600 s unless [reconcile] says."""
    assert load_config(write_config(tmp_path, VALID)).reconcile.he_backoff_max == 600.0
    text = VALID + "\n[reconcile]\nbackoff_min = 20\nhe_backoff_max = 120\n"
    reconcile = load_config(write_config(tmp_path, text)).reconcile
    assert (reconcile.backoff_min, reconcile.he_backoff_max) == (20.0, 120.0)
