"""Configurations a hostile or careless user writes: each is one line naming the file and the
key (or what is wrong with the path), exit 1, never "internal error" or a traceback; and no
value check-config accepts can break the daemon later (every number is bounded)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.configfile import load_config
from reconciler.errors import ConfigError
from reconciler.model.config import IFNAMSIZ, interface_name_problem
from tests.commands.test_diff import run_cli, story_copy
from tests.config.test_configfile import VALID, check, write_config

OPENBSD = (
    VALID.replace('platform = "linux"', 'platform = "openbsd"')
    .replace('"veth0"', '"em0"')
    .replace('"he-ipv6"', '"gif0"')
    .replace('mode = "vxlan"', 'mode = "gif"')
    .replace("vxlan_id = 42\n", "")
)


def _set(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _one_line_naming(path: Path, cwd: Path, key: str) -> str:
    """check-config on `path`: exit 1 and exactly one stderr line, naming `key`."""
    code, out, err = check(path, cwd)
    assert code == 1, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert key in lines[0], err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


# -- item 7: every number is bounded --------------------------------------------------------

HUGE = "9" * 400  # a 400-digit integer: float() of it overflows

OUT_OF_RANGE = [
    ("probe.ipv4.interval", "interval = 60\ntimeout", "interval = 1e308\ntimeout"),
    ("probe.ipv4.interval", "interval = 60\ntimeout", f"interval = {HUGE}\ntimeout"),
    ("probe.ipv6.interval", "interval = 60\n\n[tunnel]", "interval = 1e300\n\n[tunnel]"),
    ("probe.ipv4.timeout", "timeout = 1", "timeout = 1e300"),
    ("probe.ipv4.timeout", "timeout = 1", "timeout = nan"),
    ("tunnelbroker.read_timeout", "min_update_interval = 600",
     "min_update_interval = 600\nread_timeout = 1e300"),
    ("tunnelbroker.connect_timeout", "min_update_interval = 600",
     "min_update_interval = 600\nconnect_timeout = inf"),
    ("tunnelbroker.min_update_interval", "min_update_interval = 600",
     f"min_update_interval = {HUGE}"),
    ("tunnel.observe_interval", "vxlan_id = 42", "vxlan_id = 42\nobserve_interval = 1e308"),
    ("daemon.retain_days", 'log = "stderr"', 'log = "stderr"\nretain_days = 1e308'),
    ("daemon.retain_mb", 'log = "stderr"', f'log = "stderr"\nretain_mb = {HUGE}'),
    ("tunnel.mtu", "vxlan_id = 42", f"vxlan_id = 42\nmtu = {HUGE}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "old", "new"), OUT_OF_RANGE, ids=[f"{c[0]}={c[2][-8:]}" for c in OUT_OF_RANGE]
)
def test_numbers_out_of_their_range_are_one_line(
    tmp_path: Path, key: str, old: str, new: str
) -> None:
    """Values that overflowed a timer or a timedelta later (`run` and every update died with
    OverflowError) are refused by check-config, naming the file, the key and the range."""
    path = write_config(tmp_path, _set(VALID, old, new))
    line = _one_line_naming(path, tmp_path, f"{path}: {key}: must be between")
    assert len(line) < 200  # the 400 digits are not echoed


def test_the_documented_bounds_themselves_are_valid(tmp_path: Path) -> None:
    """The upper bounds are inclusive and the example's values sit inside them."""
    text = _set(
        VALID, "min_update_interval = 600", "min_update_interval = 86400\nread_timeout = 300"
    )
    text = _set(text, 'log = "stderr"', 'log = "stderr"\nretain_days = 36500')
    config = load_config(write_config(tmp_path, text))
    assert config.tunnelbroker.read_timeout == 300 and config.daemon.retain_days == 36500


# -- item 8: configs that ended in "internal error" -----------------------------------------


@pytest.mark.parametrize(
    ("case", "text", "key"),
    [
        (
            "400-digit duration",
            _set(VALID, "timeout = 1", f"timeout = {HUGE}"),
            "probe.ipv4.timeout",
        ),
        (
            "no such user",
            _set(VALID, 'state_dir = "state"', 'state_dir = "~nosuchuser/x"'),
            "daemon.state_dir: a string '~nosuchuser/x': no home directory for ~nosuchuser",
        ),
        ("deep array", VALID + "deep = " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
        ("5000-digit integer", VALID + f"big = {'9' * 5000}\n", "TOML value"),
        (
            "path too long",
            _set(VALID, 'state_dir = "state"', f'state_dir = "{"s" * 5000}"'),
            "daemon.state_dir",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_configs_that_were_internal_errors_are_one_line(
    tmp_path: Path, case: str, text: str, key: str
) -> None:
    path = write_config(tmp_path, text)
    _one_line_naming(path, tmp_path, key)


@pytest.mark.parametrize("command", [["replay"], ["status"], ["log", "verify"]])
def test_log_readers_fall_back_to_state_dir_past_a_huge_number(
    tmp_path: Path, command: list[str]
) -> None:
    """replay, status and log verify still read the log through [daemon] state_dir when
    another key holds a 400-digit duration (it was an OverflowError, "internal error")."""
    state = story_copy(tmp_path)
    text = _set(VALID, 'state_dir = "state"', f'state_dir = "{state.name}"')
    config = write_config(tmp_path, _set(text, "timeout = 1", f"timeout = {HUGE}"))
    code, _, err = run_cli([*command, "-c", str(config)], tmp_path)
    assert code == 0, err
    assert "rest of the configuration is invalid" in err and "internal error" not in err


@pytest.mark.parametrize(
    "text",
    [
        _set(VALID, 'state_dir = "state"', 'state_dir = "~nosuchuser/x"'),
        VALID + "deep = " + "[" * 20000 + "]" * 20000 + "\n",
    ],
    ids=["no such user", "deep array"],
)
@pytest.mark.parametrize("command", [["replay"], ["status"], ["log", "verify"]])
def test_log_readers_without_a_usable_state_dir_say_why_in_one_line(
    tmp_path: Path, text: str, command: list[str]
) -> None:
    """When not even [daemon] state_dir can be read, the configuration's problem is the one
    line (exit 1), not an internal error."""
    config = write_config(tmp_path, text)
    code, _, err = run_cli([*command, "-c", str(config)], tmp_path)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert str(config) in err and "internal error" not in err


# -- item 9: names the kernels refuse ---------------------------------------------------------

BAD_NAMES = [
    "é" * 15,  # 15 characters, 30 bytes
    ".",
    "..",
    "-x",
    "eth\uff10",  # a full-width digit
    "a" * 16,
    "wan 0",
    "wan/0",
    "wan:0",
    "\uff45\uff54\uff480",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_interface_names_the_kernels_refuse_are_rejected(tmp_path: Path, name: str) -> None:
    path = write_config(
        tmp_path, _set(VALID, 'interface = "veth0"', f"interface = {json.dumps(name)}")
    )
    _one_line_naming(path, tmp_path, f"{path}: wan.interface:")


@pytest.mark.parametrize("tunnel_id", ["¹²³", "\uff11\uff12\uff13", "١٢٣", "12 3", "-1", "0x10"])
def test_tunnel_id_is_ascii_digits(tmp_path: Path, tunnel_id: str) -> None:
    """str.isdigit() accepts superscripts and other scripts' digits; HE's ids are ASCII."""
    text = _set(VALID, 'tunnel_id = "123456"', f"tunnel_id = {json.dumps(tunnel_id)}")
    _one_line_naming(write_config(tmp_path, text), tmp_path, "tunnelbroker.tunnel_id")


@pytest.mark.parametrize(
    ("name", "platform", "accepted"),
    [
        ("eth0", "linux", True),
        ("he-ipv6", "linux", True),
        ("enp3s0f1", "linux", True),
        ("eth0.100", "linux", True),
        ("wan_0", "linux", True),
        ("a" * 15, "linux", True),
        ("a" * 16, "linux", False),
        ("em0", "openbsd", True),
        ("gif10", "openbsd", True),
        ("vlan100", "openbsd", True),
        ("he-ipv6", "openbsd", False),  # no unit number, and a '-'
        ("em", "openbsd", False),
        ("Em0", "openbsd", False),
        ("0em", "openbsd", False),
        ("em0.1", "openbsd", False),
    ],
)
def test_interface_name_table(name: str, platform: str, accepted: bool) -> None:
    assert (interface_name_problem(name, platform) is None) is accepted


@given(st.text(max_size=40))
def test_an_accepted_name_is_one_every_kernel_takes(name: str) -> None:
    """Whatever is accepted fits IFNAMSIZ in bytes, is ASCII, has none of the characters
    Linux refuses ('/', ':', whitespace), is not '.' or '..', cannot be read as an option,
    and on OpenBSD is a driver name and a unit number."""
    if interface_name_problem(name, None) is None:
        raw = name.encode()
        assert 1 <= len(raw) <= IFNAMSIZ - 1 and name.isascii()
        assert name not in (".", "..") and not name.startswith("-")
        assert not any(c in "/:" or c.isspace() for c in name)
    if interface_name_problem(name, "openbsd") is None:
        assert interface_name_problem(name, None) is None
        assert name.rstrip("0123456789").isalpha() and name[-1].isdigit()


def test_the_tunnel_cannot_be_the_wan(tmp_path: Path) -> None:
    """[tunnel] interface naming the WAN was valid, and `apply` replaced the WAN with a
    tunnel link."""
    path = write_config(tmp_path, _set(VALID, 'interface = "he-ipv6"', 'interface = "veth0"'))
    _one_line_naming(path, tmp_path, f"{path}: tunnel.interface: must differ from wan.interface")


def test_an_openbsd_tunnel_is_a_gif(tmp_path: Path) -> None:
    """On OpenBSD the driver is in the name: /etc/hostname.em1 would configure an em(4)."""
    assert load_config(write_config(tmp_path, OPENBSD)).tunnel.interface == "gif0"
    path = write_config(tmp_path, _set(OPENBSD, 'interface = "gif0"', 'interface = "em1"'))
    _one_line_naming(path, tmp_path, f'{path}: tunnel.interface: "em1" is not a gif interface')


# -- whatever a key holds: a Config or a ConfigError, nothing else -----------------------------

_KEYS = [
    ("daemon", "state_dir"), ("daemon", "retain_days"), ("daemon", "retain_mb"),
    ("daemon", "log"), ("daemon", "watch_kernel"), ("wan", "interface"),
    ("wan", "restart_command"), ("probe.ipv4", "interval"), ("probe.ipv4", "timeout"),
    ("probe.ipv4", "fail_after"), ("probe.ipv6", "source"), ("tunnel", "interface"),
    ("tunnel", "mtu"), ("tunnel", "hostname_file"), ("tunnel", "observe_interval"),
    ("tunnel", "vxlan_id"), ("tunnelbroker", "tunnel_id"), ("tunnelbroker", "update_url"),
    ("tunnelbroker", "read_timeout"), ("tunnelbroker", "ca_file"),
    ("tunnelbroker", "update_key_file"), ("reconcile", "backoff_max"), ("wan", "dhcp_grace"),
    ("wan", "address_in"), ("notify", "timeout"), ("notify", "command"),
    ("metrics", "textfile"), ("metrics", "listen"),
]  # fmt: skip


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


_scalars = (
    st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats()
    | st.booleans()
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
    | st.sampled_from(["~nosuchuser/x", "~", "/dev/null", "/proc/1/x", "..", "\u00e9" * 15])
)
_values = _scalars | st.lists(_scalars, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_KEYS), value=_values)
def test_any_value_of_any_key_is_a_config_or_one_line_problems(
    key: tuple[str, str], value: object
) -> None:
    section, name = key
    text = VALID if f"[{section}]\n" in VALID else VALID + f"\n[{section}]\n"
    lines = text.splitlines()
    header = lines.index(f"[{section}]")
    body = lines
    # drop the key where the section sets it, then set it right under the header
    end = next((i for i in range(header + 1, len(body)) if body[i].startswith("[")), len(body))
    kept = [ln for ln in body[header + 1 : end] if not ln.startswith(f"{name} =")]
    document = "\n".join([*body[: header + 1], f"{name} = {_toml(value)}", *kept, *body[end:]])
    with tempfile.TemporaryDirectory() as directory:
        path = write_config(Path(directory), document + "\n")
        try:
            load_config(path)
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.startswith(f"{path}: ") and "\n" not in problem
                assert len(problem) < 1000


# -- item 11: what -c names -------------------------------------------------------------------


def _cli_error(argv: list[str], cwd: Path, environ: dict[str, str] | None = None) -> str:
    """The one stderr line of a command that must fail with exit 1."""
    import io

    from reconciler.cli import Environment, main

    out, err = io.StringIO(), io.StringIO()
    code = main(argv, Environment(stdout=out, stderr=err, environ=environ or {}, cwd=cwd))
    assert code == 1, (out.getvalue(), err.getvalue())
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, err.getvalue()
    assert "internal error" not in lines[0]
    return lines[0]


def test_an_empty_config_path_is_an_error_not_the_search_order(tmp_path: Path) -> None:
    """`-c ""` used ./etc/reconciler.conf silently."""
    (tmp_path / "etc").mkdir()
    write_config(tmp_path / "etc")
    assert _cli_error(["check-config", "-c", ""], tmp_path) == (
        "empty configuration path (from --config)"
    )
    line = _cli_error(["check-config"], tmp_path, {"RECONCILER_CONFIG": ""})
    assert line == "empty configuration path (from $RECONCILER_CONFIG)"


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    line = _cli_error(["check-config", "-c", str(tmp_path)], tmp_path)
    assert line == f"{tmp_path}: is a directory, not a configuration file (from --config)"


def test_dev_null_is_not_a_regular_file() -> None:
    line = _cli_error(["check-config", "-c", "/dev/null"], Path("/"))
    assert line == "/dev/null: is not a regular file (a character device) (from --config)"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Nobody writes to the FIFO: reading it would block forever."""
    fifo = tmp_path / "reconciler.conf"
    os.mkfifo(fifo)
    lines: list[str] = []
    for command in (["check-config"], ["replay"], ["status"]):
        worker = threading.Thread(
            target=lambda c=command: lines.append(_cli_error([*c, "-c", str(fifo)], tmp_path)),
            daemon=True,
        )
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), f"{command} blocked on the FIFO"
    assert lines == [f"{fifo}: is not a regular file (a FIFO) (from --config)"] * 3


def test_an_empty_file_and_a_missing_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty.conf"
    empty.write_text("\n  \n")
    assert _cli_error(["check-config", "-c", str(empty)], tmp_path) == f"{empty}: is empty"
    missing = tmp_path / "missing.conf"
    line = _cli_error(["check-config", "-c", str(missing)], tmp_path)
    assert line == f"{missing}: no such configuration file (from --config)"


def test_load_config_refuses_a_fifo_put_in_place_of_the_file(tmp_path: Path) -> None:
    """A reload reads the path it loaded before: a FIFO there now must not hang the daemon."""
    fifo = tmp_path / "reconciler.conf"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def load() -> None:
        try:
            load_config(fifo)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "load_config blocked on the FIFO"
    assert isinstance(raised[0], ConfigError)
    assert "is not a regular file (a FIFO)" in str(raised[0])
