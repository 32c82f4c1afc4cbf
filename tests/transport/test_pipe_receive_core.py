"""The far side of a pipe takes the piped packets through the C receive core (the case the
two-worker figures depend on), with and without SRTP, and delivers every one of them."""

from __future__ import annotations

import pytest
from pipe_support import (
    OPUS_PT,
    collect_all,
    egress,
    ingress,
    opus_parameters,
    rtp,
    run,
    send_paced,
    two_workers,
)

from relay.uring import receive_core

PACKETS = 300
pytestmark = pytest.mark.skipif(not receive_core.ENABLED,
                                reason=f"receive core off: {receive_core.REASON}")


@pytest.mark.parametrize("srtp", [False, True], ids=["plain", "srtp"])
def test_pipe_far_side_takes_packets_in_the_receive_core(srtp):
    run(_far_side(srtp))


async def _far_side(srtp: bool) -> None:
    async with two_workers() as (router_a, router_b):
        _, audio, sender, address = await ingress(router_a, "audio", opus_parameters())
        await router_a.pipe_to_router(producer_id=audio.id, router=router_b, enable_srtp=srtp)
        pipe_b = next(t for t in router_b.transports if type(t).__name__ == "PipeTransport")
        _, _, receiver = await egress(router_b, audio.id)
        packets = [rtp(1000 + i, i * 960, 11111111, OPUS_PT, bytes([i & 0xFF]) * 160)
                   for i in range(PACKETS)]
        await send_paced(sender, address, packets, (receiver,))
        await collect_all(receiver, PACKETS)
        assert [p[12:] for p in receiver.rtp] == [p[12:] for p in packets]
        stats = (await pipe_b.get_stats())[0]
        assert stats["rtpPacketsReceived"] == PACKETS
        # the first packet of the stream (and RTCP) went to Python, the rest stayed in C
        assert stats["receiveCore"]["packetsTaken"] >= PACKETS - 2, stats["receiveCore"]
        if srtp:
            assert stats["srtpRecv"]["packets"] >= PACKETS
        sender.close()
        receiver.close()
