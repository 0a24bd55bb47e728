"""Which addresses may be sent to HE as myip."""

from __future__ import annotations

import pytest

from reconciler.model.addresses import is_public_ipv4


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("203.0.113.7", True),  # documentation range: "public" in the lab
        ("198.51.100.4", True),
        ("95.163.182.60", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("172.32.0.1", True),
        ("192.168.1.20", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("100.128.0.1", True),
        ("127.0.0.1", False),
        ("169.254.1.1", False),
        ("not-an-address", False),
        ("2001:db8::1", False),
    ],
)
def test_is_public_ipv4(address: str, public: bool) -> None:
    """RFC 1918, RFC 6598 and unroutable addresses are not public; documentation ranges are."""
    assert is_public_ipv4(address) is public
