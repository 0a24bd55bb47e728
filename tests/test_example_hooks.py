"""The example hooks in etc/hooks/, run as reconciler runs them (argv, RECONCILER_* variables):
the webhook against a real HTTP server on loopback, the mail hook with a stand-in mail(1)
that keeps what it was given (no mail transfer agent can deliver anything here)."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HOOKS = Path(__file__).resolve().parents[1] / "etc" / "hooks"
NOTICE = {
    "RECONCILER_EVENT": "needs-attention",
    "RECONCILER_MESSAGE": "update-he-endpoint:203.0.113.11 failed permanently (badauth)",
    "RECONCILER_SEQ": "42",
    "RECONCILER_ACTION": "update-he-endpoint:203.0.113.11",
    "RECONCILER_RESULT": "badauth",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"received": [], "status": 200})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/router", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_hook(argv: list[str], path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={"PATH": path, **NOTICE}, capture_output=True, text=True, timeout=30
    )


def test_webhook_posts_the_message_ntfy_style(
    server: tuple[str, type[_Handler]], tmp_path: Path
) -> None:
    url, handler = server
    done = run_hook([str(HOOKS / "webhook"), url])
    assert done.returncode == 0, done.stderr
    (request,) = handler.received
    assert request["path"] == "/router"
    assert request["body"].decode() == NOTICE["RECONCILER_MESSAGE"]
    assert request["headers"]["Title"] == "reconciler: needs-attention"
    assert request["headers"]["Priority"] == "high"
    assert "Authorization" not in request["headers"]
    token = tmp_path / "token"
    token.write_text("tk_s3cret\n")
    done = run_hook([str(HOOKS / "webhook"), url, str(token)])
    assert done.returncode == 0, done.stderr
    assert handler.received[1]["headers"]["Authorization"] == "Bearer tk_s3cret"


def test_webhook_fails_when_the_server_refuses(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.status = 500
    done = run_hook([str(HOOKS / "webhook"), url])
    assert done.returncode != 0


def test_mail_hook_mails_the_message_and_the_details(tmp_path: Path) -> None:
    kept = tmp_path / "mailed"
    stand_in = tmp_path / "bin" / "mail"
    stand_in.parent.mkdir()
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{kept}"\ncat >> "{kept}"\n')
    stand_in.chmod(0o755)
    done = run_hook(
        [str(HOOKS / "mail"), "ops@example.net"], path=f"{stand_in.parent}:/usr/bin:/bin"
    )
    assert done.returncode == 0, done.stderr
    lines = kept.read_text().splitlines()
    assert lines[0] == "-s" and lines[1].endswith(": needs-attention")
    assert lines[2] == "ops@example.net"
    assert lines[3] == NOTICE["RECONCILER_MESSAGE"]
    assert "RECONCILER_RESULT=badauth" in lines
