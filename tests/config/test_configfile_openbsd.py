"""The configuration keys and checks that exist for OpenBSD's sake: the hostname file's name,
the DHCP grace period and the WAN address selector."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.test_configfile import VALID, check, write_config

OPENBSD = (
    VALID.replace('platform = "linux"', 'platform = "openbsd"')
    .replace('interface = "veth0"', 'interface = "em0"')
    .replace('interface = "he-ipv6"', 'interface = "gif0"')
    .replace('mode = "vxlan"', 'mode = "gif"')
    .replace("vxlan_id = 42\n", "")
)


def test_openbsd_hostname_file_must_be_named_for_the_tunnel(tmp_path: Path) -> None:
    """netstart reads only /etc/hostname.<if>: another name is one line, exit 1."""
    text = OPENBSD.replace('mode = "gif"', 'mode = "gif"\nhostname_file = "hostname.gif1"')
    code, out, err = check(write_config(tmp_path, text), tmp_path)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{tmp_path / 'reconciler.conf'}: tunnel.hostname_file: netstart reads only "
        "/etc/hostname.gif0 for gif0: hostname.gif1 would never be applied"
    ]
    good = OPENBSD.replace('mode = "gif"', 'mode = "gif"\nhostname_file = "hostname.gif0"')
    assert check(write_config(tmp_path, good), tmp_path)[0] == 0


def test_wan_dhcp_grace_and_address_selector_load(tmp_path: Path) -> None:
    """`dhcp_grace` defaults to 30 s; `address_in` takes a network (an address is a /32)."""
    from reconciler.configfile import load_config

    assert load_config(write_config(tmp_path, OPENBSD)).wan.dhcp_grace == 30.0
    text = OPENBSD.replace(
        'interface = "em0"', 'interface = "em0"\ndhcp_grace = 12.5\naddress_in = "192.0.2.9"'
    )
    wan = load_config(write_config(tmp_path, text)).wan
    assert (wan.dhcp_grace, wan.address_in) == (12.5, "192.0.2.9/32")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("dhcp_grace = -1", "wan.dhcp_grace"),
        ('dhcp_grace = "30"', "wan.dhcp_grace"),
        ('address_in = "2001:db8::/64"', "wan.address_in"),
        ('address_in = "192.0.2.0/33"', "wan.address_in"),
        ("address_in = 7", "wan.address_in"),
    ],
)
def test_bad_wan_keys_are_one_line_each(tmp_path: Path, line: str, key: str) -> None:
    """A wrong grace or selector: exit 1 and one line naming the key, no traceback."""
    text = OPENBSD.replace('interface = "em0"', f'interface = "em0"\n{line}')
    code, _, err = check(write_config(tmp_path, text), tmp_path)
    assert code == 1
    assert len(err.splitlines()) == 1 and f": {key}: " in err
