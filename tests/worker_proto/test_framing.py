from __future__ import annotations

import struct

import pytest

from worker_proto.errors import FrameTooLargeError, ProtocolError
from worker_proto.framing import MAX_FRAME_SIZE, FrameDecoder, encode_frame


def test_frame_is_big_endian_length_then_payload():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_decoder_handles_any_split():
    payloads = [b"", b"a", b"hello" * 100, bytes(range(256))]
    stream = b"".join(encode_frame(p) for p in payloads)
    for step in (1, 2, 3, 7, 64, len(stream)):
        decoder = FrameDecoder()
        out = []
        for i in range(0, len(stream), step):
            out += decoder.feed(stream[i : i + step])
        assert out == payloads, step
        assert decoder.buffered == 0


def test_encode_refuses_oversized_payload():
    with pytest.raises(FrameTooLargeError) as info:
        encode_frame(b"x" * (MAX_FRAME_SIZE + 1))
    assert isinstance(info.value, ProtocolError)
    assert len(encode_frame(b"x" * MAX_FRAME_SIZE)) == MAX_FRAME_SIZE + 4


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_oversized_frame_is_skipped_without_buffering(step):
    decoder = FrameDecoder(max_frame_size=16)
    stream = struct.pack(">I", 40) + b"y" * 40 + encode_frame(b"after")
    out = []
    for i in range(0, len(stream), step):
        out += decoder.feed(stream[i : i + step])
        assert decoder.buffered <= 16 + 4
    assert isinstance(out[0], FrameTooLargeError)
    assert out[1:] == [b"after"]


def test_partial_frame_waits_for_more():
    decoder = FrameDecoder()
    frame = encode_frame(b"payload")
    assert decoder.feed(frame[:5]) == []
    assert decoder.buffered == 5
    assert decoder.feed(frame[5:]) == [b"payload"]
