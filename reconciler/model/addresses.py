"""Which IPv4 addresses Hurricane Electric may be told about (`myip`).

Python's `ipaddress.is_private` is also true for the documentation ranges (203.0.113.0/24
and friends), which the lab uses as "public" addresses, so the private ranges are listed
here explicitly: RFC 1918 and RFC 6598 (carrier-grade NAT), plus addresses no endpoint can
have (loopback, link-local, multicast, unspecified, reserved).
"""

from __future__ import annotations

import ipaddress

__all__ = ["CARRIER_NAT", "NOT_PUBLIC_IPV4", "is_carrier_nat", "is_public_ipv4"]

CARRIER_NAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 shared address space

NOT_PUBLIC_IPV4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598, carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)


def is_public_ipv4(address: str) -> bool:
    """True when `address` is an IPv4 address HE could reach us at (False for garbage)."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not any(parsed in net for net in NOT_PUBLIC_IPV4)


def is_carrier_nat(address: str) -> bool:
    """True for an address of a carrier's NAT (RFC 6598, 100.64/10): 6in4 cannot cross it."""
    try:
        return ipaddress.IPv4Address(address) in CARRIER_NAT
    except ValueError:
        return False
