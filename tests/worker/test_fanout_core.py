"""The C fan-out core (relay/uring/fanout_core.c) against the Python fan-out loop, packet by
packet: two identical worlds of consumers get the same inbound packets and control actions,
one through `fan_out` (Python), one through `CoreFanout` (C, real SendRing, real sockets);
every datagram must be byte-identical, SRTP included (same keys, so the same ciphertext),
and an independent libsrtp session must unprotect what the core sent. An ICE-TCP consumer's
packets come out of its connection's buffer, RFC 4571 framed by the core, and are read back
with the transport's own FrameDecoder."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections import Counter

import pytest
from pylibsrtp import Policy, Session

from relay.rtp.packet import build_rtp
from relay.rtp.rewriter import NO_PAYLOAD_TYPE, InputStream
from relay.transport.core_send_history import CoreSendHistory
from relay.transport.srtp_session import SrtpSession
from relay.transport.tcp_framing import FrameDecoder
from relay.uring import SendRing, fanout_core
from relay.uring.rewriter import RtpRewriter
from relay.uring.vp8_rewriter import Vp8PictureRewriter
from relay.worker.fanout import CoreFanout, fan_out

pytestmark = pytest.mark.skipif(not fanout_core.ENABLED, reason=fanout_core.REASON)

PT_TABLE = bytes(100 if pt == 111 else NO_PAYLOAD_TYPE for pt in range(128))
TCC_ID = 5
# group A: producer ids 1, 3 -> 10, 2; 4 (mid) neutralised; transport-cc 5 kept
TABLE_A = bytes({1: 10, 3: 2, 5: 5}.get(i, 0) for i in range(256))
# group B: only audio level, as 7; no transport-cc
TABLE_B = bytes({1: 7}.get(i, 0) for i in range(256))
KEYS = {"AES_CM_128_HMAC_SHA1_80": bytes(range(30)), "AEAD_AES_128_GCM": bytes(range(28))}


class FakeConnection:
    """An ICE-TCP connection as the core fan-out sees it: the media buffer and its flush."""

    def __init__(self) -> None:
        self.media_buffer = fanout_core.StreamBuffer(64 * 1024)
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []
        self.flushes = 0

    def media_queued(self) -> None:
        self.flushes += 1
        self.frames += self.decoder.feed(self.media_buffer.view())
        self.media_buffer.clear()

    def take(self) -> list[bytes]:
        frames, self.frames = self.frames, []
        return frames


class FakeConsumer:
    """What both fan-outs read of a consumer (the Python one through attributes, the core
    through `core`, which points at the rewriter's C struct as the worker's Consumer does)."""

    def __init__(self, ssrc: int, suite: str | None, tcc: bool, sink: socket.socket,
                 ring: SendRing, tcp: bool = False) -> None:
        self.rewriter = RtpRewriter(ssrc, PT_TABLE, 48000)
        self.core = fanout_core.new_consumer()
        self.core.rw = self.rewriter.c
        self.srtp = SrtpSession(suite, KEYS[suite], outbound=True) if suite else None
        self.suite = suite
        self.core.srtp = self.srtp.core if self.srtp else fanout_core.ffi.NULL
        self.tcc_history = CoreSendHistory(1024) if tcc else None
        self.vp8 = None
        self.in_core = True
        self.media_stream = None
        self.is_tcp = tcp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = sink
        self.fd, self.addr = self.sock.fileno(), sink.getsockname()
        self.core.fd = self.fd
        fanout_core.set_address(self.core, ring.address(self.addr))
        self.py_temporal_drops = 0
        self.py_dropped = self.py_ring_drops = self.py_packets_sent = self.py_bytes_sent = 0
        self.py_payload_bytes = 0
        self.sent: list[bytes] = []

    def link_tcc(self) -> None:  # the core world numbers through the C arrays
        if self.tcc_history is not None:
            self.core.tcc = self.tcc_history.core_ring().c
        if self.is_tcp:  # ... and frames an ICE-TCP consumer's packets into its connection
            self.media_stream = FakeConnection()
            self.core.stream = self.media_stream.media_buffer.c

    def send(self, fd, data, addr) -> bool:  # the Python world records instead of sending
        self.sent.append(bytes(data))
        return True

    def on_temporal_drop(self, seq: int) -> None:  # the Python loop's (the core counts its own)
        self.py_temporal_drops += 1
        self.rewriter.skip(seq)

    @property
    def temporal_drops(self) -> int:
        return self.py_temporal_drops + self.core.temporal_drops


class World:
    """Consumers in two groups (A: three, plain / SRTP AES-CM / SRTP GCM with transport-cc;
    B: one, plain, taking only VP8 TID 0; then in A an ICE-TCP one, SRTP AES-CM with
    transport-cc), fed through one of the two fan-outs."""

    SPECS = [("A", None, False, False), ("A", "AES_CM_128_HMAC_SHA1_80", False, False),
             ("A", "AEAD_AES_128_GCM", True, False), ("B", None, False, False),
             ("A", "AES_CM_128_HMAC_SHA1_80", True, True)]

    def __init__(self, core: bool, ring: SendRing) -> None:
        self.core = core
        self.ring = ring
        self.stream = InputStream(0xAAAA)
        self.sinks = []
        self.consumers = []
        for i, (_, suite, tcc, tcp) in enumerate(self.SPECS):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            sink.setblocking(False)
            self.sinks.append(sink)
            consumer = FakeConsumer(0x7000 + i, suite, tcc, sink, ring, tcp)
            if core:
                consumer.link_tcc()
            self.consumers.append(consumer)
        self.paused: set[int] = set()
        self.dropped: Counter[str] = Counter()
        self.scratch = bytearray(2048)
        self.regroup()

    def regroup(self) -> None:
        """As build_groups after a control action: the active consumers only."""
        a = tuple(c for i, c in enumerate(self.consumers)
                  if i not in self.paused and self.SPECS[i][0] == "A")
        b = tuple(c for i, c in enumerate(self.consumers)
                  if i not in self.paused and self.SPECS[i][0] == "B")
        groups = []
        if a:
            groups.append((TABLE_A, a, 255, TCC_ID))
        if b:
            groups.append((TABLE_B, b, 0, 0))
        self.groups = tuple(groups)
        self.fanout = CoreFanout(self.groups) if self.core and groups else None

    def pause(self, i: int) -> None:
        self.consumers[i].rewriter.stop(self.stream)
        self.paused.add(i)
        self.regroup()

    def resume(self, i: int) -> None:
        self.paused.discard(i)
        self.regroup()

    def ssrc_change(self, ssrc: int) -> None:
        for consumer in self.consumers:
            consumer.rewriter.stop(self.stream)
        self.stream.reset(ssrc)

    def packet(self, packet: bytes, now: float, tid: int = 0) -> list[list[bytes]]:
        """Feed one packet; what each consumer got from it."""
        b0 = packet[0]
        seq, ts, ssrc = struct.unpack_from("!HII", packet, 2)
        older = self.stream.update(seq, ts, now)
        n = len(packet)
        offset = 12 + ((b0 & 0x0F) << 2)
        if b0 & 0x10:
            offset += 4 + 4 * struct.unpack_from("!H", packet, offset + 2)[0]
        payload = n - offset
        if not self.groups:
            return [[] for _ in self.consumers]
        if self.core:
            buf = bytearray(2048)
            buf[:n] = packet
            ptr = fanout_core.ffi.from_buffer("unsigned char[]", buf)
            sends = self.fanout.fan_out(self.ring.core, ptr, n, ssrc, seq, ts, older, tid,
                                        payload, now, self.dropped)
            self.ring.flush()
            got = []
            for sink, consumer in zip(self.sinks, self.consumers, strict=True):
                if consumer.media_stream is not None:
                    got.append(consumer.media_stream.take())
                    continue
                out = []
                while True:
                    try:
                        out.append(sink.recv(4096))
                    except BlockingIOError:
                        break
                got.append(out)
            assert sends == sum(len(g) for g in got)
            return got
        before = [len(c.sent) for c in self.consumers]
        fan_out(self.groups, memoryview(packet), n, ssrc, seq, ts, older, tid, payload, now,
                self.scratch, memoryview(self.scratch), self.dropped)
        return [c.sent[k:] for c, k in zip(self.consumers, before, strict=True)]

    def close(self) -> None:
        for c in self.consumers:
            c.sock.close()
        for s in self.sinks:
            s.close()


def rtp(seq: int, ts: int, ssrc: int = 0xAAAA, pt: int = 111, marker: bool = False,
        tcc: bool = True) -> bytes:
    ext = {1: b"\x90", 3: b"\x01\x02\x03", 4: b"a"}
    if tcc:
        ext[TCC_ID] = b"\x00\x00"
    return build_rtp(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=ts & 0xFFFFFFFF,
                     ssrc=ssrc, marker=marker, payload=bytes([seq & 0xFF]) * 60, extensions=ext)


def script():
    """(action, arguments) steps: running, wraps, reordering, unknown PT, temporal layers,
    pause/resume, an SSRC change, a packet recovered late (RTX), malformed extensions."""
    now = 0.0
    seq, ts = 65500, 0xFFFFF000
    for k in range(60):
        now += 0.02
        if k == 10:
            yield "pause", 1
        if k == 20:
            yield "resume", 1
        if k == 25:
            yield "pause", 3
        if k == 32:
            yield "resume", 3
        if k == 40:
            yield "ssrc", 0xBBBB
            seq, ts = 1000, 5000
        if k == 15:  # a gap: seq+1 is lost now and recovered (RTX) 3 packets later
            seq += 1
            ts += 960
            lost = (seq, ts)
        tid = k % 3
        ssrc = 0xBBBB if k >= 40 else 0xAAAA
        yield "packet", (rtp(seq, ts, ssrc=ssrc, marker=k % 7 == 0), now, tid)
        if k == 18:
            yield "packet", (rtp(*lost, ssrc=ssrc), now, 0)  # recovered: older
        if k == 22:
            # reordered: older than consumer 1's resume (k == 20), so not sent to it
            yield "packet", (rtp(seq - 3, ts - 2880, ssrc=ssrc), now, 0)
        if k == 27:
            yield "packet", (rtp(seq + 1, ts + 960, ssrc=ssrc, pt=120), now, 0)  # PT not taken
            seq += 1
            ts += 960
        if k == 30:
            yield "packet", (rtp(seq + 1, ts + 960, ssrc=ssrc, tcc=False), now, 0)
            seq += 1
            ts += 960
        if k == 35:  # an element that overruns the extension block
            bad = bytearray(rtp(seq + 1, ts + 960, ssrc=ssrc))
            bad[16] = 0x1F
            yield "packet", (bytes(bad), now, 0)
            seq += 1
            ts += 960
        seq += 1
        ts += 960


def test_core_matches_python_packet_by_packet():
    ring = SendRing(mode="socket")
    python, core = World(False, ring), World(True, ring)
    compared = 0
    # Both worlds run the same C rewrite, so consumer 0's numbers (never paused, every TID)
    # are also checked against the rule itself: the sender's numbers until the SSRC change,
    # then the stream's last output + 1 onwards, constant offset (rewriter.py's doc).
    offset, last_out, numbers = 0, None, []
    try:
        for action, arg in script():
            if action == "ssrc":
                last_out = python.stream.max_seq  # offset 0 until now
            for world in (python, core):
                if action == "pause":
                    world.pause(arg)
                elif action == "resume":
                    world.resume(arg)
                elif action == "ssrc":
                    world.ssrc_change(arg)
            if action != "packet":
                continue
            packet, now, tid = arg
            want = python.packet(packet, now, tid)
            got = core.packet(packet, now, tid)
            assert got == want, (packet[2:4].hex(), tid)
            compared += sum(len(w) for w in want)
            in_seq = struct.unpack_from("!H", packet, 2)[0]
            if last_out is not None and not numbers[-1][2]:  # the first after the change
                offset = (last_out + 1 - in_seq) & 0xFFFF
            for sent in want[0]:
                out_seq = struct.unpack_from("!H", sent, 2)[0]
                numbers.append((in_seq, out_seq, last_out is not None))
                assert out_seq == (in_seq + offset) & 0xFFFF, (in_seq, out_seq, offset)
        assert compared > 150
        assert sum(after for _, _, after in numbers) > 15 and offset != 0
        for p, c in zip(python.consumers, core.consumers, strict=True):
            assert (c.core.packets_sent, c.core.bytes_sent, c.core.payload_bytes,
                    c.core.dropped, c.core.ring_drops) == (
                p.py_packets_sent, p.py_bytes_sent, p.py_payload_bytes, p.py_dropped,
                p.py_ring_drops)
            assert c.temporal_drops == p.temporal_drops
            if p.tcc_history is not None:
                p.tcc_history.collect()
                c.tcc_history.collect()
                assert c.tcc_history.last == p.tcc_history.last > 40
                assert c.tcc_history.entries == p.tcc_history.entries
        assert core.dropped == python.dropped == Counter({"malformedExtensions": 1})
        # every group saw drops of its own kind
        assert python.consumers[3].temporal_drops > 10
        # the ICE-TCP consumer's packets all came framed out of its connection's buffer
        tcp = core.consumers[4]
        assert tcp.media_stream.flushes == tcp.core.packets_sent > 50 and not len(tcp.media_stream.media_buffer)
        assert python.consumers[0].py_dropped == 1  # the PT not taken
        assert python.consumers[1].py_dropped == 2  # ... and the packet older than its resume
    finally:
        python.close()
        core.close()
        ring.close()


@pytest.mark.parametrize("suite", sorted(KEYS))
def test_core_srtp_round_trip_through_an_independent_session(suite):
    ring = SendRing(mode="socket")
    world = World(True, ring)
    consumer_index = 1 if suite.startswith("AES_CM") else 2
    policy = Policy(key=KEYS[suite], ssrc_type=Policy.SSRC_ANY_INBOUND,
                    srtp_profile={"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                                  "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM}[suite])
    receiver = Session(policy=policy)
    try:
        for k in range(50):
            packet = rtp(100 + k, 960 * k)
            got = world.packet(packet, 0.02 * k)[consumer_index]
            assert len(got) == 1
            clear = receiver.unprotect(got[0])
            assert len(got[0]) > len(clear) == len(packet)
            assert clear[12:] != packet[12:] or True  # ids rewritten; compare the payload:
            assert clear[-60:] == packet[-60:]
            assert struct.unpack_from("!HI", clear, 2) == (100 + k, 960 * k)
            assert struct.unpack_from("!I", clear, 8)[0] == 0x7000 + consumer_index
        session = world.consumers[consumer_index].srtp
        assert session.stats()["packets"] == 50
    finally:
        world.close()
        ring.close()


def test_core_tells_when_a_stream_buffer_needs_writing():
    """FC_STREAM_QUEUED comes back when an ICE-TCP buffer stops being empty or fills past
    half, not for every packet; a full buffer drops (counted), never overruns."""
    ring = SendRing(mode="socket")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    consumer = FakeConsumer(0x7100, None, False, sink, ring)
    buffer = fanout_core.StreamBuffer(1200)
    consumer.core.stream = buffer.c
    table = fanout_core.GroupTable([(TABLE_B, 255, 0, [consumer.core])], keep=[consumer])
    try:
        size = len(rtp(0, 0, tcc=False)) + 2  # framed: 86 bytes

        def send(k: int) -> int:
            packet = rtp(k, 960 * k, tcc=False)
            buf = fanout_core.ffi.from_buffer("unsigned char[]", bytearray(packet))
            return fanout_core.fan_out(ring.core, table.groups, 1, buf, len(packet), k,
                                       960 * k, False, 0, 60, 0.0)

        results = [send(k) for k in range(8)]
        queued = fanout_core.STREAM_QUEUED
        # empty -> one packet: due; then nothing until 7 * 86 = 602 >= 600: half full
        assert size == 86 and results == [queued | 1, 1, 1, 1, 1, 1, queued | 1, 1]
        frames = FrameDecoder().feed(buffer.view())
        assert len(frames) == 8 and len(buffer) == 8 * size
        # a packet needs its frame plus the SRTP margin (20) free: 13 fit in 1200, then drops
        assert [send(k) for k in range(8, 16)] == [1, 1, 1, 1, 1, 0, 0, 0]
        assert len(buffer) == 13 * size and consumer.core.ring_drops == 3
        buffer.clear()
        assert send(16) == queued | 1
    finally:
        consumer.sock.close()
        sink.close()
        ring.close()


def vp8_packet(seq: int, pid: int, tl0: int, ssrc: int = 0xAAAA) -> bytes:
    """A VP8 packet with a 15-bit PictureID and a TL0PICIDX (RFC 7741)."""
    descriptor = bytes([0x90, 0xC0, 0x80 | (pid >> 8), pid & 0xFF, tl0]) + b"\x9d\x01\x2a"
    return build_rtp(payload_type=111, sequence_number=seq, timestamp=seq * 3000, ssrc=ssrc,
                     payload=descriptor + b"\x00" * 20)


def read_pid(packet: bytes) -> tuple[int, int]:
    return ((packet[14] & 0x7F) << 8) | packet[15], packet[16]


@pytest.mark.parametrize("core", [True, False], ids=["core", "python-loop"])
def test_vp8_picture_ids_continue_per_consumer_in_one_group(core):
    """Two simulcast-style consumers in one group, with different PictureID offsets: each
    gets its own continuation, read from the input packet (not the copy the other rewrote).
    Expected values worked out from RFC 7741 continuity, not from the code."""
    ring = SendRing(mode="socket")
    sinks, consumers = [], []
    for i in range(2):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sinks.append(sink)
        consumer = FakeConsumer(0x7200 + i, None, False, sink, ring)
        consumer.vp8 = Vp8PictureRewriter(consumer.rewriter)
        consumers.append(consumer)
    late, early = consumers  # `late` misses pictures 100..104, so its offset differs
    stream = InputStream(0xAAAA)
    got: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    scratch = bytearray(2048)

    def feed(seq: int, pid: int, tl0: int, members: tuple) -> None:
        packet = vp8_packet(seq, pid, tl0)
        older = stream.update(seq, seq * 3000, 0.0)
        groups = ((bytes(256), members, 255, 0),)
        if core:
            buf = fanout_core.ffi.from_buffer("unsigned char[]", bytearray(packet))
            CoreFanout(groups).fan_out(ring.core, buf, len(packet), 0xAAAA, seq, seq * 3000,
                                       older, 0, len(packet) - 12, 0.0, Counter())
            ring.flush()
            for i, sink in enumerate(sinks):
                with contextlib.suppress(BlockingIOError):
                    got[i].append(read_pid(sink.recv(4096)))
        else:
            for c in consumers:
                c.sent.clear()
            fan_out(groups, memoryview(packet), len(packet), 0xAAAA, seq, seq * 3000, older, 0,
                    len(packet) - 12, 0.0, scratch, memoryview(scratch), Counter())
            for i, c in enumerate(consumers):
                if c.sent:
                    got[i].append(read_pid(c.sent[-1]))

    try:
        late.rewriter.sync(0xAAAA, 1, 3000, 0.0)  # it ran before: pictures 50, 51 (tl0 5)
        for seq, pid in ((1, 50), (2, 51)):
            feed(seq, pid, 5, (late,))
        late.rewriter.stop(stream)  # paused while `early` starts at picture 100
        for k in range(5):
            feed(10 + k, 100 + k, 20 + k, (early,))
        for k in range(5, 8):  # resumed: `late` first in the group
            feed(10 + k, 100 + k, 20 + k, (late, early))
        assert got[1] == [(100 + k, 20 + k) for k in range(8)]  # its numbering as sent
        # `late` continues after 51 / 5: 52, 53, 54 and tl0 6, 7, 8
        assert got[0] == [(50, 5), (51, 5), (52, 6), (53, 7), (54, 8)]
    finally:
        for c in consumers:
            c.sock.close()
        for s in sinks:
            s.close()
        ring.close()
