import asyncio
import os
import random
import socket

import pytest

from relay.transport.tcp_framing import (
    MAX_FRAME_SIZE,
    FrameDecoder,
    FramingError,
    encode_frame,
)


def test_encode() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00"
    assert encode_frame(bytes(MAX_FRAME_SIZE))[:2] == b"\xff\xff"
    with pytest.raises(ValueError):
        encode_frame(bytes(MAX_FRAME_SIZE + 1))


def test_several_frames_in_one_chunk() -> None:
    decoder = FrameDecoder()
    stream = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")
    assert decoder.feed(stream) == [b"one", b"two", b"three"]
    assert decoder.buffered == 0
    assert decoder.frames_decoded == 3


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    payloads = [os.urandom(n) for n in (1, 100, 1500, 65535)]
    stream = b"".join(encode_frame(p) for p in payloads)
    frames = []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i:i + 1])
    assert frames == payloads
    assert decoder.buffered == 0


def test_partial_header_and_split_frames_random_chunks() -> None:
    rng = random.Random(4571)
    payloads = [rng.randbytes(rng.randint(1, 3000)) for _ in range(200)]
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    frames = []
    offset = 0
    while offset < len(stream):
        size = rng.choice((1, 2, 3, 7, 1000, 4096, 20000))
        frames += decoder.feed(memoryview(stream)[offset:offset + size])
        offset += size
    assert frames == payloads


def test_partial_header_waits() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00") == []
    assert decoder.buffered == 1
    assert decoder.feed(b"\x02a") == []
    assert decoder.feed(b"b\x00") == [b"ab"]
    assert decoder.buffered == 1


def test_empty_frames_are_skipped_and_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00" + encode_frame(b"x") + b"\x00\x00") == [b"x"]
    assert decoder.empty_frames == 2


def test_garbage_length_is_an_error_and_the_decoder_stays_broken() -> None:
    decoder = FrameDecoder(max_frame_size=1500)
    assert decoder.feed(encode_frame(b"ok")) == [b"ok"]
    with pytest.raises(FramingError):
        decoder.feed(b"GET / HTTP/1.1\r\n")  # 'GE' = 18245 > 1500
    assert decoder.broken
    assert decoder.buffered == 0
    with pytest.raises(FramingError):
        decoder.feed(encode_frame(b"ok"))


def test_frames_before_garbage_in_the_same_chunk_are_not_returned() -> None:
    # A stream that turned to garbage is closed: nothing from that chunk is trusted.
    decoder = FrameDecoder(max_frame_size=100)
    with pytest.raises(FramingError):
        decoder.feed(encode_frame(b"ok") + b"\xff\xff")


def test_max_frame_size_bounds_buffering() -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    decoder.feed(b"\x03\xe8" + bytes(999))  # 1000 declared, 999 present
    assert decoder.buffered == 1001
    assert decoder.feed(b"\x00") == [bytes(1000)]
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=0)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=MAX_FRAME_SIZE + 1)


def test_over_a_real_tcp_connection_with_odd_write_sizes() -> None:
    """Frames written in pieces that cut headers and payloads, read back whole."""
    rng = random.Random(6544)
    payloads = [rng.randbytes(rng.randint(1, 5000)) for _ in range(300)]
    stream = b"".join(encode_frame(p) for p in payloads)

    async def run() -> list[bytes]:
        received: list[bytes] = []
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = FrameDecoder()
            while chunk := await reader.read(rng.choice((1, 3, 100, 65536))):
                received.extend(decoder.feed(chunk))
            writer.close()
            done.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        offset = 0
        while offset < len(stream):
            size = rng.choice((1, 2, 5, 777, 3000))
            writer.write(stream[offset:offset + size])
            offset += size
            if rng.random() < 0.1:
                await writer.drain()
        await writer.drain()
        writer.close()
        await asyncio.wait_for(done.wait(), 10)
        server.close()
        await server.wait_closed()
        return received

    assert asyncio.run(run()) == payloads
