"""Classify a datagram received on a WebRTC transport by its first byte (RFC 7983).

    first byte   protocol
    0 – 3        STUN
    20 – 63      DTLS
    128 – 191    RTP / RTCP (told apart by `is_rtcp`, RFC 5761)
    anything     unknown (ZRTP 16–19 and TURN channels 64–79 are not used by relay)
"""

from __future__ import annotations

import enum


class PacketKind(enum.IntEnum):
    UNKNOWN = 0
    STUN = 1
    DTLS = 2
    RTP = 3  # RTP or RTCP; `is_rtcp` tells them apart


def _build_table() -> tuple[PacketKind, ...]:
    table = [PacketKind.UNKNOWN] * 256
    for first in range(0, 4):
        table[first] = PacketKind.STUN
    for first in range(20, 64):
        table[first] = PacketKind.DTLS
    for first in range(128, 192):
        table[first] = PacketKind.RTP
    return tuple(table)


# One tuple lookup per packet: this runs on the hot path.
_KIND_BY_FIRST_BYTE = _build_table()


def classify(datagram: bytes | bytearray | memoryview) -> PacketKind:
    """Return the kind of `datagram`; an empty datagram is UNKNOWN."""
    if not datagram:
        return PacketKind.UNKNOWN
    return _KIND_BY_FIRST_BYTE[datagram[0]]


def is_rtcp(packet: bytes | bytearray | memoryview) -> bool:
    """True if an RTP-range packet is RTCP: its second byte (the RTCP packet type) is in
    192–223 (RFC 5761 §4: RTP payload types 64–95 are not used so this is unambiguous)."""
    return len(packet) >= 2 and 192 <= packet[1] <= 223
