"""The tunnelbroker client against the fake HE server over loopback (requests is not mocked)."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from reconciler.model.actions import UpdateHeEndpoint, holds_only_its_key, is_abuse
from reconciler.model.config import TunnelbrokerConfig
from reconciler.testing.fake_he import (
    FakeTunnelbroker,
    Reply,
    TestCa,
    make_test_ca,
    running_process,
)
from reconciler.world.tunnelbroker import (
    ABUSE_RETRY_AFTER,
    RETRY_AFTER_MAX,
    TunnelbrokerClient,
    UpdateResult,
)
from tests.daemon_helpers import key_encodings
from tests.netns import namespace

TEST_KEY = "k3y-Sup3rSecret-2f9a7c"
USERNAME = "rcuser"
TUNNEL_ID = "123456"
OLD = "198.51.100.2"
NEW = "198.51.100.7"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "update.key"
    path.write_text(f"  {TEST_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def fake() -> Iterator[FakeTunnelbroker]:
    with FakeTunnelbroker(tunnel_id=TUNNEL_ID, username=USERNAME, key=TEST_KEY, endpoint=OLD) as f:
        yield f


def make_config(fake: FakeTunnelbroker, key_file: Path, **overrides: object) -> TunnelbrokerConfig:
    values: dict[str, object] = {
        "tunnel_id": TUNNEL_ID,
        "username": USERNAME,
        "update_key_file": key_file,
        "update_url": fake.update_url,
        "info_url": fake.info_url,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return TunnelbrokerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(fake: FakeTunnelbroker, key_file: Path) -> Iterator[TunnelbrokerClient]:
    c = TunnelbrokerClient(make_config(fake, key_file))
    yield c
    c.close()


def test_update_to_a_new_address_is_ok_and_reports_the_endpoint(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """`good <sent address>` is success and HE's endpoint becomes that address."""
    result = client.update(NEW, NEW)
    assert result.outcome.status == "ok"
    assert result.endpoint == NEW
    assert fake.endpoint == NEW
    request = fake.requests[-1]
    assert request.params == {"hostname": TUNNEL_ID, "myip": NEW}
    assert request.auth == "basic" and request.authorized


def test_every_call_opens_a_fresh_connection(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """No connection is kept alive between calls: after the ISP changes our address, a pooled
    socket would still be bound to the old one and the update would never reach HE."""
    client.update(NEW, NEW)
    client.tunnel_info()
    client.update(OLD, OLD)
    ports = [r.source_port for r in fake.requests]
    assert len(ports) == 3
    assert len(set(ports)) == 3, f"a connection was reused: {ports}"


def test_update_with_the_address_he_has_is_nochg_and_ok(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """`nochg <expected>` is success too."""
    result = client.update(OLD, OLD)
    assert result.outcome.succeeded
    assert result.endpoint == OLD
    assert fake.requests[-1].body == f"nochg {OLD}"


def test_update_without_myip_sends_none_and_he_uses_the_source(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """With address None no myip goes out; HE takes the source (loopback: it cannot ping it)."""
    result = client.update(None, "10.0.0.2")
    assert fake.requests[-1].params == {"hostname": TUNNEL_ID}
    assert fake.requests[-1].body == "good 127.0.0.1"
    assert result.outcome.status == "temporary"
    assert "66.220.2.74" in result.outcome.message


def test_the_key_is_read_from_its_file_at_call_time(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, key_file: Path
) -> None:
    """Changing the key file takes effect at the next call, without a new client."""
    key_file.write_text("a-wrong-key\n")
    assert client.update(NEW, NEW).outcome.status == "permanent"
    key_file.write_text(TEST_KEY)
    assert client.update(NEW, NEW).outcome.succeeded


def test_wrong_key_is_badauth_and_permanent(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, key_file: Path
) -> None:
    """The fake checks Basic auth for real; a wrong key answers badauth, a permanent outcome."""
    key_file.write_text("not-the-key")
    result = client.update(NEW, NEW)
    assert fake.requests[-1].authorized is False
    assert result.outcome.status == "permanent"
    assert "badauth" in result.outcome.message
    assert fake.endpoint == OLD


def test_wrong_tunnel_id_is_nohost(fake: FakeTunnelbroker, key_file: Path) -> None:
    """A tunnel id HE does not know is a permanent nohost."""
    client = TunnelbrokerClient(make_config(fake, key_file, tunnel_id="999"))
    result = client.update(NEW, NEW)
    assert result.outcome.status == "permanent"
    assert "nohost" in result.outcome.message


@pytest.mark.parametrize(
    ("answer", "status", "word", "retry_after"),
    [
        ("badauth", "permanent", "badauth", None),
        ("nohost", "permanent", "nohost", None),
        ("!yours", "permanent", "!yours", None),
        ("notfqdn", "permanent", "notfqdn", None),
        ("numhost", "permanent", "numhost", None),
        ("legacy-rfc1918", "permanent", "RFC 1918", None),
        # Whatever the table does not name is passing trouble, retried with the planner's
        # back-off after server trouble (no wait of the client's own); abuse waits hours.
        ("401", "temporary", "HTTP 401", None),
        ("403", "temporary", "HTTP 403", None),
        ("unknown", "temporary", "Scheduled maintenance", None),
        ("maintenance", "temporary", "Scheduled maintenance", None),
        ("empty", "temporary", "empty answer", None),
        ("204", "temporary", "HTTP 204", None),
        ("429", "temporary", "HTTP 429", None),
        ("abuse", "temporary", "abuse", ABUSE_RETRY_AFTER),
        ("911", "temporary", "911", None),
        ("dnserr", "temporary", "dnserr", None),
        ("500", "temporary", "HTTP 500", None),
        ("502", "temporary", "HTTP 502", None),
        ("503", "temporary", "HTTP 503", None),
        ("unpingable", "temporary", "66.220.2.74", None),
        ("legacy-unpingable", "temporary", "66.220.2.74", None),
    ],
)
def test_every_answer_in_the_table_maps_to_its_outcome(
    fake: FakeTunnelbroker,
    client: TunnelbrokerClient,
    answer: str,
    status: str,
    word: str,
    retry_after: float | None,
) -> None:
    """Each scripted HE answer becomes the outcome the protocol table prescribes, in one line."""
    fake.script(answer)
    result = client.update(NEW, NEW)
    assert result.outcome.status == status
    assert word in result.outcome.message
    assert result.outcome.retry_after == retry_after
    assert "\n" not in result.outcome.message
    assert result.endpoint is None
    # Only the refusal of a private address is about the address sent (the planner holds the
    # update for that address alone); the others are about the account or the tunnel.
    only_its_address = holds_only_its_key(UpdateHeEndpoint.KIND, result.outcome.message)
    assert only_its_address == (answer == "legacy-rfc1918")
    # Only abuse holds for hours; the rest of the temporary ones are server trouble.
    assert is_abuse(UpdateHeEndpoint.KIND, result.outcome.message) == (answer == "abuse")


def test_he_refusing_a_private_myip_holds_only_that_address(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """An address HE takes for private (198.18.0.0/15, benchmarking: our own check sends it)
    draws HE's legacy RFC 1918 refusal: permanent, naming the address, for that address only."""
    result = client.update("198.18.0.7", "198.18.0.7")
    assert fake.requests[-1].params["myip"] == "198.18.0.7"
    assert result.outcome.status == "permanent"
    assert "198.18.0.7" in result.outcome.message and "RFC 1918" in result.outcome.message
    assert holds_only_its_key(UpdateHeEndpoint.KIND, result.outcome.message)
    assert fake.endpoint == OLD


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(302, "moved", (("Location", "http://127.0.0.1:9/x"),)), id="302"),
        pytest.param(Reply(307, "", (("Location", "/nic/update2"),)), id="307"),
        pytest.param(Reply(200, "GOOD-ISH {address}"), id="a-word-close-to-good"),
        pytest.param(Reply(200, "good not-an-address"), id="good-without-an-address"),
        pytest.param(Reply(200, "-ERROR: something new"), id="an-unknown-legacy-error"),
        pytest.param(Reply(418, "badauth?"), id="418"),
        pytest.param(Reply(500, "badauth"), id="badauth-in-a-server-error"),
        pytest.param(Reply(200, "\x00\x01\x02"), id="control-bytes"),
    ],
)
def test_the_unknown_is_temporary_and_nothing_is_followed(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, reply: Reply
) -> None:
    """Answers HE's table does not name (redirects included, never followed) are temporary
    with no wait of their own (the planner's back-off decides); one line, and HE's endpoint
    is not taken as moved."""
    fake.script(reply)
    result = client.update(NEW, NEW)
    assert result.outcome.status == "temporary", result.outcome.message
    assert result.outcome.retry_after is None
    assert "\n" not in result.outcome.message
    assert result.endpoint is None
    assert len(fake.requests) == 1  # a redirect was not followed


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("GOOD {address}", id="capitals"),
        pytest.param("\ufeffgood {address}", id="utf8-bom"),
        pytest.param("  good {address}\r\n", id="whitespace"),
        pytest.param("NoChg {address}", id="nochg-mixed-case"),
    ],
)
def test_good_in_any_case_or_after_a_bom_is_success(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, body: str
) -> None:
    """`GOOD 1.2.3.4` and a byte-order mark before `good` are HE's success all the same."""
    fake.script(Reply(200, body, apply=True))
    result = client.update(NEW, NEW)
    assert result.outcome.status == "ok", result.outcome.message
    assert result.endpoint == NEW


def test_a_bom_is_read_as_utf8_whatever_the_charset_says(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """A server declaring latin-1 (or nothing) but sending a UTF-8 BOM still says `good`."""
    fake.script(Reply(200, "\ufeffgood {address}", (("Content-Type", "text/plain"),), apply=True))
    assert client.update(NEW, NEW).outcome.succeeded


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        pytest.param(503, "120", 120.0, id="503-seconds"),
        pytest.param(429, "45", 45.0, id="429-seconds"),
        pytest.param(503, "0", 0.0, id="503-now"),
        pytest.param(429, "999999999", RETRY_AFTER_MAX, id="429-bounded"),
        pytest.param(503, "soon", None, id="503-unreadable"),
        pytest.param(503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="503-a-date-past"),
    ],
)
def test_retry_after_sets_the_wait(
    fake: FakeTunnelbroker,
    client: TunnelbrokerClient,
    status: int,
    header: str,
    expected: float | None,
) -> None:
    """503 and 429 with Retry-After (seconds or an HTTP date) wait that long, within bounds."""
    fake.script(Reply(status, "busy", (("Retry-After", header),)))
    result = client.update(NEW, NEW)
    assert result.outcome.status == "temporary"
    assert result.outcome.retry_after == expected
    assert f"HTTP {status}" in result.outcome.message


def test_retry_after_as_an_http_date_counts_from_now(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """An HTTP date in Retry-After becomes the seconds left until then."""
    when = email.utils.formatdate(time.time() + 900, usegmt=True)
    fake.script(Reply(503, "busy", (("Retry-After", when),)))
    result = client.update(NEW, NEW)
    assert result.outcome.retry_after is not None
    assert 880 <= result.outcome.retry_after <= 901


def test_abuse_waits_hours_even_with_a_shorter_retry_after(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """`abuse` keeps its hours; a server's short Retry-After does not shorten them."""
    fake.script(Reply(200, "abuse", (("Retry-After", "5"),)))
    assert client.update(NEW, NEW).outcome.retry_after == ABUSE_RETRY_AFTER


def test_good_with_another_address_is_not_success(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """`good <other ip>` when we sent an address is a temporary failure naming both."""
    fake.script("body:good 198.51.100.99")
    result = client.update(NEW, NEW)
    assert result.outcome.status == "temporary"
    assert "198.51.100.99" in result.outcome.message and NEW in result.outcome.message


def test_behind_nat_any_real_address_in_good_is_our_public_one(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """Without myip, `good <public ip>` is success and that ip is the endpoint."""
    fake.script("body:good 203.0.113.50")
    result = client.update(None, "10.0.0.2")
    assert result.outcome.succeeded
    assert result.endpoint == "203.0.113.50"


def test_a_long_unknown_body_is_cut_to_one_line(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """Unknown bodies are logged whole but shown cut, on one line, in the outcome."""
    fake.script("body:" + "weird\nbody " * 200)
    result = client.update(NEW, NEW)
    assert result.outcome.status == "temporary"
    assert "\n" not in result.outcome.message
    assert len(result.outcome.message) < 320


def test_escape_sequences_in_an_unknown_body_go_whole(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """An answer that retitles the window and clears the screen: its outcome holds the text
    around the sequences, not their payloads (the one sanitiser, outside_text.clean_line)."""
    fake.script("body:weird \x1b]0;pwned\x07\x1b[2J\x9b31mreally\x1b[0m")
    message = client.update(NEW, NEW).outcome.message
    assert message.endswith("weird really"), message
    assert "pwned" not in message and all(ch.isprintable() for ch in message)


def test_a_slow_answer_times_out_as_temporary(fake: FakeTunnelbroker, key_file: Path) -> None:
    """An answer slower than the read timeout is a temporary failure, in about that time."""
    fake.delay = 3.0
    client = TunnelbrokerClient(make_config(fake, key_file, read_timeout=0.3))
    started = time.monotonic()
    result = client.update(NEW, NEW)
    assert time.monotonic() - started < 2.5
    assert result.outcome.status == "temporary"
    assert "no answer in time" in result.outcome.message
    assert result.outcome.retry_after is None


# A body or headers dripped a byte every 0.5 s used to hold one call for about a minute with
# read_timeout = connect_timeout = 1: every byte restarted the read timeout.
DRIP_CASES = pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(200, "good {address}" + " " * 100, body_drip=0.5), id="body"),
        pytest.param(Reply(200, "good {address}", header_drip=0.5), id="headers"),
        pytest.param(Reply(200, "{answer}", delay=30.0), id="silence-after-applying"),
    ],
)


@DRIP_CASES
def test_a_dripped_answer_ends_by_the_deadline(
    fake: FakeTunnelbroker, key_file: Path, reply: Reply
) -> None:
    """The whole call (connect, headers, body) ends by connect_timeout + read_timeout, as a
    temporary failure saying so, however the server spaces its bytes."""
    client = TunnelbrokerClient(make_config(fake, key_file, connect_timeout=1.0, read_timeout=1.0))
    assert client.deadline == 2.0
    fake.script(reply)
    started = time.monotonic()
    result = client.update(NEW, NEW)
    took = time.monotonic() - started
    assert result.outcome.status == "temporary", result.outcome.message
    # Silence ends by the read timeout (1 s), a drip by the deadline.
    assert any(
        why in result.outcome.message
        for why in ("no complete answer within 2 s", "no answer in time")
    ), result.outcome.message
    if reply.delay == 0:
        assert "no complete answer within 2 s" in result.outcome.message
    # Generous: the deadline plus the worker's grace and a loaded machine's slack. The same
    # answer took 50 s and more before the deadline existed.
    assert took < 2.0 + 4.0, took


@DRIP_CASES
def test_tunnel_info_ends_by_the_deadline_too(
    fake: FakeTunnelbroker, key_file: Path, reply: Reply
) -> None:
    """tunnelInfo shares the deadline (scripted here through the fake's update path, which
    the info URL points at)."""
    config = make_config(
        fake, key_file, connect_timeout=1.0, read_timeout=1.0, info_url=fake.update_url
    )
    fake.script(reply)
    started = time.monotonic()
    info = TunnelbrokerClient(config).read_tunnel_info()
    assert info is not None and info.outcome.status == "temporary"
    assert time.monotonic() - started < 2.0 + 4.0


def test_the_deadline_frees_the_call_thread_and_the_next_call_reuses_it(
    fake: FakeTunnelbroker, key_file: Path
) -> None:
    """After a call cut at its deadline, its worker thread is free again promptly (its socket
    was shut down), and the next call works on that same kept thread."""
    client = TunnelbrokerClient(make_config(fake, key_file, connect_timeout=0.5, read_timeout=0.5))
    try:
        fake.script(Reply(200, "good {address}" + " " * 200, body_drip=0.3))
        client.update(NEW, NEW)
        _until_the_call_thread_is_free(client)
        assert client.update(NEW, NEW).outcome.succeeded
        _until_the_call_thread_is_free(client)
        assert client._workers.threads == 1
    finally:
        client.close()


def test_calls_one_after_another_share_one_kept_thread(client: TunnelbrokerClient) -> None:
    """A thread per call scattered allocations over glibc's arenas (RSS crept): calls go to a
    kept thread."""
    for address in (NEW, OLD, NEW):
        assert client.update(address, address).outcome.succeeded
        _until_the_call_thread_is_free(client)
    assert client.tunnel_info() == NEW
    _until_the_call_thread_is_free(client)
    assert client._workers.threads == 1


def _until_the_call_thread_is_free(client: TunnelbrokerClient) -> None:
    # The caller is told the answer just before the thread counts itself free again.
    deadline = time.monotonic() + 5
    while client._workers.idle < 1:
        assert time.monotonic() < deadline, "the call's thread is still busy"
        time.sleep(0.01)


def test_a_dropped_connection_is_temporary(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """The server closing the connection without an answer is a temporary connection failure."""
    fake.script("drop")
    result = client.update(NEW, NEW)
    assert result.outcome.status == "temporary"
    assert "connection failed" in result.outcome.message


def test_nothing_listening_is_temporary(key_file: Path) -> None:
    """A refused connection is temporary, never an exception."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = TunnelbrokerConfig(
        tunnel_id=TUNNEL_ID,
        username=USERNAME,
        update_key_file=key_file,
        update_url=f"http://127.0.0.1:{port}/nic/update",
        connect_timeout=1.0,
    )
    result = TunnelbrokerClient(config).update(NEW, NEW)
    assert result.outcome.status == "temporary"
    assert "connection failed" in result.outcome.message


def test_a_missing_key_file_is_permanent_and_names_the_file(
    fake: FakeTunnelbroker, tmp_path: Path
) -> None:
    """No key file: a permanent outcome naming the file, and no request is made."""
    missing = tmp_path / "nope.key"
    result = TunnelbrokerClient(make_config(fake, missing)).update(NEW, NEW)
    assert result.outcome.status == "permanent"
    assert str(missing) in result.outcome.message
    assert fake.requests == []


def test_an_unreadable_key_file_is_permanent(fake: FakeTunnelbroker, tmp_path: Path) -> None:
    """A key path that cannot be read (a directory) is permanent and names the path."""
    result = TunnelbrokerClient(make_config(fake, tmp_path)).update(NEW, NEW)
    assert result.outcome.status == "permanent"
    assert str(tmp_path) in result.outcome.message


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def test_tls_with_the_test_ca_is_verified_and_works(test_ca: TestCa, key_file: Path) -> None:
    """Over HTTPS with `ca_file` set to the test CA the update succeeds."""
    with FakeTunnelbroker(key=TEST_KEY, username=USERNAME, endpoint=OLD, tls=test_ca) as fake:
        assert fake.update_url.startswith("https://")
        client = TunnelbrokerClient(make_config(fake, key_file, ca_file=test_ca.ca_cert))
        result = client.update(NEW, NEW)
    assert result.outcome.succeeded, result.outcome.message


def test_tls_with_an_untrusted_ca_fails(test_ca: TestCa, key_file: Path) -> None:
    """Without trusting the test CA the certificate is refused and no request is served."""
    with FakeTunnelbroker(key=TEST_KEY, username=USERNAME, endpoint=OLD, tls=test_ca) as fake:
        result = TunnelbrokerClient(make_config(fake, key_file)).update(NEW, NEW)
        assert fake.requests == []
    assert result.outcome.status == "temporary"
    assert "TLS verification failed" in result.outcome.message


def test_tunnel_info_reads_the_endpoint_he_has(
    fake: FakeTunnelbroker, client: TunnelbrokerClient
) -> None:
    """tunnelInfo.php gives the client IPv4 endpoint, and follows an update."""
    assert client.tunnel_info() == OLD
    client.update(NEW, NEW)
    info = client.read_tunnel_info()
    assert info is not None and info.outcome.succeeded
    assert info.client_ipv4 == NEW
    assert info.server_ipv4 == fake.server_ipv4
    assert fake.requests[-1].params == {"tid": TUNNEL_ID}


def test_tunnel_info_is_none_when_not_configured(fake: FakeTunnelbroker, key_file: Path) -> None:
    """Without info_url there is nothing to read."""
    client = TunnelbrokerClient(make_config(fake, key_file, info_url=None))
    assert client.tunnel_info() is None
    assert client.read_tunnel_info() is None


def test_tunnel_info_errors_are_outcomes(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, key_file: Path
) -> None:
    """A wrong key, an unknown tunnel or a dead server give an outcome, never an exception."""
    key_file.write_text("wrong")
    info = client.read_tunnel_info()
    assert info is not None and info.outcome.status == "permanent"
    assert client.tunnel_info() is None
    key_file.write_text(TEST_KEY)
    other = TunnelbrokerClient(make_config(fake, key_file, tunnel_id="42"))
    info = other.read_tunnel_info()
    assert info is not None and info.outcome.status == "permanent"
    assert "no tunnel 42" in info.outcome.message
    fake.stop()
    info = client.read_tunnel_info()
    assert info is not None and info.outcome.status == "temporary"


def test_the_key_appears_nowhere(
    fake: FakeTunnelbroker,
    key_file: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    test_ca: TestCa,
) -> None:
    """Across every path (success, errors, echoes, time-outs, TLS) the key never leaks."""
    caplog.set_level(logging.DEBUG)
    client = TunnelbrokerClient(make_config(fake, key_file, read_timeout=0.3))
    results: list[object] = []
    for answer in ["normal", "badauth", "unknown", "500", "drop", "abuse", "unpingable"]:
        fake.script(answer)
        results.append(client.update(NEW, NEW))
    # A server that echoes the key (and the Basic token) back must not get it into a message.
    fake.script(f"body:weird {TEST_KEY} echo")
    results.append(client.update(NEW, NEW))
    fake.script("body:dXNlcjprZXk= cmN1c2VyOmszeS1TdXAzclNlY3JldC0yZjlhN2M=")
    results.append(client.update(NEW, NEW))
    fake.delay = 1.0
    results.append(client.update(NEW, NEW))
    fake.delay = 0.0
    results.append(client.read_tunnel_info())
    with FakeTunnelbroker(key=TEST_KEY, username=USERNAME, tls=test_ca) as tls_fake:
        results.append(TunnelbrokerClient(make_config(tls_fake, key_file)).update(NEW, NEW))
    texts = [repr(r) for r in results] + [str(r) for r in results] + [repr(client)]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    # The fake's own records (bodies aside: the test itself scripted an echo of the key).
    texts += [repr((r.params, r.auth, r.source)) for r in fake.requests]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    token = base64.b64encode(f"{USERNAME}:{TEST_KEY}".encode()).decode()
    assert any(isinstance(r, UpdateResult) and r.outcome.succeeded for r in results)
    for text in texts:
        assert TEST_KEY not in text
        assert token not in text


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("sékrit-update-key-9d2f", id="latin-1-encodable"),
        pytest.param("key-with-€-sign-4b1e", id="not-latin-1"),
        pytest.param("", id="empty"),
        pytest.param("line-one\nline-two", id="two-lines"),
    ],
)
def test_a_bad_key_is_a_permanent_hold_and_never_sent(
    fake: FakeTunnelbroker,
    key_file: Path,
    caplog: pytest.LogCaptureFixture,
    key: str,
) -> None:
    """A key HE cannot have issued is refused before any request: permanent (like badauth)
    in one line naming the file, with nothing of the key and no encoding error's text."""
    caplog.set_level(logging.DEBUG)
    key_file.write_text(key + "\n", encoding="utf-8")
    fake.script(Reply(200, "echo {authorization}"))
    client = TunnelbrokerClient(make_config(fake, key_file))
    result = client.update(NEW, NEW)
    info = client.read_tunnel_info()
    assert fake.requests == []
    assert result.outcome.status == "permanent"
    assert info is not None and info.outcome.status == "permanent"
    message = result.outcome.message
    assert "\n" not in message and str(key_file) in message
    texts = [message, info.outcome.message, caplog.text, repr(result), repr(info)]
    for text in texts:
        for needle in ("position", "codec", "Unicode", "€", "é"):
            assert needle not in text, (needle, text)
        if key:
            for name, form in key_encodings(key, USERNAME).items():
                assert form.decode("latin-1") not in text, name


def test_no_encoding_of_the_key_survives_an_echo(
    fake: FakeTunnelbroker,
    key_file: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server echoing the Authorization header, or the key in any encoding, gets none of
    it into an outcome or a log line (the tests' own list of encodings is searched)."""
    key = "Ab+/=%&<>\"' \\z~-k3y"
    key_file.write_text(key + "\n")
    fake.set_key(key)
    caplog.set_level(logging.DEBUG)
    client = TunnelbrokerClient(make_config(fake, key_file))
    forms = key_encodings(key, USERNAME)
    results = []
    fake.script(Reply(200, "echo {authorization}"))
    results.append(client.update(NEW, NEW))
    fake.script(Reply(503, "echo {authorization}"))
    results.append(client.update(NEW, NEW))
    for form in forms.values():
        fake.script(Reply(200, f"weird {form.decode('latin-1')} answer"))
        results.append(client.update(NEW, NEW))
    location = f"http://x/?k={forms['url-quoted utf-8'].decode()}"
    fake.script(Reply(302, "", (("Location", location),)))
    results.append(client.update(NEW, NEW))
    captured = capsys.readouterr()
    texts = [repr(r) for r in results] + [caplog.text, captured.out, captured.err]
    assert any("Basic ***" in r.outcome.message for r in results)
    for text in texts:
        for name, form in forms.items():
            assert form.decode("latin-1") not in text, name


def test_a_running_fake_process_serves_the_client_without_myip_from_a_real_address(
    lab_available: None, key_file: Path, tmp_path: Path
) -> None:
    """Behind NAT (no myip) HE records the request's real source address, in a netns."""
    ns = f"rctb{os.getpid()}"
    stack = contextlib.ExitStack()
    try:
        # A non-loopback address, so the fake sees a real source.
        stack.enter_context(namespace(ns, ["addr", "add", "198.51.100.1/32", "dev", "lo"]))
        server = stack.enter_context(
            running_process(
                netns=ns, listen="198.51.100.1:8080", tunnel_id=TUNNEL_ID, username=USERNAME,
                key_file=key_file, endpoint=OLD,
            )
        )  # fmt: skip
        assert server[1] == "198.51.100.1:8080"
        script = textwrap.dedent(f"""
            from pathlib import Path
            from reconciler.model.config import TunnelbrokerConfig
            from reconciler.world.tunnelbroker import TunnelbrokerClient
            config = TunnelbrokerConfig(
                tunnel_id={TUNNEL_ID!r}, username={USERNAME!r},
                update_key_file=Path({str(key_file)!r}),
                update_url="http://198.51.100.1:8080/nic/update")
            result = TunnelbrokerClient(config).update(None, "10.0.0.2")
            print(result.outcome.status, result.endpoint)
        """)
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.stdout.split() == ["ok", "198.51.100.1"], done.stderr
    finally:
        stack.close()


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from `stream`, or "" when none comes within `timeout` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def test_an_unknown_body_is_logged_whole(
    fake: FakeTunnelbroker, client: TunnelbrokerClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The log line of an unknown answer carries the whole body, where the outcome has a cut."""
    body = "unexpected " + "x" * 600 + " tail-marker"
    fake.script(f"body:{body}")
    result = client.update(NEW, NEW)
    assert "tail-marker" not in result.outcome.message
    assert "tail-marker" in caplog.text
