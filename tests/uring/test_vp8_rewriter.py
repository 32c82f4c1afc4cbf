"""relay.uring.vp8_rewriter (the C in rewriter_core.c): a consumer's VP8 PictureID and TL0PICIDX continue across the
re-syncs of its RtpRewriter (simulcast layer switches), in 15- and 7-bit PictureIDs, and a
resend gets the PictureID it was first sent with."""

from __future__ import annotations

from relay.uring.rewriter import RtpRewriter
from relay.uring.vp8_rewriter import Vp8PictureRewriter

PT_TABLE = bytes(range(128))


def descriptor(pid: int, tl0: int, wide: bool = True) -> bytearray:
    pid_bytes = bytes([0x80 | (pid >> 8), pid & 0xFF]) if wide else bytes([pid & 0x7F])
    return bytearray(bytes([0x90, 0xC0]) + pid_bytes + bytes([tl0]) + b"\x9d\x01\x2a")


def read(buf: bytearray, wide: bool = True) -> tuple[int, int]:
    if wide:
        return ((buf[2] & 0x7F) << 8) | buf[3], buf[4]
    return buf[2] & 0x7F, buf[3]


def test_pictures_continue_across_a_layer_switch():
    rw = RtpRewriter(1, PT_TABLE, 90000)
    vp8 = Vp8PictureRewriter(rw)
    out = []
    rw.sync(111, 0, 0, 0.0)
    for k in range(5):  # layer A: its own numbering, kept as is at the start
        buf = descriptor(100 + k, 10 + k)
        vp8.rewrite(buf, 0, len(buf))
        out.append(read(buf))
    assert out == [(100 + k, 10 + k) for k in range(5)]
    rw.sync(222, 500, 0, 0.1)  # a switch to layer B (another SSRC, other numbers)
    for k in range(3):
        buf = descriptor(32760 + k, 200 + k)  # B's PictureID wraps at 2^15
        vp8.rewrite(buf, 0, len(buf))
        out.append(read(buf))
    assert out[5:] == [(105, 15), (106, 16), (107, 17)]
    # a resend of B's first picture: the same output number, nothing moves
    buf = descriptor(32760, 200)
    vp8.rewrite(buf, 0, len(buf), update=False)
    assert read(buf) == (105, 15) and vp8.last_pid == 107


def test_seven_bit_picture_ids_and_packets_of_one_picture():
    rw = RtpRewriter(1, PT_TABLE, 90000)
    vp8 = Vp8PictureRewriter(rw)
    rw.sync(111, 0, 0, 0.0)
    for pid in (120, 120, 121):  # two packets of picture 120
        buf = descriptor(pid, 7, wide=False)
        vp8.rewrite(buf, 0, len(buf))
    rw.sync(222, 9, 0, 0.1)
    buf = descriptor(3, 50, wide=False)
    vp8.rewrite(buf, 0, len(buf))
    assert read(buf, wide=False) == (122, 8)


def test_descriptors_without_ids_or_truncated_are_left_alone():
    rw = RtpRewriter(1, PT_TABLE, 90000)
    vp8 = Vp8PictureRewriter(rw)
    for data in (b"\x10\x00\x9d", b"\x90", b"\x90\x80", b"\x90\xc0\x80"):
        buf = bytearray(data)
        vp8.rewrite(buf, 0, len(buf))
        assert buf == bytearray(data)
