"""What crosses an interface, read with a packet socket (no tcpdump): the lab's wire view.

    ip netns exec NS python -m reconciler.testing.packets IFACE

prints `listening on IFACE` once the socket is bound, then records every IPv4 frame seen
on IFACE, in and out, until its stdin closes; then prints one JSON line per packet (at most
`--limit`) and exits. Each packet: direction, IPv4 source, destination, protocol, total
length, TTL, the DF and MF flags and the fragment offset, and, for protocol 41 (IPv6 in
IPv4, what a 6in4 tunnel sends), the inner IPv6 source, destination and next header.
Linux only (AF_PACKET); needs root.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["decode_frame", "main"]

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
IPPROTO_IPV6 = 41
_ETHERNET_HEADER = 14


def decode_frame(frame: bytes, outgoing: bool) -> dict[str, Any] | None:
    """One Ethernet frame as a dict of its IPv4 header (and inner IPv6 for protocol 41);
    None for anything that is not IPv4."""
    if len(frame) < _ETHERNET_HEADER + 20:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IP:
        return None
    ip = frame[_ETHERNET_HEADER:]
    header_length = (ip[0] & 0x0F) * 4
    total_length, flags_offset = struct.unpack_from("!H2xH", ip, 2)
    packet: dict[str, Any] = {
        "direction": "out" if outgoing else "in",
        "src": str(ipaddress.IPv4Address(ip[12:16])),
        "dst": str(ipaddress.IPv4Address(ip[16:20])),
        "proto": ip[9],
        "ttl": ip[8],
        "length": total_length,
        "df": bool(flags_offset & 0x4000),
        "mf": bool(flags_offset & 0x2000),
        "offset": (flags_offset & 0x1FFF) * 8,
    }
    inner = ip[header_length:]
    if packet["proto"] == IPPROTO_IPV6 and packet["offset"] == 0 and len(inner) >= 40:
        packet["inner"] = {
            "src": str(ipaddress.IPv6Address(inner[8:24])),
            "dst": str(ipaddress.IPv6Address(inner[24:40])),
            "next_header": inner[6],
            "payload_length": struct.unpack_from("!H", inner, 4)[0],
        }
    return packet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.testing.packets")
    parser.add_argument("interface")
    parser.add_argument("--limit", type=int, default=2000, help="packets kept at most")
    args = parser.parse_args(argv)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((args.interface, 0))
    except OSError as exc:
        print(f"packets: cannot listen on {args.interface}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"listening on {args.interface}", flush=True)
    packets: list[dict[str, Any]] = []
    stdin = sys.stdin.fileno()
    done = False
    while not done:
        ready, _, _ = select.select([sock, stdin], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            done = True
            sock.setblocking(False)  # take what is queued already, then stop
        while sock in ready:
            try:
                frame, address = sock.recvfrom(65535)
            except BlockingIOError:
                break
            packet = decode_frame(frame, outgoing=address[2] == PACKET_OUTGOING)
            if packet is not None and len(packets) < args.limit:
                packets.append(packet)
            if not done:
                break
    for packet in packets:
        print(json.dumps(packet, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
