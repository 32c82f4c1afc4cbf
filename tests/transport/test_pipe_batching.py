"""Batching on pipe transports (relay.transport.pipe_batch): several packets per datagram
between two relays, bare packets for a peer that does not take batches, and batched
datagrams that are malformed or from strangers dropped and counted, on both receive paths
(the C receive core and Python's)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from pipe_support import (
    OPUS_PT,
    Endpoint,
    collect,
    collect_all,
    egress,
    ingress,
    opus_parameters,
    rtp,
    run,
    two_workers,
)

from relay.transport.pipe_batch import BATCH_DATAGRAM_BYTES, PipeBatcher, split_frames
from relay.uring import SendRing

BURSTS = 100
BURST = 10  # packets sent back to back: they reach the worker in one drain


def frame(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


def seqs(packets: list[bytes]) -> list[int]:
    return [struct.unpack_from("!H", p, 2)[0] for p in packets]


# -- the format ---------------------------------------------------------------------------------

def test_split_frames_gives_each_packet_and_refuses_bad_frames():
    packets = [rtp(i, i, 1, OPUS_PT, bytes([i]) * (20 + i)) for i in range(5)]
    assert [bytes(f) for f in split_frames(b"".join(map(frame, packets)))] == packets
    good = frame(packets[0])
    for bad, why in ((good + b"\x00", "cut short"), (good + b"\x00\x00", "empty"),
                     (good + b"\x00\x30" + packets[1], "longer"),
                     (good + frame(frame(packets[1]) + frame(packets[2])), "inside")):
        got = []
        with pytest.raises(ValueError, match=why):
            for f in split_frames(bad):
                got.append(bytes(f))
        assert got == [packets[0]]  # the frames before the bad one were given


def test_batcher_cuts_datagrams_at_the_size_and_keeps_the_order():
    """`fc_stream_send` through a real ring: runs of frames up to BATCH_DATAGRAM_BYTES, a
    frame alone as its bare packet, nothing lost or reordered; a Python-path send after
    framed packets goes after them."""
    ring = SendRing(slots=64, mode="copy")  # not attached: flush_soon flushes at once
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1.0)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.new_event_loop()
    try:
        batcher = PipeBatcher(ring, loop, out.fileno(), sink.getsockname())
        sizes = [100, 300, 1100, 60, 60, 60, 1180, 500, 500, 500, 40]
        packets = [rtp(i, i, 7, OPUS_PT, bytes([i]) * (s - 12)) for i, s in enumerate(sizes)]
        buf = batcher.media_buffer
        data = b"".join(map(frame, packets))
        buf.buf[:len(data)] = data
        buf.c.len = len(data)
        batcher.flush_media()
        last = rtp(99, 99, 7, OPUS_PT)
        buf.buf[:len(frame(last))] = frame(last)
        buf.c.len = len(frame(last))
        late = rtp(100, 100, 7, OPUS_PT)
        assert batcher.media_send(out.fileno(), late, sink.getsockname())
        ring.flush()
        datagrams = []
        while True:
            try:
                datagrams.append(sink.recv(4096))
            except TimeoutError:
                break
            sink.settimeout(0.2)
        got = []
        for d in datagrams:
            assert len(d) <= BATCH_DATAGRAM_BYTES
            if d[0] < 0x80:
                got.extend(bytes(f) for f in split_frames(d))
                assert len(list(split_frames(d))) >= 2  # a lone packet goes bare
            else:
                got.append(d)
        assert got == packets + [last, late]
        # greedy runs of at most 1200 bytes, each frame 2 more than its packet:
        # [100 300] [1100 60] [60 60] [1180] [500 500] [500 40], then [last] and [late]
        assert [len(list(split_frames(d))) if d[0] < 0x80 else 1 for d in datagrams] == [
            2, 2, 2, 1, 2, 2, 1, 1]
        assert batcher.stats() == {"datagramsSent": 7, "packetsBatched": 10,
                                   "packetsDropped": 0}
    finally:
        loop.close()
        ring.close()
        sink.close()
        out.close()


# -- between two workers ------------------------------------------------------------------------

@pytest.mark.parametrize("srtp", [False, True], ids=["plain", "srtp"])
@pytest.mark.parametrize("receive_core", ["1", "0"], ids=["c-receive", "python-receive"])
def test_pipe_to_router_batches_bursts_and_delivers_every_packet(srtp, receive_core,
                                                                  monkeypatch):
    monkeypatch.setenv("RELAY_RECEIVE_CORE", receive_core)  # the workers' receive path
    run(_bursts(srtp, receive_core == "1"))


async def _bursts(srtp: bool, c_receive: bool) -> None:
    async with two_workers() as (router_a, router_b):
        _, audio, sender, address = await ingress(router_a, "audio", opus_parameters())
        await router_a.pipe_to_router(producer_id=audio.id, router=router_b, enable_srtp=srtp)
        pipe_a = next(t for t in router_a.transports if type(t).__name__ == "PipeTransport")
        pipe_b = next(t for t in router_b.transports if type(t).__name__ == "PipeTransport")
        assert pipe_a.batching and pipe_b.batching
        _, _, receiver = await egress(router_b, audio.id)
        packets = [rtp(1000 + i, i * 960, 11111111, OPUS_PT, bytes([i & 0xFF]) * 160)
                   for i in range(BURSTS * BURST)]
        for k in range(BURSTS):
            for packet in packets[k * BURST:(k + 1) * BURST]:
                sender.send(packet, address)
            receiver.drain()
            await asyncio.sleep(0.005)
        await collect_all(receiver, len(packets))
        assert [p[12:] for p in receiver.rtp] == [p[12:] for p in packets]
        assert seqs(receiver.rtp) == [(seqs(receiver.rtp)[0] + i) & 0xFFFF
                                      for i in range(len(packets))]
        sent = (await pipe_a.get_stats())[0]["batching"]
        got = (await pipe_b.get_stats())[0]
        assert sent["sends"] and sent["sent"]["packetsDropped"] == 0, sent
        # most bursts reach worker A in one drain: its packets go in a few datagrams
        assert sent["sent"]["packetsBatched"] >= len(packets) // 2, sent
        assert sent["sent"]["datagramsSent"] <= len(packets) // 2, sent
        assert got["batching"]["packetsReceived"] == sent["sent"]["packetsBatched"], got
        assert got["rtpPacketsReceived"] == len(packets)
        assert not got["dropped"], got["dropped"]
        if c_receive:  # the far side took the batched packets in C, not in Python
            assert got["receiveCore"]["packetsTaken"] >= len(packets) - 2, got["receiveCore"]
        else:
            assert "receiveCore" not in got
        sender.close()
        receiver.close()


def test_a_peer_that_does_not_batch_gets_bare_packets_and_one_that_does_gets_frames():
    """What goes on the wire, read by a plain socket standing for the far end: for a
    mediasoup peer (connect without batching) one RTP packet per datagram, for a relay peer
    batched datagrams whose frames are the packets."""
    run(_wire())


async def _wire() -> None:
    async with two_workers() as (router_a, _):
        _, audio, sender, address = await ingress(router_a, "audio", opus_parameters())
        for peer_batches in (False, True):
            far = Endpoint()
            pipe = await router_a.create_pipe_transport(enable_batching=True)
            await pipe.connect(ip="127.0.0.1", port=far.port, batching=peer_batches)
            await pipe.consume(producer_id=audio.id)
            packets = [rtp(i, i * 960, 11111111, OPUS_PT, bytes([i]) * 100) for i in range(60)]
            datagrams: list[bytes] = []
            for k in range(0, len(packets), BURST):
                for packet in packets[k:k + BURST]:
                    sender.send(packet, address)
                await asyncio.sleep(0.01)
                while True:
                    try:
                        data = far.sock.recv(4096)
                    except BlockingIOError:
                        break
                    if not 64 <= (data[1] & 0x7F) <= 95:  # (RTCP: reports to the far end)
                        datagrams.append(data)
            got = []
            for d in datagrams:
                if peer_batches and d[0] < 0x80:
                    got.extend(bytes(f) for f in split_frames(d))
                else:
                    assert 0x80 <= d[0] <= 0xBF
                    got.append(d)
            assert [p[12:] for p in got] == [p[12:] for p in packets]
            if peer_batches:
                assert len(datagrams) < len(packets) / 2
            else:
                assert len(datagrams) == len(packets)
            pipe.close()
            far.close()
        sender.close()


async def _far_end(router_a, router_b):
    """A batching pipe transport on router B whose remote is a plain socket (`far`, standing
    for the far relay), producing what a pipe consumer of router A's audio producer would
    send; a receiver consumes it on B. Returns (far, pipe, receiver, ssrc, payload type)."""
    _, audio, _, _ = await ingress(router_a, "audio", opus_parameters())
    source = await router_a.create_pipe_transport(enable_batching=True)
    params = (await source.consume(producer_id=audio.id)).rtp_parameters
    far = Endpoint()
    far.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    pipe = await router_b.create_pipe_transport(enable_batching=True)
    await pipe.connect(ip="127.0.0.1", port=far.port, batching=True)
    await pipe.produce(id=audio.id, kind="audio", rtp_parameters=params)
    _, _, receiver = await egress(router_b, audio.id)
    return far, pipe, receiver, params["encodings"][0]["ssrc"], params["codecs"][0]["payloadType"]


@pytest.mark.parametrize("receive_core", ["1", "0"], ids=["c-receive", "python-receive"])
def test_malformed_batches_are_dropped_and_counted(receive_core, monkeypatch):
    monkeypatch.setenv("RELAY_RECEIVE_CORE", receive_core)
    run(_malformed())


async def _malformed() -> None:
    """A far end (a plain socket) sends batched datagrams to a batching pipe transport's
    producer: good frames are delivered, a cut, empty or nested frame drops the rest of its
    datagram (counted "malformed"), a too short one is counted on its own, a stranger's
    batch is not taken, and the worker goes on."""
    async with two_workers() as (router_a, router_b):
        far, pipe, receiver, ssrc, pt = await _far_end(router_a, router_b)
        to = (pipe.tuple["localIp"], pipe.tuple["localPort"])
        seq = iter(range(5000, 6000))

        def packet() -> bytes:
            n = next(seq)
            return rtp(n, n * 960, ssrc, pt, bytes([n & 0xFF]) * 50)

        good = [packet() for _ in range(3)]
        far.send(b"".join(map(frame, good)), to)  # a first batch: all three
        await collect(receiver, lambda: len(receiver.rtp) >= 3)
        delivered = [good]
        cases = [
            lambda a, b: frame(a) + frame(b)[:-5],  # cut: b is lost
            lambda a, b: frame(a) + b"\x00\x00" + frame(b),  # empty frame: b is lost
            lambda a, b: frame(a) + frame(frame(b) + frame(b)),  # nested: b is lost
        ]
        for case in cases:
            a, b = packet(), packet()
            far.send(case(a, b), to)
            delivered.append([a])
        short = frame(b"\x80\x6f\x00\x01")  # 4 bytes: too short for RTP
        a = packet()
        far.send(short + frame(a), to)  # counted alone; a is delivered
        delivered.append([a])
        stranger = Endpoint()
        stranger.send(b"".join(map(frame, [packet(), packet()])), to)
        await asyncio.sleep(0.05)
        last = [packet() for _ in range(4)]
        far.send(b"".join(map(frame, last)), to)  # still working
        delivered.append(last)
        want = [p for group in delivered for p in group]
        await collect_all(receiver, len(want))
        assert [p[12:] for p in receiver.rtp] == [p[12:] for p in want]
        stats = (await pipe.get_stats())[0]
        assert stats["dropped"] == {"malformed": 3, "tooShort": 1, "notFromRemote": 1}, stats
        assert stats["batching"]["datagramsReceived"] == 6
        for endpoint in (far, stranger, receiver):
            endpoint.close()


def test_junk_batches_from_the_remote_lose_no_legit_packet():
    """3,000 mangled batched datagrams from the pipe's own remote (so they pass the source
    check and reach the frame walk, SRTP-less RTP checks, SSRC lookup and RTCP parsing),
    between valid batches of a legitimate stream: every legitimate packet arrives, in order,
    every batch is counted, and the worker still answers."""
    run(_junk())


def _junk_batch(rng, legit_ssrc: int) -> bytes:
    """Frames of random lengths and bytes (never the legitimate SSRC), sometimes cut,
    empty, nested or holding RTCP-looking bytes: first byte below 0x80, so it is a batch."""
    frames = []
    for _ in range(rng.randrange(1, 6)):
        n = rng.choice((0, 1, 4, 11, 12, 13, 40, 200, rng.randrange(0, 300)))
        body = bytearray(rng.randbytes(n))
        if n >= 12:
            body[0] = rng.choice((0x80, 0x90, 0xA0, 0x81, 0x00, rng.randrange(256)))
            if int.from_bytes(body[8:12], "big") == legit_ssrc:
                body[8] ^= 0xFF
        claimed = n if rng.random() < 0.8 else rng.randrange(0, 2048)
        frames.append(struct.pack("!H", claimed) + bytes(body))
    data = b"".join(frames)
    if rng.random() < 0.2:
        data = data[:rng.randrange(1, len(data) + 1)]
    return data if data and data[0] < 0x80 else b"\x00\x01\x80"


async def _junk() -> None:
    import random

    rng = random.Random(15)
    async with two_workers() as (router_a, router_b):
        far, pipe, receiver, ssrc, pt = await _far_end(router_a, router_b)
        to = (pipe.tuple["localIp"], pipe.tuple["localPort"])
        legit = [rtp(i, i * 960, ssrc, pt, bytes([i & 0xFF]) * 60) for i in range(600)]
        junk = 0
        for k in range(0, len(legit), 3):
            far.send(b"".join(map(frame, legit[k:k + 3])), to)
            for _ in range(15):
                far.send(_junk_batch(rng, ssrc), to)
                junk += 1
            receiver.drain()
            await asyncio.sleep(0.002)
        await collect_all(receiver, len(legit))
        assert [p[12:] for p in receiver.rtp] == [p[12:] for p in legit]
        stats = (await pipe.get_stats())[0]
        assert stats["batching"]["datagramsReceived"] == junk + len(legit) // 3, stats
        assert stats["dropped"].get("malformed", 0) > 0, stats["dropped"]
        assert await router_b.dump()  # the worker answers
        for endpoint in (far, receiver):
            endpoint.close()
