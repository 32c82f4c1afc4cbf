"""Junk datagrams for the live-worker flood: mutations of valid RTP, RTCP, STUN and DTLS
records (and some plain noise), deterministic for a seed. Also the kernel's view of a UDP
socket (queued bytes, drops) from /proc/net/udp, so a test can pace a flood and account
for every datagram it sent."""

from __future__ import annotations

import random
import struct

from aioice import stun

from relay.rtp.packet import build_pli, build_rtp
from relay.rtp.rtcp import (
    Bye,
    ExtendedReport,
    Fir,
    Nack,
    ReceiverReport,
    Remb,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_compound,
)

MAX_DATAGRAM = 1500
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xBE, 0xDE, 0xC8, 0xC9, 0xCD, 0xCE, 0xFF)


def _dtls_record(content_type: int, body: bytes, epoch: int = 0, seq: int = 0) -> bytes:
    """A DTLS 1.2 record header (RFC 6347 4.1) around `body`."""
    return struct.pack("!BHH6sH", content_type, 0xFEFD, epoch, seq.to_bytes(6, "big"),
                       len(body)) + body


def valid_datagrams(ssrcs: list[int], mid_ext_id: int = 1, rid_ext_id: int = 2) -> list[bytes]:
    """One of each kind of datagram a relay transport reads, as a real peer sends it."""
    out = []
    for i, ssrc in enumerate(ssrcs):
        out += [
            build_rtp(payload_type=96, sequence_number=i, timestamp=3000 * i, ssrc=ssrc,
                      payload=b"\x10\x00\x9d\x01\x2a" + bytes(60)),
            build_rtp(payload_type=96, sequence_number=i + 1, timestamp=3000 * i, ssrc=ssrc,
                      marker=True, payload=b"\x90\xe0\x81\x23\x05\x40\x00" + bytes(30),
                      extensions={mid_ext_id: b"0", rid_ext_id: b"r0"}),
            build_rtp(payload_type=97, sequence_number=i, timestamp=3000 * i, ssrc=ssrc + 1,
                      payload=b"\x00\x05" + b"\x10\x01" + bytes(20),
                      extensions={mid_ext_id: b"0", 3: b"r1"}),
            build_rtp(payload_type=111, sequence_number=i, timestamp=960 * i, ssrc=ssrc,
                      csrcs=(1, 2), padding=4, payload=bytes(40),
                      extensions={1: b"\x90", 10: b"x" * 20}, two_byte_extensions=True),
        ]
    block = ReportBlock(ssrcs[0], 10, 2, 1000, 20, 0x12345678, 100)
    out += [
        build_compound([SenderReport(ssrcs[0], 0xE0000000_00000000, 9000, 10, 1000, [block]),
                        SourceDescription.with_cname(ssrcs[0], "junk")]),
        build_compound([ReceiverReport(1, [block]), Nack(1, ssrcs[0], [1, 2, 3, 40])]),
        build_pli(1, ssrcs[0]),
        build_compound([Fir(1, [(ssrcs[0], 1)]), Remb(1, 300_000, ssrcs[:2])]),
        build_compound([ExtendedReport(1, rrtr=5), Bye([ssrcs[0]], "bye")]),
    ]
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, b"junk-txn-001",
                           {"USERNAME": "someufrag:other", "PRIORITY": 1, "ICE-CONTROLLING": 2,
                            "USE-CANDIDATE": None})
    request.add_message_integrity(b"a password nobody told the peer")
    out.append(bytes(request))
    indication = stun.Message(stun.Method.BINDING, stun.Class.INDICATION, b"junk-txn-002")
    indication.add_fingerprint()
    out.append(bytes(indication))
    client_hello = b"\x01" + (40).to_bytes(3, "big") + b"\x00\x00" + bytes(6) + \
        (40).to_bytes(3, "big") + b"\xfe\xfd" + bytes(38)
    out += [_dtls_record(22, client_hello), _dtls_record(23, bytes(48), epoch=1, seq=9),
            _dtls_record(21, b"\x02\x28")]
    return out


class JunkMaker:
    """Mutations of `corpus`, as a dumb fuzzer would send them: bit flips, interesting
    bytes, truncations, extensions, splices, and now and then pure noise or nothing."""

    def __init__(self, corpus: list[bytes], seed: int) -> None:
        self.corpus = corpus
        self.rng = random.Random(seed)

    def make(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            return b""
        if roll < 0.08:
            return rng.randbytes(rng.randint(1, 300))
        data = bytearray(rng.choice(self.corpus))
        for _ in range(rng.randint(1, 4)):
            self._mutate(data)
        return bytes(data[:MAX_DATAGRAM])

    def _mutate(self, data: bytearray) -> None:
        rng = self.rng
        op = rng.randrange(7)
        if not data:
            data += rng.randbytes(rng.randint(1, 20))
            return
        at = rng.randrange(len(data))
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at] = rng.choice(INTERESTING_BYTES)
        elif op == 2:
            del data[at:]
        elif op == 3:
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 4:
            data[at:] = rng.choice(self.corpus)[rng.randrange(8):]
        elif op == 5 and len(data) >= at + 2:  # a length or sequence field
            struct.pack_into("!H", data, at, rng.choice((0, 1, 0x7FFF, 0xFFFF,
                                                        rng.randrange(65536))))
        else:
            data[at] = rng.randrange(256)


def udp_socket_state(port: int, ip: str = "127.0.0.1") -> tuple[int, int]:
    """(bytes queued for reading, datagrams dropped) of the IPv4 UDP socket bound to
    ip:port, from /proc/net/udp. (0, 0) when there is no such socket."""
    a, b, c, d = (int(x) for x in ip.split("."))
    local = f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local:
                rx_queue = int(fields[4].split(":")[1], 16)
                return rx_queue, int(fields[-1])
    return 0, 0
