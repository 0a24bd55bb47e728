"""`python -m bench he [--drip S]`: how long one HE update lasts against slow answers.

The real client against the fake HE over loopback, with connect_timeout = read_timeout = 1
(a deadline of 2 s): an answer whose body, or whose headers, arrive one byte every S
seconds (0.5 by default), one that never comes, and a prompt one for reference. requests'
read timeout restarts with every byte, so without the call's deadline a dripped answer
holds the call (and a reload behind it) for as long as the drip lasts.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from reconciler.model.config import TunnelbrokerConfig
from reconciler.testing.fake_he import FakeTunnelbroker, Reply
from reconciler.world.tunnelbroker import TunnelbrokerClient

__all__ = ["main"]

KEY = "bench-update-key-1f2e"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench he")
    parser.add_argument("--drip", type=float, default=0.5, help="seconds between bytes")
    args = parser.parse_args(argv or [])
    logging.disable(logging.WARNING)  # the client's warnings about each slow answer
    body = "good {address}" + " " * 100  # about 120 bytes: a minute at 0.5 s a byte
    cases = {
        "prompt answer": Reply(200, "{answer}"),
        "body dripped": Reply(200, body, body_drip=args.drip),
        "headers dripped": Reply(200, "good {address}", header_drip=args.drip),
        "no answer at all": Reply(200, "{answer}", delay=60.0),
    }
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "key"
        key_file.write_text(KEY)
        key_file.chmod(0o600)
        print(f"one update, connect_timeout = read_timeout = 1 s, drip {args.drip:g} s/byte")
        for name, reply in cases.items():
            with FakeTunnelbroker(key=KEY, endpoint="198.51.100.2") as fake:
                config = TunnelbrokerConfig(
                    tunnel_id="123456", username="rcuser", update_key_file=key_file,
                    update_url=fake.update_url, connect_timeout=1.0, read_timeout=1.0,
                )  # fmt: skip
                client = TunnelbrokerClient(config)
                fake.script(reply)
                started = time.monotonic()
                result = client.update("198.51.100.7", "198.51.100.7")
                took = time.monotonic() - started
                client.close()
            print(f"  {name:<17} {took:6.2f} s  {result.outcome.status}")
    return 0
