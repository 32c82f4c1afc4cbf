"""Fuzz targets for the RTP packet logic: header validation and extension rewriting
(relay/rtp/packet.py), sequence/timestamp rewriting (rewriter.py), RTX unwrapping
(nack_buffer.py), key-frame and VP8 descriptor parsing (keyframe.py) and audio levels
(audio_level.py).

Each target takes fuzzer bytes and raises ContractError (or lets an undocumented exception
escape) when a function breaks its documented contract. Where two functions answer the same
question (two RTP validators, two extension walkers, two VP8 descriptor walkers) they are
checked against each other; where a builder exists, build → parse must round-trip.
"""

from __future__ import annotations

import random
from collections import Counter

from relay.rtp.audio_level import audio_level_from_packet, find_header_extension
from relay.rtp.keyframe import (
    is_h264_keyframe,
    is_keyframe,
    is_vp8_keyframe,
    is_vp9_keyframe,
    parse_vp8_descriptor,
)
from relay.rtp.nack_buffer import (
    RtpHeaderError,
    make_rtx_packet,
    parse_rtx_packet,
    rtp_payload_bounds,
)
from relay.rtp.packet import (
    ONE_BYTE_MAX_ID,
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    TWO_BYTE_PROFILE_MASK,
    build_rtp,
    extension_bounds,
    is_rtcp,
    parse_extensions,
    rewrite_extension_ids,
    rtp_payload_offset,
)
from relay.rtp.rewriter import NO_PAYLOAD_TYPE, InputStream
from relay.uring.rewriter import RtpRewriter
from relay.worker.fanout import fan_out

from .fuzz_support import ByteReader, check, expect, in_receive_buffer

# -- RTP header and extensions (packet.py, with nack_buffer's and audio_level's walkers) ------

_IDENTITY = bytes(range(256))


def _id_table(selector: int) -> bytes:
    """A header-extension id table (old id -> new id, 0 = drop) chosen by one input byte."""
    if selector == 0:
        return bytes(256)  # the receiver negotiated nothing: every element is dropped
    rng = random.Random(selector)
    # Entry 0 stays 0 as in extension_id_table(): 0 is padding, never a negotiated id.
    return bytes([0]) + bytes(0 if rng.random() < 0.3 else rng.randrange(1, 256)
                              for _ in range(255))


def fuzz_rtp_header(data: bytes) -> None:
    """Byte 0 picks an extension-id table, the rest is the datagram."""
    if not data:
        return
    table, packet = _id_table(data[0]), data[1:]
    n = len(packet)
    buf = in_receive_buffer(packet)

    offset = expect(lambda: rtp_payload_offset(packet, n), (), "rtp_payload_offset")
    check(rtp_payload_offset(buf, n) == offset, "rtp_payload_offset read past the length")
    check(offset == -1 or 12 <= offset <= n, f"payload offset {offset} outside 12..{n}")
    if n >= 2:
        is_rtcp(packet[1])
    bounds = expect(lambda: rtp_payload_bounds(packet), (RtpHeaderError,), "rtp_payload_bounds")
    check((offset < 0) == isinstance(bounds, RtpHeaderError),
          f"the two RTP validators disagree: offset {offset}, bounds {bounds!r}")
    exts = expect(lambda: parse_extensions(packet, n), (ValueError,), "parse_extensions")
    if offset < 0:
        check(isinstance(exts, ValueError), "parse_extensions accepted a malformed packet")
        return
    assert isinstance(bounds, tuple)
    check(bounds[0] == offset and offset <= bounds[1] <= n, f"bounds {bounds} vs offset {offset}")

    profile, start, end = extension_bounds(buf, n)
    if packet[0] & 0x10:
        check(12 + 4 * (packet[0] & 0x0F) + 4 == start <= end <= offset,
              f"extension bounds {start}..{end} vs payload offset {offset}")
    else:
        check((profile, start, end) == (0, 0, 0), "extension bounds without the X bit")
    well_formed = not isinstance(exts, ValueError)

    # The identity table changes nothing, and agrees with parse_extensions on malformed lists.
    work = bytearray(buf)
    ok = rewrite_extension_ids(work, start, end, profile, _IDENTITY)
    check(work == buf, "rewriting with the identity table changed the packet")
    check(ok == well_formed, f"rewrite_extension_ids says {ok}, parse_extensions {exts!r}")

    # Any table: only the element ids change; the packet stays valid, with the same length.
    work = bytearray(buf)
    check(rewrite_extension_ids(work, start, end, profile, table) == ok,
          "rewrite verdict depends on the table")
    check(work[:start] == buf[:start] and work[end:] == buf[end:],
          "rewrite_extension_ids wrote outside the extension block")
    check(rtp_payload_offset(work, n) == offset, "rewriting broke the header")
    one_byte = profile == ONE_BYTE_PROFILE
    known = one_byte or profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE
    if well_formed and known:
        assert isinstance(exts, dict)
        after = expect(lambda: parse_extensions(work, n), (), "parse_extensions after rewrite")
        image = {table[i] for i in exts} - {0}
        if one_byte:
            image = {i for i in image if i <= ONE_BYTE_MAX_ID}
        kept_zero = {0} if 0 in exts else set()  # an id-0 element is not an id: left as is
        check(set(after) <= image | kept_zero,
              f"ids after rewrite {sorted(after)} not in the table's image {sorted(image)}")

    # audio_level's walker finds exactly the elements parse_extensions sees.
    if well_formed:
        assert isinstance(exts, dict)
        for ext_id in {0, 1, 2, 14, 15} | set(exts):
            found = expect(lambda i=ext_id: find_header_extension(packet, i), (),
                           "find_header_extension")
            check((found is not None) == (ext_id in exts),
                  f"find_header_extension({ext_id}) = {found!r}, parse_extensions {exts!r}")


def seeds_rtp_header() -> list[bytes]:
    ext = {1: b"\x90", 3: b"\x01\x02\x03", 4: b"a"}
    packets = [
        build_rtp(payload_type=111, sequence_number=1, timestamp=960, ssrc=1111,
                  payload=b"\xab" * 40),
        build_rtp(payload_type=111, sequence_number=2, timestamp=1920, ssrc=1111,
                  payload=b"\xab" * 20, extensions=ext),
        build_rtp(payload_type=96, sequence_number=3, timestamp=3000, ssrc=2222,
                  payload=b"\x10\x00\x9d\x01\x2a", extensions={1: b"", 3: b"\x05" * 20},
                  two_byte_extensions=True),
        build_rtp(payload_type=96, sequence_number=4, timestamp=3000, ssrc=2222, marker=True,
                  csrcs=(5, 6), payload=b"xy", padding=4, extensions={14: b"z" * 16}),
    ]
    return [bytes([sel]) + p for sel in (0, 1, 7) for p in packets]


# -- sequence-number and timestamp rewriting (rewriter.py) ------------------------------------

_REWRITER_SSRC = 0xC0FFEE
_CLOCK_RATE = 90000
_PAYLOAD = b"\x10\x00payload"
# Input PT -> output PT; every 7th payload type is one the consumer doesn't take.
_PT_TABLE = bytes(NO_PAYLOAD_TYPE if pt % 7 == 3 else (pt * 5 + 1) % 128 for pt in range(128))
_SEQ = 0xFFFF
_TS = 0xFFFFFFFF
MAX_REWRITER_OPS = 300  # x at most 40 per step: the output stays inside one 16-bit cycle


class _Period:
    """What the model knows about one run of the consumer between two (re)starts."""

    def __init__(self) -> None:
        self.sync_u: int | None = None  # unwrapped input seq of the packet it synced on
        self.sync_ts = 0
        self.sync_now = 0.0
        self.ssrc = -1
        self.seq_off: int | None = None  # learned from the first packet sent
        self.ts_off = 0


class _OneConsumer:
    """What the worker's fan-out loop reads of a consumer; records what it would send."""

    def __init__(self, rewriter: RtpRewriter) -> None:
        self.rewriter = rewriter
        self.srtp = None
        self.vp8 = None
        self.fd, self.addr = -1, None
        self.py_dropped = self.py_ring_drops = self.py_packets_sent = self.py_bytes_sent = 0
        self.py_payload_bytes = 0
        self.sent: bytes | None = None

    def send(self, fd: int, data: memoryview, addr: object) -> bool:
        self.sent = bytes(data)
        return True


_SCRATCH = bytearray(2048)


def _rewrite(rw: RtpRewriter, buf: bytearray, in_ssrc: int, seq: int, ts: int, older: bool,
             now: float) -> bool:
    """The rewrite as the worker ships it: the fan-out loop with one consumer; `buf` becomes
    what it sends. False: not sent."""
    consumer = _OneConsumer(rw)
    fan_out(((bytes(256), (consumer,), 255, 0),), memoryview(buf), len(buf), in_ssrc, seq, ts,
            older, 0, 0, now, _SCRATCH, memoryview(_SCRATCH), Counter())
    if consumer.sent is None:
        return False
    buf[:] = consumer.sent
    return True


def fuzz_rewriter(data: bytes) -> None:
    """A program of packets, pauses, resumes and SSRC changes for one consumer's output
    stream; checks the rewritten header of every packet sent and the (re)start rule of
    rewriter.py's docstring: the output continues at the last sequence number + 1, its
    timestamp never goes backwards, and nothing older than the sync point is sent."""
    r = ByteReader(data)
    in_ssrc = r.u32()
    rw = RtpRewriter(_REWRITER_SSRC, _PT_TABLE, _CLOCK_RATE)
    stream = InputStream(in_ssrc)
    u = r.u16()  # the input sequence number, unwrapped
    ts = r.u32()
    now = 100.0
    paused = False
    max_pkt: tuple[int, int, float] | None = None  # (u, ts, now) of the stream's newest packet
    period = _Period()
    previous: _Period | None = None
    last: tuple[int, int, float] | None = None  # (out seq, out ts, time) at the last stop
    last_known = False  # False: the model could not learn the previous period's offsets
    out_owner: dict[int, int] = {}  # output seq -> index of the period that sent it
    periods = 0

    def stop() -> None:
        nonlocal period, previous, last, last_known
        if period.sync_u is None:  # never synced since the last stop: nothing changes
            rw.stop(stream)
            return
        rw.stop(stream)
        assert max_pkt is not None
        if period.seq_off is not None:
            last = ((max_pkt[0] + period.seq_off) & _SEQ, (max_pkt[1] + period.ts_off) & _TS,
                    max_pkt[2])
            last_known = True
        else:
            last_known = False
        previous, period = period, _Period()

    for _ in range(MAX_REWRITER_OPS):
        if r.exhausted:
            break
        op = r.u8() % 10
        if op == 7:
            if not paused:
                stop()
                paused = True
            continue
        if op == 8:
            paused = False
            continue
        if op == 9:  # the sender restarted with another SSRC (Producer.bind_stream)
            stop()
            in_ssrc = r.u32()
            stream.reset(in_ssrc)
            u = r.u16() + 0x10000 * (u // 0x10000 + 1)
            max_pkt = None
            continue
        u += r.signed(-20, 40)
        if max_pkt is not None:
            u = max(u, max_pkt[0] - 500)  # a reorder, not a sender restart (MAX_MISORDER)
        ts = (ts + r.signed(-2000, 6000)) & _TS
        b1 = r.u8()
        now += r.u8() / 1000
        seq = u & _SEQ
        older = stream.update(seq, ts, now)
        check(older == (max_pkt is not None and u <= max_pkt[0]),
              f"InputStream.update({seq}) said older={older}")
        if not older:
            max_pkt = (u, ts, now)
        if paused:
            continue
        if period.sync_u is None:
            period.sync_u, period.sync_ts, period.sync_now, period.ssrc = u, ts, now, in_ssrc
            periods += 1
        buf = bytearray(b"\x80" + bytes([b1]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big")
                        + in_ssrc.to_bytes(4, "big") + _PAYLOAD)
        original = bytes(buf)
        sent = _rewrite(rw, buf, in_ssrc, seq, ts, older, now)
        wanted = _PT_TABLE[b1 & 0x7F] != NO_PAYLOAD_TYPE and u >= period.sync_u
        check(sent == wanted, f"rewrite() returned {sent} for seq {seq} (sync point "
                              f"{period.sync_u & _SEQ}, pt {b1 & 0x7F})")
        if not sent:
            check(buf == original, "a packet that is not sent was modified")
            continue
        check(buf[0] == original[0] and buf[12:] == original[12:],
              "rewrite() touched bytes outside 1..11")
        check(buf[1] == (b1 & 0x80) | _PT_TABLE[b1 & 0x7F], "wrong marker or payload type")
        check(int.from_bytes(buf[8:12], "big") == _REWRITER_SSRC, "wrong output SSRC")
        out_seq = int.from_bytes(buf[2:4], "big")
        out_ts = int.from_bytes(buf[4:8], "big")
        seq_off, ts_off = (out_seq - seq) & _SEQ, (out_ts - ts) & _TS
        if period.seq_off is None:
            _check_sync(period, seq_off, ts_off, previous, last if last_known else None)
            period.seq_off, period.ts_off = seq_off, ts_off
        else:
            check((seq_off, ts_off) == (period.seq_off, period.ts_off),
                  "the offsets changed without a restart")
        owner = out_owner.setdefault(out_seq, periods)
        check(owner == periods, f"output sequence number {out_seq} reused after a restart")


def _check_sync(period: _Period, seq_off: int, ts_off: int, previous: _Period | None,
                last: tuple[int, int, float] | None) -> None:
    """The offsets chosen at a (re)start, against the rule in rewriter.py's docstring."""
    assert period.sync_u is not None
    if previous is None:  # the first packet ever keeps the sender's numbering
        check(seq_off == 0 and ts_off == 0, "the first sync changed the sender's numbering")
        return
    if last is None:
        return  # the previous run sent nothing the model could learn its offsets from
    last_seq, last_ts, last_time = last
    sync_seq = period.sync_u & _SEQ
    check(seq_off == (last_seq + 1 - sync_seq) & _SEQ,
          f"after a restart the output does not continue at {last_seq} + 1")
    out_ts = (period.sync_ts + ts_off) & _TS
    ahead = (out_ts - last_ts) & _TS
    check(0 < ahead < 0x80000000, f"output timestamp went backwards: {last_ts} -> {out_ts}")
    if period.ssrc == previous.ssrc:
        kept = (period.sync_ts + previous.ts_off - last_ts) & _TS
        expected = previous.ts_off if 0 < kept < 0x80000000 else \
            (last_ts + 1 - period.sync_ts) & _TS
    else:
        step = max(1, int((period.sync_now - last_time) * _CLOCK_RATE))
        expected = (last_ts + step - period.sync_ts) & _TS
    check(ts_off == expected, f"timestamp offset {ts_off}, the rule says {expected}")


def seeds_rewriter() -> list[bytes]:
    rng = random.Random(4)
    seeds = [bytes(rng.randrange(256) for _ in range(size)) for size in (40, 200, 800)]
    # a steady stream, a pause, more packets, a resume, an SSRC change
    steady = b"".join(bytes([0, 21, 40, 111, 20]) for _ in range(10))
    seeds.append(b"\x00\x00\x04\xd2" + b"\xff\xf0" + b"\x00\x00\x10\x00" + steady
                 + b"\x07" + steady + b"\x08" + steady + b"\x09\x00\x00\x16\x2e\x12\x34"
                 + steady)
    return seeds


# -- RTX (nack_buffer.py) -------------------------------------------------------------------

_ORIGINAL_SSRC = 0x01020304
_RTX_SSRC = 0x0A0B0C0D


def _unpadded(packet: bytes) -> bytes:
    """`packet` without its padding (and with the P bit cleared): what RTX carries."""
    start, end = rtp_payload_bounds(packet)
    header = bytearray(packet[:start])
    header[0] &= 0xDF
    return bytes(header) + packet[start:end]


def fuzz_rtx(data: bytes) -> None:
    """Byte 0 is the original payload type the RTX stream is associated with; the rest is a
    datagram. Unwrapping raises only RtpHeaderError and yields a valid RTP packet; wrapping
    then unwrapping gives back the original (without padding)."""
    if not data:
        return
    apt, packet = data[0] & 0x7F, data[1:]
    n = len(packet)
    # The producer unwraps a memoryview of its receive buffer.
    view = memoryview(in_receive_buffer(packet))[:n]
    original = expect(lambda: parse_rtx_packet(view, apt, _ORIGINAL_SSRC), (RtpHeaderError,),
                      "parse_rtx_packet")
    again = expect(lambda: parse_rtx_packet(packet, apt, _ORIGINAL_SSRC), (RtpHeaderError,),
                   "parse_rtx_packet")
    check(type(original) is type(again) and (not isinstance(original, bytes) or original == again),
          "parse_rtx_packet answers differently for bytes and a memoryview")
    if isinstance(original, bytes):
        start, end = rtp_payload_bounds(packet)
        check(rtp_payload_offset(original, len(original)) == start,
              "an unwrapped RTX packet is not valid RTP with the same header")
        check(original[0] == packet[0] & 0xDF and original[1] == (packet[1] & 0x80) | apt,
              "unwrapped header bits")
        check(original[2:4] == packet[start : start + 2], "sequence number is not the OSN")
        check(original[4:8] == packet[4:8], "timestamp changed")
        check(int.from_bytes(original[8:12], "big") == _ORIGINAL_SSRC, "SSRC not restored")
        check(original[12:start] == packet[12:start], "CSRCs or extensions changed")
        check(original[start:] == packet[start + 2 : end], "payload changed")

    wrapped = expect(lambda: make_rtx_packet(view, _RTX_SSRC, 97, 4242), (RtpHeaderError,),
                     "make_rtx_packet")
    check(isinstance(wrapped, RtpHeaderError) == (rtp_payload_offset(packet, n) < 0),
          "make_rtx_packet and the RTP validator disagree")
    if isinstance(wrapped, bytes):
        back = parse_rtx_packet(wrapped, packet[1] & 0x7F, int.from_bytes(packet[8:12], "big"))
        check(back == _unpadded(packet), "wrap -> unwrap did not give the original back")


def seeds_rtx() -> list[bytes]:
    media = [
        build_rtp(payload_type=96, sequence_number=1000, timestamp=90000, ssrc=_ORIGINAL_SSRC,
                  payload=b"\x10\x00\x9d\x01\x2a" + b"v" * 30),
        build_rtp(payload_type=96, sequence_number=65535, timestamp=1, ssrc=_ORIGINAL_SSRC,
                  marker=True, csrcs=(9,), extensions={3: b"\x01\x02\x03"}, padding=3,
                  payload=b"frame"),
    ]
    rtx = [make_rtx_packet(p, _RTX_SSRC, 97, 7) for p in media]
    return [bytes([96]) + p for p in media + rtx]


# -- key frames and the VP8 descriptor (keyframe.py) ---------------------------------------


def _vp8_keyframe_from_descriptor(payload: bytes) -> bool:
    """RFC 7741: a key frame starts where S=1, PID=0 and the VP8 header's P bit is 0."""
    d = parse_vp8_descriptor(payload)
    return (d is not None and d.start_of_partition and d.partition_index == 0
            and d.size < len(payload) and not payload[d.size] & 0x01)


def fuzz_keyframe(data: bytes) -> None:
    """Never raise, answer the same for bytes/bytearray/memoryview, and the inline VP8 walk
    (is_vp8_keyframe) agrees with the descriptor parser."""
    views = (data, bytearray(data), memoryview(in_receive_buffer(data))[: len(data)])
    answers = []
    for payload in views:
        descriptor = expect(lambda p=payload: parse_vp8_descriptor(p), (), "parse_vp8_descriptor")
        answers.append((
            descriptor,
            expect(lambda p=payload: is_vp8_keyframe(p), (), "is_vp8_keyframe"),
            expect(lambda p=payload: is_vp9_keyframe(p), (), "is_vp9_keyframe"),
            expect(lambda p=payload: is_h264_keyframe(p), (), "is_h264_keyframe"),
        ))
    check(answers[0] == answers[1] == answers[2], "answers depend on the buffer type")
    descriptor, vp8, vp9, h264 = answers[0]
    check(all(isinstance(a, bool) for a in (vp8, vp9, h264)), "a detector returned a non-bool")
    check(vp8 == _vp8_keyframe_from_descriptor(data),
          f"is_vp8_keyframe={vp8} disagrees with the descriptor {descriptor}")
    check((is_keyframe("video/VP8", data), is_keyframe("vp9", data), is_keyframe("H264", data))
          == (vp8, vp9, h264), "is_keyframe dispatches wrongly")
    if descriptor is not None:
        d = descriptor
        check(1 <= d.size <= len(data), f"descriptor size {d.size} outside 1..{len(data)}")
        check(0 <= d.partition_index <= 7, f"PID {d.partition_index} is a 3-bit field")
        if d.picture_id is not None:
            check(d.picture_id_bits in (7, 15) and 0 <= d.picture_id < 1 << d.picture_id_bits,
                  "picture id out of its width")
        check(d.tid is None or 0 <= d.tid <= 3, "TID is 2 bits")
        check(d.key_idx is None or 0 <= d.key_idx <= 31, "KEYIDX is 5 bits")
    if vp9:
        check(data[0] & 0x08 and not data[0] & 0x40, "VP9 key frame without B=1, P=0")
    if h264:
        check(len(data) >= 1, "H264 key frame in an empty payload")


def seeds_keyframe() -> list[bytes]:
    return [
        b"\x10\x00\x9d\x01\x2a" + b"\xab" * 10,  # VP8 key frame
        b"\x90\xe0\x81\x23\x05\x40\x00\x9d\x01\x2a",  # X: I (15-bit), L, T, then a key frame
        b"\x10\x01\xab",  # VP8 delta frame
        b"\x8c\x85\x01\x00",  # VP9: I (15-bit), B, E... with layer indices
        b"\x0a\x00\x00",  # VP9 B=1 P=0 with V=1 (scalability structure)
        b"\x65\x88\x84",  # H264 IDR
        b"\x18\x00\x02\x67\x42\x00\x02\x68\xce",  # STAP-A with SPS and PPS
        b"\x7c\x85\x88",  # FU-A start of an IDR
    ]


# -- audio level (audio_level.py) -----------------------------------------------------------


def fuzz_audio_level(data: bytes) -> None:
    """Byte 0 is the negotiated extension id; the rest is a datagram."""
    if not data:
        return
    ext_id, packet = data[0], data[1:]
    view = memoryview(in_receive_buffer(packet))[: len(packet)]
    found = expect(lambda: find_header_extension(view, ext_id), (), "find_header_extension")
    level = expect(lambda: audio_level_from_packet(view, ext_id), (), "audio_level_from_packet")
    check(level == audio_level_from_packet(packet, ext_id), "bytes and a memoryview disagree")
    check((level is None) == (found is None or len(found) == 0), "level without the element")
    if level is not None:
        voice, value = level
        check(isinstance(voice, bool) and 0 <= value <= 127, f"level {level} out of range")
    if found is not None:
        check(len(found) <= 255, "element longer than its length field allows")
    exts = expect(lambda: parse_extensions(packet, len(packet)), (ValueError,),
                  "parse_extensions")
    if isinstance(exts, dict):
        check((found is not None) == (ext_id in exts),
              f"find_header_extension({ext_id}) = {found!r} but parse_extensions = {exts!r}")


def seeds_audio_level() -> list[bytes]:
    return [
        bytes([1]) + build_rtp(payload_type=111, sequence_number=1, timestamp=960, ssrc=1,
                               payload=b"\xab" * 20, extensions={1: b"\x90", 3: b"\x01\x02"}),
        bytes([10]) + build_rtp(payload_type=111, sequence_number=2, timestamp=1920, ssrc=1,
                                payload=b"\xab" * 20, extensions={10: b"\x05", 200: b""},
                                two_byte_extensions=True),
        bytes([1]) + build_rtp(payload_type=111, sequence_number=3, timestamp=2880, ssrc=1),
    ]
