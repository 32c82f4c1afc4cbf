import struct

import pytest

from relay.rtp.nack_buffer import (
    AUDIO_MAX_AGE,
    VIDEO_CAPACITY,
    VIDEO_MAX_AGE,
    NackBuffer,
    RtpHeaderError,
    RtxStream,
    make_rtx_packet,
    parse_rtx_packet,
    rtp_payload_bounds,
)


def rtp(seq: int, payload: bytes = b"x", ssrc: int = 0x1234, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 3000, ssrc) + payload


def test_defaults():
    video = NackBuffer.for_video()
    assert (video.capacity, video.max_age) == (VIDEO_CAPACITY, VIDEO_MAX_AGE) == (2500, 2.0)
    audio = NackBuffer.for_audio()
    assert audio.max_age == AUDIO_MAX_AGE == 1.0


def test_store_and_get():
    buf = NackBuffer(capacity=16, max_age=2.0)
    for seq in range(10):
        buf.store(seq, rtp(seq), now=0.0)
    assert buf.get(5, now=0.1) == rtp(5)
    assert buf.get(0, now=0.1) == rtp(0)
    assert buf.stats.hits == 2 and buf.stats.misses == 0
    assert buf.stats.stored == 10
    assert len(buf) == 10


def test_stored_bytes_are_a_copy():
    buf = NackBuffer(capacity=4)
    data = bytearray(rtp(1, b"abc"))
    buf.store(1, data, now=0.0)
    data[-1] = ord("z")
    assert buf.get(1, now=0.0) == rtp(1, b"abc")


def test_eviction_by_count():
    buf = NackBuffer(capacity=4, max_age=10.0)
    for seq in range(10):
        buf.store(seq, rtp(seq), now=0.0)
    assert buf.get(5, now=0.0) is None  # 4 newer packets (6..9) reused its slot
    assert buf.stats.evicted == 1
    assert buf.get(6, now=0.0) == rtp(6)
    assert buf.get(9, now=0.0) == rtp(9)
    assert len(buf) == 4


def test_never_stored():
    buf = NackBuffer(capacity=8)
    assert buf.get(1, now=0.0) is None  # empty buffer
    buf.store(1, rtp(1), now=0.0)
    buf.store(3, rtp(3), now=0.0)
    assert buf.get(2, now=0.0) is None  # a gap in the output numbering
    assert buf.get(4, now=0.0) is None  # ahead of the newest
    assert buf.stats.not_stored == 3
    assert buf.stats.hits == 0


def test_eviction_by_age():
    buf = NackBuffer(capacity=100, max_age=2.0)
    buf.store(1, rtp(1), now=0.0)
    buf.store(2, rtp(2), now=1.5)
    assert buf.get(1, now=2.1) is None
    assert buf.stats.too_old == 1
    assert buf.get(2, now=2.1) == rtp(2)
    assert buf.get(1, now=2.1) is None  # the slot was freed: now never stored
    assert buf.stats.not_stored == 1
    assert len(buf) == 1


def test_wrap_around_at_65535():
    buf = NackBuffer(capacity=100, max_age=10.0)
    seqs = list(range(65500, 65536)) + list(range(0, 51))
    for seq in seqs:
        buf.store(seq, rtp(seq), now=0.0)
    assert buf.get(65535, now=0.0) == rtp(65535)
    assert buf.get(0, now=0.0) == rtp(0)
    assert buf.get(10, now=0.0) == rtp(10)
    assert buf.get(65500, now=0.0) == rtp(65500)  # 86 behind the newest: still held
    assert buf.get(65450, now=0.0) is None  # 136 behind: evicted
    assert buf.stats.evicted == 1
    assert buf.get(51, now=0.0) is None
    assert buf.stats.not_stored == 1


def test_wrap_over_many_cycles_keeps_working():
    buf = NackBuffer(capacity=2500, max_age=10.0)
    for i in range(200_000):
        buf.store(i & 0xFFFF, b"%d" % i, now=0.0)
    newest = 199_999
    for back in (0, 1, 2499):
        assert buf.get((newest - back) & 0xFFFF, now=0.0) == b"%d" % (newest - back)
    assert buf.get((newest - 2500) & 0xFFFF, now=0.0) is None
    assert len(buf) == 2500


def test_reordered_store_and_old_store_ignored():
    buf = NackBuffer(capacity=4, max_age=10.0)
    buf.store(10, rtp(10), now=0.0)
    buf.store(9, rtp(9), now=0.0)  # late but within the window
    assert buf.get(9, now=0.0) == rtp(9)
    buf.store(2, rtp(2), now=0.0)  # 8 behind the newest with capacity 4: ignored
    assert buf.get(10, now=0.0) == rtp(10)
    assert buf.stats.stored == 2


def test_clear():
    buf = NackBuffer(capacity=4)
    buf.store(1, rtp(1), now=0.0)
    buf.clear()
    assert len(buf) == 0
    assert buf.get(1, now=0.0) is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        NackBuffer(capacity=0)
    with pytest.raises(ValueError):
        NackBuffer(capacity=40000)
    with pytest.raises(ValueError):
        NackBuffer(max_age=0)


def full_packet() -> bytes:
    """V=2 P=1 X=1 CC=1, M=1 PT=96, seq 1000, ts 0x11223344, ssrc 0xAABBCCDD, one CSRC,
    a one-byte header extension (id 1 = 0xff), payload "hello", 3 octets of padding."""
    header = bytes.fromhex("b1e003e8" "11223344" "aabbccdd" "01020304")
    extension = bytes.fromhex("bede0001" "10ff0000")
    return header + extension + b"hello" + b"\x00\x00\x03"


def test_payload_bounds():
    assert rtp_payload_bounds(full_packet()) == (24, 29)
    assert rtp_payload_bounds(rtp(1, b"abcd")) == (12, 16)


def test_make_rtx_packet_rfc4588():
    rtx = make_rtx_packet(full_packet(), rtx_ssrc=0x12345678, rtx_payload_type=97, rtx_seq=7)
    expected = (
        bytes.fromhex("91e10007" "11223344" "12345678" "01020304")  # P cleared, M kept, PT 97
        + bytes.fromhex("bede0001" "10ff0000")  # extensions preserved
        + bytes.fromhex("03e8")  # original sequence number 1000
        + b"hello"
    )
    assert rtx == expected


def test_rtx_round_trip():
    original = full_packet()
    rtx = make_rtx_packet(original, 0x12345678, 97, 65535)
    restored = parse_rtx_packet(rtx, original_payload_type=96, original_ssrc=0xAABBCCDD)
    without_padding = bytes([original[0] & ~0x20]) + original[1:-3]
    assert restored == without_padding


def test_rtx_stream_numbers_wrap():
    stream = RtxStream(ssrc=0x5555, payload_type=97, initial_seq=65535)
    first = stream.wrap(rtp(10, b"a"))
    second = stream.wrap(rtp(11, b"b"))
    assert struct.unpack_from("!H", first, 2)[0] == 65535
    assert struct.unpack_from("!H", second, 2)[0] == 0
    assert first[12:] == b"\x00\x0aa" and second[12:] == b"\x00\x0bb"
    assert struct.unpack_from("!I", first, 8)[0] == 0x5555
    assert first[1] & 0x7F == 97
    assert stream.packets_sent == 2


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 15,  # version 1
        bytes.fromhex("8f000001" "00000000" "00000000"),  # 15 CSRCs announced, none there
        bytes.fromhex("90000001" "00000000" "00000000" "bede0005"),  # extension overruns
        bytes.fromhex("a0000001" "00000000" "00000000" "00"),  # padding count 0
        bytes.fromhex("a0000001" "00000000" "00000000" "61ff"),  # padding longer than packet
    ],
)
def test_malformed_rtp_raises_header_error(bad):
    with pytest.raises(RtpHeaderError):
        make_rtx_packet(bad, 1, 97, 0)
    stream = RtxStream(1, 97, 5)
    with pytest.raises(RtpHeaderError):
        stream.wrap(bad)
    assert stream.next_seq == 5  # no sequence number used up


def test_parse_rtx_without_osn_raises():
    with pytest.raises(RtpHeaderError):
        parse_rtx_packet(rtp(1, b"a"), 96, 1)
