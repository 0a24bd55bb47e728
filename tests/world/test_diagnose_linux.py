"""`doctor`'s firewall checks on Linux, where nft does not show everything."""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import pytest

from reconciler.testing.runner import RecordingRunner
from reconciler.world.diagnose import checks
from reconciler.world.diagnose.checks import Doctor
from tests.model.world import make_config

EMPTY_RULESET = '{"nftables": [{"metainfo": {"json_schema_version": 1}}]}'


def doctor_with(ruleset: str) -> Doctor:
    base = make_config()
    daemon = attrs.evolve(base.daemon, platform="linux", state_dir=Path("/nonexistent"))
    config = attrs.evolve(base, daemon=daemon)
    runner = RecordingRunner()
    runner.script(["nft", "-j", "list", "ruleset"], stdout=ruleset)
    doctor = Doctor(config, runner=runner)
    doctor.wan_address = "203.0.113.7"
    return doctor


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_an_empty_nftables_ruleset_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "_legacy_iptables", list)
    result = doctor_with(EMPTY_RULESET).check_he_ping()
    assert result.status == "pass" and "no firewall rules" in result.evidence


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_iptables_legacy_tables_turn_a_pass_into_cannot_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nft shows nothing of iptables-legacy: with its tables loaded, no pass is claimed."""
    monkeypatch.setattr(checks, "_legacy_iptables", lambda: ["filter"])
    result = doctor_with(EMPTY_RULESET).check_he_ping()
    assert result.status == "unknown"
    assert "iptables-legacy tables are loaded (filter)" in result.evidence
