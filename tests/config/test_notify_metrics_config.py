"""[notify] and [metrics]: what loads, and the bad input check-config rejects with one line
naming the key (SIGHUP refuses the same through the same loader)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.configfile import load_config
from tests.config.test_configfile import VALID, check, write_config


def hook(tmp_path: Path, name: str = "hook", mode: int = 0o755) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def test_notify_and_metrics_load(tmp_path: Path) -> None:
    script = hook(tmp_path)
    (tmp_path / "textfile").mkdir()
    config = load_config(
        write_config(
            tmp_path,
            VALID
            + f'[notify]\ncommand = ["{script}", "--quiet"]\n'
            + 'events = ["repaired", "needs-attention"]\ntimeout = 5\n'
            + '[metrics]\ntextfile = "textfile/reconciler.prom"\nlisten = "[::1]:9469"\n',
        )
    )
    assert config.notify.command == (str(script), "--quiet")
    assert config.notify.events == {"repaired", "needs-attention"}
    assert config.notify.timeout == 5.0
    assert config.metrics.textfile == tmp_path / "textfile" / "reconciler.prom"
    assert config.metrics.listen == ("::1", 9469)


def test_without_the_sections_nothing_is_on(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.notify.command == () and config.metrics.listen is None
    assert config.metrics.textfile is None


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ("[notify]\ncommand = []\n", "notify.command", "must name a command"),
        ('[notify]\ncommand = "/bin/true --x"\n', "notify.command", "not a shell string"),
        ('[notify]\ncommand = ["bin/hook"]\n', "notify.command", "absolute path"),
        ('[notify]\ncommand = ["/nonexistent/hook"]\n', "notify.command", "not an executable"),
        ("[notify]\ntimeout = 3\n", "notify.command", "is required"),
        ('[notify]\ncommand = ["/bin/true"]\nevents = ["repair"]\n', "notify.events", "'repair'"),
        ('[notify]\ncommand = ["/bin/true"]\nevents = []\n', "notify.events", "non-empty"),
        (
            '[notify]\ncommand = ["/bin/true"]\ntimeout = 0\n',
            "notify.timeout",
            "must be between 0.1 and 3600",
        ),
        ('[metrics]\ntextfile = "nodir/r.prom"\n', "metrics.textfile", "does not exist"),
        ('[metrics]\ntextfile = "r.txt"\n', "metrics.textfile", ".prom"),
        ('[metrics]\ntextfile = "a\\nb.txt"\n', "metrics.textfile", ".prom"),  # shown quoted
        ('[metrics]\nlisten = "localhost"\n', "metrics.listen", "ADDRESS:PORT"),
        ('[metrics]\nlisten = "127.0.0.1:http"\n', "metrics.listen", "ADDRESS:PORT"),
        ('[metrics]\nlisten = "127.0.0.1:70000"\n', "metrics.listen", "between 1 and 65535"),
        ('[metrics]\nlisten = "0.0.0.0:9469"\n', "metrics.listen", "listen_public"),
        ('[metrics]\nlisten = "192.0.2.1:9469"\n', "metrics.listen", "listen_public"),
        ("[metrics]\nlisten = 9469\n", "metrics.listen", "ADDRESS:PORT"),
        ("[metrics]\nport = 9469\n", "metrics.port", "unknown key"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(
    tmp_path: Path, section: str, key: str, expected: str
) -> None:
    path = write_config(tmp_path, VALID + section)
    code, out, err = check(path, tmp_path)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert f": {key}: " in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("textfile", "expected"),
    [
        ("node.prom", "node.prom' is a directory; name the file to write in it"),
        ("plain/r.prom", "plain' is not a directory"),
        ("gone/r.prom", "gone' does not exist"),
    ],
)
def test_a_textfile_that_cannot_be_a_file_is_one_line(
    tmp_path: Path, textfile: str, expected: str
) -> None:
    """check-config refuses a textfile that names a directory, or whose directory is
    missing or a file, in one line naming the key (it used to say "valid")."""
    (tmp_path / "node.prom").mkdir()
    (tmp_path / "plain").write_text("")
    path = write_config(tmp_path, VALID + f'[metrics]\ntextfile = "{textfile}"\n')
    code, out, err = check(path, tmp_path)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 1 and ": metrics.textfile: " in lines[0], err
    assert expected in lines[0], lines[0]


def test_a_public_listen_needs_listen_public(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, VALID + '[metrics]\nlisten = "0.0.0.0:9469"\nlisten_public = true\n')
    )
    assert config.metrics.listen == ("0.0.0.0", 9469) and config.metrics.listen_public


def test_a_taken_listen_address_is_rejected_by_check_config(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, VALID + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        code, _, err = check(path, tmp_path)
    assert code == 1
    assert err.splitlines() == [f"{path}: metrics.listen: 127.0.0.1:{port}: Address already in use"]
    code, out, _ = check(path, tmp_path)  # free again
    assert code == 0 and f"listen 127.0.0.1:{port}" in out
