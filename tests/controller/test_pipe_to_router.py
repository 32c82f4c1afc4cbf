"""router.pipe_to_router() between routers of two workers: the pair of pipe transports is
made once and shared both ways; pause, resume and close of the producer follow it across; a
PLI from the far consumer reaches the producer's sender; closing one pipe transport closes
the pair."""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import pytest
from relay_controller_support import wait_until

import relay
from relay.rtp.packet import build_pli, iter_rtcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport"))

from pipe_support import (  # noqa: E402
    OPUS_PT,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    collect,
    egress,
    ingress,
    opus_parameters,
    rtp,
    send_paced,
    two_workers,
    vp8_parameters,
)

BURST = 60


def _pipe_transports(router) -> list:
    return [t for t in router.transports if isinstance(t, relay.PipeTransport)]


def _plis(packets: list[bytes]) -> list[int]:
    """The media SSRCs of the PLIs in RTCP `packets`."""
    ssrcs = []
    for packet in packets:
        for pt, fmt, offset, _size in iter_rtcp(packet, len(packet)):
            if pt == 206 and fmt == 1:
                ssrcs.append(struct.unpack_from("!I", packet, offset + 8)[0])
    return ssrcs


async def test_pause_resume_close_follow_and_the_pair_is_shared():
    async with two_workers() as (router_a, router_b):
        _, producer, sender, address = await ingress(router_a, "audio", opus_parameters())
        result = await router_a.pipe_to_router(producer_id=producer.id, router=router_b)
        assert isinstance(result, relay.PipeToRouterResult)
        _, consumer, receiver = await egress(router_b, producer.id)
        events: list[str] = []
        for event in ("producerpause", "producerresume", "producerclose"):
            consumer.on(event, lambda e=event: events.append(e))
        seq = iter(range(10_000))

        def burst() -> list[bytes]:
            return [rtp(n, n * 960, 11111111, OPUS_PT) for n in (next(seq) for _ in range(BURST))]

        await send_paced(sender, address, burst(), (receiver,))
        await collect(receiver, lambda: len(receiver.rtp) >= BURST)

        await producer.pause()
        await wait_until(lambda: consumer.producer_paused, 5)
        await wait_until(lambda: result.pipe_producer.paused, 5)
        await send_paced(sender, address, burst(), (receiver,))  # not forwarded
        await producer.resume()
        await wait_until(lambda: not consumer.producer_paused, 5)
        await send_paced(sender, address, burst(), (receiver,))
        await collect(receiver, lambda: len(receiver.rtp) >= 2 * BURST)
        await asyncio.sleep(0.1)
        receiver.drain()
        assert len(receiver.rtp) == 2 * BURST
        assert events == ["producerpause", "producerresume"]

        # the other way round, through the same pair of pipe transports
        _, producer_b, sender_b, address_b = await ingress(router_b, "audio",
                                                           opus_parameters(ssrc=3333))
        back = await router_b.pipe_to_router(producer_id=producer_b.id, router=router_a)
        assert back.pipe_producer.id == producer_b.id
        assert len(_pipe_transports(router_a)) == len(_pipe_transports(router_b)) == 1
        with pytest.raises(relay.InvalidStateError):  # already piped there
            await router_a.pipe_to_router(producer_id=producer.id, router=router_b)
        assert not result.pipe_producer.closed

        producer.close()
        await wait_until(lambda: consumer.closed, 5)
        assert events[-1] == "producerclose"
        await wait_until(lambda: result.pipe_producer.closed and result.pipe_consumer.closed, 5)
        assert producer.id not in (await router_b.dump())["producerIds"]

        # closing one pipe transport closes the other, and what went through them
        pipe_a, pipe_b = _pipe_transports(router_a)[0], _pipe_transports(router_b)[0]
        pipe_b.close()
        await wait_until(lambda: pipe_a.closed and back.pipe_producer.closed, 5)
        assert _pipe_transports(router_a) == [] and _pipe_transports(router_b) == []
        again = await router_b.pipe_to_router(producer_id=producer_b.id, router=router_a)
        assert len(_pipe_transports(router_a)) == 1 and not again.pipe_producer.closed
        for endpoint in (sender, receiver, sender_b):
            endpoint.close()


async def test_pli_from_the_far_consumer_reaches_the_sender():
    async with two_workers() as (router_a, router_b):
        ssrc = 7777
        _, producer, sender, address = await ingress(router_a, "video", vp8_parameters([ssrc]))
        result = await router_a.pipe_to_router(producer_id=producer.id, router=router_b,
                                               enable_rtx=True)
        codecs = result.pipe_consumer.rtp_parameters["codecs"]
        assert {(fb["type"], fb["parameter"]) for fb in codecs[0]["rtcpFeedback"]} == {
            ("nack", ""), ("nack", "pli"), ("ccm", "fir")}
        assert any(c["mimeType"] == "video/rtx" for c in codecs)
        assert "rtx" in result.pipe_consumer.rtp_parameters["encodings"][0]
        _, consumer, receiver = await egress(router_b, producer.id)
        frames = [rtp(100 + i, i * 3000, ssrc, VP8_PT, VP8_KEY if i == 0 else VP8_DELTA)
                  for i in range(BURST)]
        await send_paced(sender, address, frames, (receiver,))
        await collect(receiver, lambda: len(receiver.rtp) >= BURST)
        assert len(receiver.rtp) == BURST
        await asyncio.sleep(1.2)  # past any key-frame request still in flight
        sender.drain()
        before = _plis(sender.rtcp)
        consumer_ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
        egress_port = receiver_port = None
        for transport in router_b.transports:
            if any(c.id == consumer.id for c in transport.consumers):
                egress_port = transport.tuple["localPort"]
        receiver_port = receiver.port
        assert egress_port is not None and receiver_port
        receiver.send(build_pli(1234, consumer_ssrc), ("127.0.0.1", egress_port))
        await collect(sender, lambda: len(_plis(sender.rtcp)) > len(before), timeout=3)
        assert _plis(sender.rtcp)[len(before):] == [ssrc]
        stats = await result.pipe_consumer.get_stats()
        assert stats[0]["pliCount"] >= 1 and stats[0]["nackEnabled"] is True
        assert (await result.pipe_producer.get_stats())[0]["rtxSsrc"] == \
            result.pipe_consumer.rtp_parameters["encodings"][0]["rtx"]["ssrc"]
        for endpoint in (sender, receiver):
            endpoint.close()


async def test_pipe_to_router_refuses_bad_arguments():
    async with two_workers() as (router_a, router_b):
        _, producer, sender, _ = await ingress(router_a, "audio", opus_parameters())
        with pytest.raises(relay.ArgumentError):
            await router_a.pipe_to_router(producer_id=producer.id, router=router_a)
        with pytest.raises(relay.ArgumentError):
            await router_a.pipe_to_router(producer_id=producer.id, router="r")
        with pytest.raises(relay.NotFoundError):
            await router_a.pipe_to_router(producer_id="nope", router=router_b)
        with pytest.raises(relay.ArgumentError):
            await router_a.pipe_to_router(producer_id=producer.id, router=router_b,
                                          listen_info={"ip": "not an ip"})
        assert _pipe_transports(router_a) == []  # nothing half-made is left behind
        router_b.close()
        with pytest.raises(relay.InvalidStateError):
            await router_a.pipe_to_router(producer_id=producer.id, router=router_b)
        sender.close()


async def test_pause_resume_close_of_the_pipe_consumer_follow_across():
    """Pausing the pipe consumer itself pauses the far producer (its consumers hear
    "producerpause" and get nothing new), resuming asks the sender for a key frame and the
    flow comes back from it; the pipe producer stays paused while either the pipe consumer
    or the producer is; closing the pipe consumer closes the far producer."""
    async with two_workers() as (router_a, router_b):
        ssrc = 5555
        _, producer, sender, address = await ingress(router_a, "video", vp8_parameters([ssrc]))
        result = await router_a.pipe_to_router(producer_id=producer.id, router=router_b)
        _, consumer, receiver = await egress(router_b, producer.id)
        events: list[str] = []
        for event in ("producerpause", "producerresume", "producerclose"):
            consumer.on(event, lambda e=event: events.append(e))
        seq = iter(range(10_000))

        def burst() -> list[bytes]:
            return [rtp(n, n * 3000, ssrc, VP8_PT, VP8_KEY if i == 0 else VP8_DELTA)
                    for i, n in enumerate(next(seq) for _ in range(BURST))]

        await send_paced(sender, address, burst(), (receiver,))
        await collect(receiver, lambda: len(receiver.rtp) >= BURST)
        assert len(receiver.rtp) == BURST

        await result.pipe_consumer.pause()
        await wait_until(lambda: result.pipe_producer.paused and consumer.producer_paused, 5)
        await send_paced(sender, address, burst(), (receiver,))
        await asyncio.sleep(0.2)
        receiver.drain()
        assert len(receiver.rtp) == BURST  # nothing new while the pipe consumer is paused

        # the producer pauses too, then resumes: the pipe consumer is still paused
        await producer.pause()
        await producer.resume()
        await asyncio.sleep(0.3)
        assert result.pipe_producer.paused and consumer.producer_paused

        await asyncio.sleep(1.2)  # past the key-frame request limit of the resume above
        sender.drain()
        plis_before = len(_plis(sender.rtcp))
        await result.pipe_consumer.resume()
        await wait_until(lambda: not result.pipe_producer.paused and not consumer.producer_paused,
                         5)
        await collect(sender, lambda: len(_plis(sender.rtcp)) > plis_before, timeout=3)
        assert set(_plis(sender.rtcp)[plis_before:]) == {ssrc}  # a key frame is asked for
        await send_paced(sender, address, burst(), (receiver,))  # starts with a key frame
        await collect(receiver, lambda: len(receiver.rtp) >= 2 * BURST)
        await asyncio.sleep(0.1)
        receiver.drain()
        assert len(receiver.rtp) == 2 * BURST
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in receiver.rtp]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(2 * BURST)]  # no gap
        assert events == ["producerpause", "producerresume"]

        result.pipe_consumer.close()
        await wait_until(lambda: result.pipe_producer.closed and consumer.closed, 5)
        assert events[-1] == "producerclose"
        assert not producer.closed
        for endpoint in (sender, receiver):
            endpoint.close()
