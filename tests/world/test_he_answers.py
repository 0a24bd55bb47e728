"""HE's answer as the metrics and notifications read it (reconciler.model.notices.he_answer)
from the outcome messages the real client writes, against the fake HE over loopback: if the
client's wording changes, this fails instead of the metrics going quietly wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.model.notices import he_answer
from reconciler.testing.fake_he import FakeTunnelbroker
from reconciler.world.tunnelbroker import TunnelbrokerClient
from tests.world.test_tunnelbroker import NEW, OLD, TEST_KEY, TUNNEL_ID, USERNAME, make_config


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[FakeTunnelbroker, TunnelbrokerClient]]:
    key_file = tmp_path / "update.key"
    key_file.write_text(TEST_KEY)
    key_file.chmod(0o600)
    with FakeTunnelbroker(tunnel_id=TUNNEL_ID, username=USERNAME, key=TEST_KEY, endpoint=OLD) as f:
        c = TunnelbrokerClient(make_config(f, key_file, read_timeout=1.0))
        yield f, c
        c.close()


@pytest.mark.parametrize(
    ("script", "answer"),
    [
        (None, "good"),
        ("badauth", "badauth"),
        ("nohost", "nohost"),
        ("!yours", "!yours"),
        ("notfqdn", "notfqdn"),
        ("numhost", "numhost"),
        ("abuse", "abuse"),
        ("911", "911"),
        ("dnserr", "dnserr"),
        ("401", "http-401"),
        ("503", "http-503"),
        ("unpingable", "unpingable"),
        ("legacy-rfc1918", "private-address"),
        ("unknown", "unknown"),
    ],
)
def test_every_answer_is_read_back_from_the_outcome(
    client: tuple[FakeTunnelbroker, TunnelbrokerClient], script: str | None, answer: str
) -> None:
    fake, tunnelbroker = client
    if script is not None:
        fake.script(script)
    outcome = tunnelbroker.update(NEW, NEW).outcome
    assert he_answer("update-he-endpoint", outcome.message, succeeded=outcome.succeeded) == answer


def test_nochg_is_read_back(client: tuple[FakeTunnelbroker, TunnelbrokerClient]) -> None:
    _, tunnelbroker = client
    assert tunnelbroker.update(NEW, NEW).outcome.succeeded
    again = tunnelbroker.update(NEW, NEW).outcome
    assert he_answer("update-he-endpoint", again.message, succeeded=True) == "nochg"
