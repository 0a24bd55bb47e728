"""Test doubles reconciler ships for its own tests and for anyone embedding it.

- `RecordingRunner`: a CommandRunner that records every argv and answers from a script;
- `OpenBSDHost`: a scripted OpenBSD host (ifconfig, netstart, pfctl, route monitor) over a
  temporary root, for running the real OpenBSD platform code anywhere;
- `reconciler.testing.networkd`: systemd-networkd run in a test's network namespace with its
  own /run, config dir and D-Bus (import it directly);
- `reconciler.testing.fake_he`: a fake Hurricane Electric update server (import it directly).
"""

from __future__ import annotations

from reconciler.testing.openbsd_host import OpenBSDHost
from reconciler.testing.runner import RecordingRunner, ScriptedStream

__all__ = ["OpenBSDHost", "RecordingRunner", "ScriptedStream"]
