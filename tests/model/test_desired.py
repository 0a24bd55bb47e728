"""The desired state derived from the config and the observed WAN address."""

from __future__ import annotations

from reconciler.model.facts import WanAddressObserved
from reconciler.model.hostname import digest_of, render_hostname_file

from .world import History, make_config


def test_desired_follows_wan_address() -> None:
    """The tunnel's local end, myip and the hostname render follow the WAN address."""
    history = History()
    history.record(WanAddressObserved("em0", "203.0.113.7", True))
    wanted = history.desired()
    assert (wanted.local, wanted.myip) == ("203.0.113.7", "203.0.113.7")
    content = render_hostname_file(history.config.tunnel, "203.0.113.7")
    assert wanted.hostname_file is not None
    assert wanted.hostname_file.digest == digest_of(content.encode())


def test_nat_mode_sends_no_myip() -> None:
    """With public_address = "tunnelbroker" myip is None even for a public address."""
    history = History(make_config(public_address="tunnelbroker"))
    history.record(WanAddressObserved("em0", "203.0.113.7", True))
    assert history.desired().myip is None


def test_no_address_no_local() -> None:
    """Without a WAN address there is no local end and no hostname render."""
    history = History()
    history.record(WanAddressObserved("em0", None, True))
    wanted = history.desired()
    assert wanted.local is None and wanted.hostname_file is None
