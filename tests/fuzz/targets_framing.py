"""Fuzz targets for the stream framings and the protocol's message decoder: RFC 4571 framing
of ICE-TCP (relay/transport/tcp_framing.py), the worker pipe's frames
(worker_proto/framing.py) and its JSON messages (worker_proto/messages.py).

A stream decoder must not care how the stream was cut into reads: each target decodes the
same bytes in one piece and in fuzzer-chosen pieces and compares both with a few-line
reference reading of the format. Buffered bytes stay bounded by one frame.
"""

from __future__ import annotations

import random
import struct

from relay.transport import tcp_framing
from worker_proto import framing as proto_framing
from worker_proto.errors import FrameTooLargeError, ProtocolError
from worker_proto.messages import (
    decode_message,
    encode_message,
    make_error_response,
    make_log,
    make_notification,
    make_ok_response,
    make_request,
    parse_request,
    parse_worker_message,
    request_id_of,
)

from .fuzz_support import check, expect


def _pieces(stream: bytes, seed: int) -> list[bytes]:
    """`stream` cut at up to 32 points chosen by `seed`, some of them one byte apart (a read
    that ends inside a length header is the interesting case)."""
    if len(stream) < 2:
        return [stream] if stream else []
    rng = random.Random(seed)
    cuts = set()
    for _ in range(rng.randint(1, 32)):
        at = rng.randrange(1, len(stream))
        cuts.update((at, at + 1) if rng.random() < 0.5 else (at,))
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- RFC 4571 (ICE-TCP) ---------------------------------------------------------------------

_TCP_MAX_SIZES = (tcp_framing.MAX_FRAME_SIZE, 1500, 64, 1)


def _rfc4571_reference(stream: bytes, max_size: int) -> tuple[list[bytes], int, bool]:
    """(frames, empty frames, garbage seen) by the letter of RFC 4571."""
    frames, empty, pos = [], 0, 0
    while len(stream) - pos >= 2:
        (size,) = struct.unpack_from("!H", stream, pos)
        if size > max_size:
            return frames, empty, True
        if len(stream) - pos - 2 < size:
            break
        if size:
            frames.append(stream[pos + 2 : pos + 2 + size])
        else:
            empty += 1
        pos += 2 + size
    return frames, empty, False


def _feed_rfc4571(decoder: tcp_framing.FrameDecoder, pieces: list[bytes]) -> tuple[list, bool]:
    frames: list[bytes] = []
    for piece in pieces:
        got = expect(lambda p=piece: decoder.feed(p), (tcp_framing.FramingError,),
                     "tcp_framing.FrameDecoder.feed")
        if isinstance(got, tcp_framing.FramingError):
            check(decoder.broken, "FramingError but the decoder is not broken")
            again = expect(lambda: decoder.feed(b"\x00\x01x"), (tcp_framing.FramingError,),
                           "feeding a broken decoder")
            check(isinstance(again, tcp_framing.FramingError), "a broken decoder decoded again")
            return frames, True
        frames.extend(got)
        check(decoder.buffered < tcp_framing.HEADER_SIZE + decoder.max_frame_size,
              f"{decoder.buffered} bytes buffered with frames of at most "
              f"{decoder.max_frame_size}")
    return frames, False


def fuzz_tcp_framing(data: bytes) -> None:
    """Byte 0: the decoder's maximum frame size and how the stream is cut; the rest is the
    TCP byte stream."""
    if not data:
        return
    max_size = _TCP_MAX_SIZES[data[0] % len(_TCP_MAX_SIZES)]
    stream = data[1:]
    frames, empty, garbage = _rfc4571_reference(stream, max_size)
    whole = tcp_framing.FrameDecoder(max_size)
    got_whole, broke_whole = _feed_rfc4571(whole, [stream] if stream else [])
    cut = tcp_framing.FrameDecoder(max_size)
    got_cut, broke_cut = _feed_rfc4571(cut, _pieces(stream, data[0]))
    check(broke_whole == broke_cut == garbage, f"garbage: reference {garbage}, whole "
                                               f"{broke_whole}, in pieces {broke_cut}")
    if garbage:
        # Frames completed in the same read as the garbage are lost with the connection.
        for got in (got_whole, got_cut):
            check(got == frames[: len(got)], "frames before the garbage are not a prefix")
        return
    check(got_whole == got_cut == frames, "frames depend on how the stream was cut")
    check(whole.empty_frames == cut.empty_frames == empty, "empty frames miscounted")
    check(whole.frames_decoded == len(frames), "frames_decoded miscounted")
    for frame in frames:
        check(tcp_framing.encode_frame(frame) == struct.pack("!H", len(frame)) + frame,
              "encode_frame")


def seeds_tcp_framing() -> list[bytes]:
    stun_like = bytes.fromhex("000100082112a442") + b"txn-id-12345" + b"\x00\x25\x00\x00"
    frames = [stun_like, b"\x16\xfe\xfd" + bytes(40), b"\x80\x6f" + bytes(170), b""]
    stream = b"".join(tcp_framing.encode_frame(f) for f in frames)
    return [bytes([0]) + stream, bytes([5]) + stream, bytes([2]) + stream,
            bytes([1]) + stream[:-3], bytes([3]) + b"\xff\xff" + stream]


# -- the worker pipe's frames ---------------------------------------------------------------

_PROTO_MAX_SIZES = (64, 7, 1, 0)


def _proto_reference(stream: bytes, max_size: int) -> list[bytes | int]:
    """Payloads, and for an oversized frame its declared length (skipped, stream in sync)."""
    out: list[bytes | int] = []
    pos = 0
    while len(stream) - pos >= 4:
        (length,) = struct.unpack_from(">I", stream, pos)
        pos += 4
        if length > max_size:
            out.append(length)
            pos += length
            continue
        if len(stream) - pos < length:
            break
        out.append(stream[pos : pos + length])
        pos += length
    return out


def _feed_proto(decoder: proto_framing.FrameDecoder, pieces: list[bytes],
                max_size: int) -> list[bytes | int]:
    out: list[bytes | int] = []
    for piece in pieces:
        for item in expect(lambda p=piece: decoder.feed(p), (), "worker_proto FrameDecoder.feed"):
            if isinstance(item, FrameTooLargeError):
                out.append(int(str(item).split()[2]))  # "frame of N bytes exceeds ..."
            else:
                check(isinstance(item, bytes) and len(item) <= max_size, "oversized payload")
                out.append(item)
        check(decoder.buffered < proto_framing.HEADER_SIZE + max_size,
              f"{decoder.buffered} bytes buffered with frames of at most {max_size}")
    return out


def fuzz_proto_framing(data: bytes) -> None:
    """Byte 0: the maximum frame size (small, so oversized frames are common) and how the
    stream is cut; the rest is the pipe's byte stream."""
    if not data:
        return
    max_size = _PROTO_MAX_SIZES[data[0] % len(_PROTO_MAX_SIZES)]
    stream = data[1:]
    expected = _proto_reference(stream, max_size)
    whole = _feed_proto(proto_framing.FrameDecoder(max_size), [stream], max_size)
    cut = _feed_proto(proto_framing.FrameDecoder(max_size), _pieces(stream, data[0]), max_size)
    check(whole == cut == expected,
          f"frames depend on how the stream was cut:\n{expected}\n{whole}\n{cut}")


def seeds_proto_framing() -> list[bytes]:
    small = [encode_message(make_request(1, "worker.dump", "", None)),
             encode_message(make_ok_response(1, {"pid": 1}))]
    stream = b"".join(struct.pack(">I", len(p)) + p for p in small)
    return [bytes([0]) + stream, bytes([1]) + stream, bytes([8]) + stream,
            bytes([3]) + struct.pack(">I", 200) + bytes(20) + stream]


# -- the protocol's messages ----------------------------------------------------------------


def fuzz_proto_messages(data: bytes) -> None:
    """decode_message and the parsers raise ProtocolError only; what parses, rebuilds to
    the same message."""
    message = expect(lambda: decode_message(data), (ProtocolError,), "decode_message")
    if isinstance(message, ProtocolError):
        return
    check(isinstance(message, dict), "decode_message returned a non-object")
    check(decode_message(expect(lambda: encode_message(message), (), "encode_message"))
          == message, "a decoded message does not re-encode to itself")
    request_id = expect(lambda: request_id_of(message), (), "request_id_of")
    check(request_id is None or (type(request_id) is int and request_id >= 0), "request id")
    request = expect(lambda: parse_request(message), (ProtocolError,), "parse_request")
    if not isinstance(request, ProtocolError):
        check(request.id == request_id, "parse_request and request_id_of disagree")
        rebuilt = decode_message(encode_message(
            make_request(request.id, request.method, request.handler_id, request.data)))
        check(parse_request(rebuilt) == request, "a request does not round-trip")
    parsed = expect(lambda: parse_worker_message(message), (ProtocolError,),
                    "parse_worker_message")
    if isinstance(parsed, ProtocolError):
        return
    kind = message["kind"]
    if kind == "response":
        rebuilt = make_ok_response(parsed.id, parsed.data) if parsed.ok \
            else make_error_response(parsed.id, parsed.error)
    elif kind == "notification":
        rebuilt = make_notification(parsed.handler_id, parsed.event, parsed.data)
    else:
        rebuilt = make_log(parsed.level, parsed.logger, parsed.message)
    again = parse_worker_message(decode_message(encode_message(rebuilt)))
    check(again == parsed, f"a worker message does not round-trip: {parsed} -> {again}")


def seeds_proto_messages() -> list[bytes]:
    return [encode_message(m) for m in (
        make_request(7, "router.createPlainTransport", "router-1",
                     {"transportId": "t1", "listenIp": "127.0.0.1", "port": None}),
        make_request(2**53 - 1, "worker.dump", "", None),
        make_ok_response(7, {"id": "t1", "tuple": {"localPort": 40000}}),
        make_error_response(None, {"type": "FrameTooLargeError", "message": "x"}),
        make_notification("t1", "tuple", {"tuple": {"localIp": "127.0.0.1"}}),
        make_log("warn", "relay.worker", "hello"),
    )] + [b'{"kind":"request","id":1.5}', b"[]", b'"\\ud800"']
