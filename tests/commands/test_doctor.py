"""`reconciler doctor` as a command: its exit codes and its JSON, without a lab (the lab's
scenarios are in tests/lab/test_doctor.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from reconciler.cli import Environment, main
from tests.daemon_helpers import linux_config_text


def doctor(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["doctor", *args], Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def test_no_configuration_file_means_it_cannot_run(tmp_path: Path) -> None:
    """Exit 1, one line, when there is nothing to check."""
    code, out, err = doctor("-c", str(tmp_path / "missing.conf"))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "missing.conf" in err


def test_an_invalid_configuration_fails_check_1_and_runs_nothing_else(tmp_path: Path) -> None:
    """Exit 2: check 1 named in --json with its problem; the rest not run, no traceback."""
    config = tmp_path / "reconciler.conf"
    config.write_text(linux_config_text(tmp_path, wan="wan0", update_url="http://127.0.0.1:9/"))
    config.write_text(config.read_text().replace("[wan]", "[wan]\nbogus = 1", 1))
    code, out, err = doctor("--json", "-c", str(config))
    assert code == 2, err
    report = json.loads(out)
    assert report["schema"] == "reconciler.doctor/1"
    assert report["failed"]["number"] == 1 and report["failed"]["name"] == "config"
    assert [c["status"] for c in report["checks"][1:]] == ["not-run"] * 10
    assert "check-config" in report["failed"]["advice"]
    code, text, _ = doctor("-c", str(config))
    assert code == 2
    assert "The first failing check: 1, configuration and update key." in text
    assert "What to do: `reconciler check-config` lists every problem" in text
