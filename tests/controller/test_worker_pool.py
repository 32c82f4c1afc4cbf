"""WorkerPool: workers with split port ranges, routers placed on the least-loaded worker,
a room spread over the other workers through pipe transports (exact counts at consumers on
both)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import relay
from relay.controller.worker_pool import worker_load

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport"))

from pipe_support import (  # noqa: E402
    MEDIA_CODECS,
    OPUS_PT,
    collect,
    egress,
    ingress,
    opus_parameters,
    rtp,
    send_paced,
)

PACKETS = 150


async def test_pool_places_routers_on_the_least_loaded_worker_and_spreads_a_room():
    with pytest.raises(relay.ArgumentError):
        await relay.WorkerPool.create(size=0)
    pool = await relay.WorkerPool.create(size=2, rtc_min_port=44000, rtc_max_port=44199)
    try:
        first, second = pool.workers
        assert (first.settings["rtcMinPort"], first.settings["rtcMaxPort"]) == (44000, 44099)
        assert (second.settings["rtcMinPort"], second.settings["rtcMaxPort"]) == (44100, 44199)
        room = await pool.create_router(media_codecs=MEDIA_CODECS)
        assert room in first.routers
        _, producer, sender, address = await ingress(room, "audio", opus_parameters())
        _, local_consumer, local_receiver = await egress(room, producer.id)
        assert worker_load(first) == (1, 1, 1)
        # the next room goes to the other worker (no load yet), the one after it too (a
        # router but no consumers beats one consumer)
        other_room = await pool.create_router(media_codecs=MEDIA_CODECS)
        assert other_room in second.routers
        assert pool.least_loaded() is second
        other_room.close()

        (edge,) = await pool.spread(room, producer.id, copies=1)
        assert edge in second.routers
        with pytest.raises(relay.ArgumentError):
            await pool.spread(room, producer.id, copies=2)
        _, far_consumer, far_receiver = await egress(edge, producer.id)
        packets = [rtp(i, i * 960, 11111111, OPUS_PT) for i in range(PACKETS)]
        await send_paced(sender, address, packets, (local_receiver, far_receiver))
        for receiver in (local_receiver, far_receiver):
            await collect(receiver, lambda r=receiver: len(r.rtp) >= PACKETS)
        await asyncio.sleep(0.1)
        for receiver in (local_receiver, far_receiver):
            receiver.drain()
            assert len(receiver.rtp) == PACKETS
        for endpoint in (sender, local_receiver, far_receiver):
            endpoint.close()
    finally:
        pool.close()
        await asyncio.wait_for(pool.wait_closed(), 10)
