"""The fake HE server speaks the tunnelbroker protocol faithfully, in-process and as a process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from reconciler.testing.fake_he import (
    ANSWERS,
    RFC1918_LEGACY,
    FakeTunnelbroker,
    Reply,
    make_test_ca,
    running_process,
    system_ping,
)
from tests.netns import namespace

KEY = "fake-he-Key-7c1d"
USER = "rcuser"
TID = "123456"
OLD = "198.51.100.2"
NEW = "198.51.100.9"


@pytest.fixture
def fake() -> Iterator[FakeTunnelbroker]:
    with FakeTunnelbroker(tunnel_id=TID, username=USER, key=KEY, endpoint=OLD) as f:
        yield f


def update(
    fake: FakeTunnelbroker, auth: tuple[str, str] | None = (USER, KEY), **params: str
) -> requests.Response:
    """An update request as a client would send it."""
    return requests.get(fake.update_url, params={"hostname": TID, **params}, auth=auth, timeout=5)


def test_a_change_answers_good_and_keeps_the_endpoint(fake: FakeTunnelbroker) -> None:
    """A new myip answers `good <ip>`, is kept, and the same again answers `nochg <ip>`."""
    first = update(fake, myip=NEW)
    assert (first.status_code, first.text) == (200, f"good {NEW}")
    assert fake.endpoint == NEW
    again = update(fake, myip=NEW)
    assert again.text == f"nochg {NEW}"
    assert fake.counts["update"] == 2 and fake.counts["update:nochg"] == 1


def test_without_myip_the_source_address_is_taken(fake: FakeTunnelbroker) -> None:
    """No myip: HE uses the request's source address (here loopback)."""
    assert update(fake).text == "good 127.0.0.1"
    assert fake.requests[-1].source == "127.0.0.1"


def test_basic_auth_is_checked(fake: FakeTunnelbroker) -> None:
    """A wrong key, a wrong user or no credentials answer 401 badauth and change nothing."""
    for auth in [(USER, "wrong"), ("someone", KEY), None]:
        answer = update(fake, auth=auth, myip=NEW)
        assert (answer.status_code, answer.text) == (401, "badauth")
    assert fake.endpoint == OLD
    assert [r.auth for r in fake.requests] == ["basic", "basic", "none"]


def test_legacy_query_credentials_work_and_are_not_recorded(fake: FakeTunnelbroker) -> None:
    """username=/password= in the query are accepted, and the password is never recorded."""
    answer = update(fake, auth=None, myip=NEW, username=USER, password=KEY)
    assert answer.text == f"good {NEW}"
    recorded = fake.requests[-1]
    assert recorded.auth == "query" and recorded.authorized
    assert "password" not in recorded.params
    assert KEY not in repr(fake.requests) and KEY not in json.dumps(fake.stats())


@pytest.mark.parametrize(
    ("hostname", "body"), [("999", "nohost"), ("abc.example", "notfqdn"), ("1,2", "numhost")]
)
def test_wrong_hostnames_get_hes_answers(fake: FakeTunnelbroker, hostname: str, body: str) -> None:
    """An unknown tunnel id, a non-numeric one and several at once get their answers."""
    answer = requests.get(
        fake.update_url, params={"hostname": hostname}, auth=(USER, KEY), timeout=5
    )
    assert answer.text == body


def test_a_private_myip_gets_the_legacy_rfc1918_error(fake: FakeTunnelbroker) -> None:
    """RFC 1918 addresses are refused; the endpoint stays."""
    assert update(fake, myip="192.168.1.20").text == RFC1918_LEGACY
    assert fake.endpoint == OLD


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_every_scripted_answer_is_given_once(fake: FakeTunnelbroker, name: str) -> None:
    """A scripted answer is served for the next update only; then HE behaves normally again."""
    fake.script(name)
    status, body = ANSWERS[name]
    answer = update(fake, myip=NEW)
    assert (answer.status_code, answer.text) == (status, body)
    assert update(fake, myip=NEW).text == f"good {NEW}"


def test_a_scripted_drop_closes_the_connection_unanswered(fake: FakeTunnelbroker) -> None:
    """`drop` closes the connection without a status line."""
    fake.script("drop")
    with pytest.raises(requests.ConnectionError):
        update(fake, myip=NEW)
    assert fake.requests[-1].status == 0


def test_unknown_scripted_answers_are_refused(fake: FakeTunnelbroker) -> None:
    """Scripting a name the fake does not know is a test bug, reported at once."""
    with pytest.raises(ValueError, match="unknown scripted answer"):
        fake.script("gooood")


def test_a_reply_sets_status_headers_and_a_body_template(fake: FakeTunnelbroker) -> None:
    """A Reply's status, headers and body go out as given; {answer} is HE's own answer (the
    endpoint moves), {authorization} the header as it came."""
    fake.script(Reply(503, "busy", (("Retry-After", "120"),)))
    answer = update(fake, myip=NEW)
    assert (answer.status_code, answer.text) == (503, "busy")
    assert answer.headers["Retry-After"] == "120"
    assert fake.endpoint == OLD  # HE did not act on it
    fake.script(Reply(200, "\ufeff{answer}"))
    answer = update(fake, myip=NEW)
    assert answer.content == "\ufeffgood 198.51.100.9".encode()
    assert fake.endpoint == NEW
    fake.script(Reply(200, "GOOD {address}"))
    assert update(fake, myip=OLD).text == f"GOOD {OLD}"
    assert fake.endpoint == NEW  # the body alone does not make HE act
    fake.script(Reply(200, "echo: {authorization}"))
    assert update(fake, myip=NEW).text == "echo: " + requests.auth._basic_auth_str(USER, KEY)
    assert update(fake, myip=NEW).text == f"nochg {NEW}"  # one Reply, one request


def test_a_reply_without_a_body_and_a_redirect(fake: FakeTunnelbroker) -> None:
    """204 goes out without a body; a redirect carries its Location and is not HE's answer."""
    fake.script(Reply(204, ""))
    answer = update(fake, myip=NEW)
    assert (answer.status_code, answer.content) == (204, b"")
    fake.script(Reply(302, "", (("Location", "http://127.0.0.1:9/x"),)))
    answer = requests.get(
        fake.update_url, params={"hostname": TID}, auth=(USER, KEY), timeout=5,
        allow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 302 and answer.headers["Location"] == "http://127.0.0.1:9/x"


def test_a_reply_can_apply_the_update_and_answer_late(fake: FakeTunnelbroker) -> None:
    """`apply` with `delay`: HE has the new endpoint before its answer goes out."""
    fake.script(Reply(200, "{answer}", delay=1.0))
    seen: list[str | None] = []
    worker = threading.Thread(target=lambda: seen.append(update(fake, myip=NEW).text))
    worker.start()
    time.sleep(0.5)
    assert fake.endpoint == NEW and seen == []
    worker.join(10)
    assert seen == [f"good {NEW}"]


@pytest.mark.parametrize("part", ["header_drip", "body_drip"])
def test_a_reply_drips_its_headers_or_body(fake: FakeTunnelbroker, part: str) -> None:
    """A dripped reply arrives whole, one byte every `drip` seconds."""
    body = "good " + NEW
    fake.script(Reply(200, body, **{part: 0.02}))  # type: ignore[arg-type]
    started = time.monotonic()
    answer = update(fake, myip=NEW)
    assert answer.text == body
    least = 0.02 * (len(body) - 1 if part == "body_drip" else 60)
    assert time.monotonic() - started >= least


def test_a_delay_answers_late(fake: FakeTunnelbroker) -> None:
    """With a delay the answer comes no sooner than that."""
    fake.delay = 0.5
    started = time.monotonic()
    assert update(fake, myip=NEW).text == f"good {NEW}"
    assert time.monotonic() - started >= 0.5


def test_a_delayed_update_counts_as_received_before_it_is_answered(
    fake: FakeTunnelbroker,
) -> None:
    """`updates_received` counts an update the moment it arrives, so a test can act while HE
    holds it; info requests do not count."""
    fake.delay = 1.0
    assert fake.stats()["updates_received"] == 0
    worker = threading.Thread(target=update, args=(fake,), kwargs={"myip": NEW})
    worker.start()
    deadline = time.monotonic() + 0.8
    while fake.stats()["updates_received"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.stats()["updates_received"] == 1
    assert fake.requests == []  # not answered yet
    worker.join()
    assert len(fake.requests) == 1


def test_on_update_runs_before_the_answer_with_the_new_address() -> None:
    """on_update(address) is called for a change, before the client hears `good`, not on nochg."""
    seen: list[str] = []
    with FakeTunnelbroker(key=KEY, username=USER, tunnel_id=TID, on_update=seen.append) as f:
        answer = update(f, myip=NEW)
        assert seen == [NEW]
        assert answer.text == f"good {NEW}"
        update(f, myip=NEW)
        assert seen == [NEW]


def test_a_failed_ping_check_answers_good_127_and_keeps_the_endpoint() -> None:
    """When the new address does not answer HE's ping, HE says `good 127.0.0.1` and keeps it."""
    asked: list[str] = []

    def unreachable(address: str) -> bool:
        asked.append(address)
        return False

    with FakeTunnelbroker(key=KEY, username=USER, endpoint=OLD, ping_check=unreachable) as f:
        assert update(f, myip=NEW).text == "good 127.0.0.1"
        assert f.endpoint == OLD
    assert asked == [NEW]


def test_system_ping_reaches_loopback() -> None:
    """The real ping used by --ping-check answers for 127.0.0.1."""
    assert system_ping("127.0.0.1") is True


def test_tunnel_info_serves_the_tunnel_as_xml(fake: FakeTunnelbroker) -> None:
    """tunnelInfo.php?tid= answers XML with clientv4 = the current endpoint; auth is checked."""
    answer = requests.get(fake.info_url, params={"tid": TID}, auth=(USER, KEY), timeout=5)
    assert answer.status_code == 200
    assert f"<clientv4>{OLD}</clientv4>" in answer.text
    assert f'<tunnel id="{TID}">' in answer.text
    denied = requests.get(fake.info_url, params={"tid": TID}, auth=(USER, "x"), timeout=5)
    assert denied.status_code == 401
    other = requests.get(fake.info_url, params={"tid": "7"}, auth=(USER, KEY), timeout=5)
    assert "<tunnel " not in other.text


def test_tls_is_served_with_the_test_ca(tmp_path: Path) -> None:
    """With a test CA the fake serves HTTPS that verifies against that CA only."""
    ca = make_test_ca(tmp_path)
    with FakeTunnelbroker(key=KEY, username=USER, tunnel_id=TID, tls=ca) as f:
        good = requests.get(
            f.update_url, params={"hostname": TID, "myip": NEW}, auth=(USER, KEY),
            verify=str(ca.ca_cert), timeout=5,
        )  # fmt: skip
        assert good.text == f"good {NEW}"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f.update_url, verify=True, timeout=5)


def test_the_fake_never_logs_the_key(
    fake: FakeTunnelbroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Its request log shows the path only, never query credentials."""
    caplog.set_level(logging.DEBUG, logger="reconciler.testing.fake_he")
    update(fake, auth=None, myip=NEW, username=USER, password=KEY)
    update(fake, myip=NEW)
    # Only the fake's own lines: urllib3 on the test's side logs the legacy URL it sent,
    # which is exactly why the real client uses Basic auth.
    ours = [r.getMessage() for r in caplog.records if r.name == "reconciler.testing.fake_he"]
    assert any("/nic/update" in line for line in ours)
    assert not any(KEY in line for line in ours)


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from `stream`, or "" when none comes within `timeout` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def test_the_process_serves_and_is_steered_through_the_control_api(tmp_path: Path) -> None:
    """As a process it prints its address, obeys /_lab/, runs --on-update-exec, exits on TERM."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    moved = tmp_path / "moved"
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.testing.fake_he", "--listen", "127.0.0.1:0",
         "--tunnel-id", TID, "--username", USER, "--key-file", str(key_file),
         "--endpoint", OLD, "--on-update-exec", sys.executable, "-c",
         f"import sys; open({str(moved)!r}, 'w').write(sys.argv[1])", "{address}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = _read_line(process.stdout, 15.0).strip()
        assert line.startswith("listening on 127.0.0.1:")
        base = f"http://{line.removeprefix('listening on ')}"
        url = f"{base}/nic/update"

        def get(**params: str) -> requests.Response:
            return requests.get(
                url, params={"hostname": TID, **params}, auth=(USER, KEY), timeout=5
            )

        assert get(myip=NEW).text == f"good {NEW}"
        assert moved.read_text() == NEW
        requests.post(f"{base}/_lab/script", params={"answers": "abuse,badauth"}, timeout=5)
        assert [get(myip=NEW).text for _ in range(3)] == ["abuse", "badauth", f"nochg {NEW}"]
        requests.post(f"{base}/_lab/delay", params={"seconds": "0.4"}, timeout=5)
        started = time.monotonic()
        get(myip=NEW)
        assert time.monotonic() - started >= 0.4
        requests.post(f"{base}/_lab/delay", params={"seconds": "0"}, timeout=5)
        requests.post(
            f"{base}/_lab/reply",
            params=[("status", "429"), ("body", "slow down"), ("header", "Retry-After: 30")],
            timeout=5,
        )
        late = get(myip=NEW)
        assert (late.status_code, late.text, late.headers["Retry-After"]) == (
            429, "slow down", "30",
        )  # fmt: skip
        new_key = tmp_path / "key2"
        new_key.write_text("another-key")
        requests.post(f"{base}/_lab/credentials", params={"key_file": str(new_key)}, timeout=5)
        assert get(myip=NEW).status_code == 401
        stats = requests.get(f"{base}/_lab/stats", timeout=5).json()
        assert stats["schema"] == "reconciler.fake-he-stats/1"
        assert stats["endpoint"] == NEW
        assert stats["counts"]["update"] == 7
        assert stats["counts"]["update:reply:429"] == 1
        assert stats["counts"]["update:abuse"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    _, err = process.communicate()
    assert KEY not in err and "another-key" not in err


def test_ping_check_in_a_namespace_refuses_an_address_that_does_not_answer(
    lab_available: None, tmp_path: Path
) -> None:
    """With --ping-check a pingable myip is taken; an unreachable one gets `good 127.0.0.1`."""
    ns = f"rcfakehe{os.getpid()}"
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    stack = contextlib.ExitStack()
    try:
        # A non-loopback address, so the fake sees a real source.
        stack.enter_context(namespace(ns, ["addr", "add", "198.51.100.1/32", "dev", "lo"]))
        server = stack.enter_context(
            running_process(
                netns=ns, listen="198.51.100.1:8080", tunnel_id=TID, username=USER,
                key_file=key_file, endpoint=OLD, extra=["--ping-check"],
            )
        )  # fmt: skip
        assert server[1] == "198.51.100.1:8080"
        # The namespace has no route to 203.0.113.77, so the ping fails without leaving it.
        script = (
            "import requests\n"
            "for ip in ('203.0.113.77', '198.51.100.1'):\n"
            "    print(requests.get('http://198.51.100.1:8080/nic/update',\n"
            f"        params={{'hostname': {TID!r}, 'myip': ip}}, auth=({USER!r}, {KEY!r}),\n"
            "        timeout=10).text)\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.stdout.splitlines() == ["good 127.0.0.1", "good 198.51.100.1"], done.stderr
    finally:
        stack.close()
