"""RFC 3550 jitter is about original transmissions: a packet recovered from RTX (it arrives a
round trip late, on purpose) must not move the producer stream's jitter estimate. Driven
through the real Producer's receive path with chosen arrival times, so the numbers are exact."""

from __future__ import annotations

from media_harness import PRODUCER_SSRC
from quality_peers import PRODUCER_RTX_SSRC, produce_video, video_packet

from relay.rtp.packet import build_rtp

CLOCK = 90000


def test_rtx_recovered_packet_does_not_feed_jitter(run_media):
    async def body(media):
        media.router()
        media.transport("tp")
        produce_video(media, "tp")
        producer = media.ctx.handlers["p1"]
        stats = producer.receivers[0].stats

        def feed(seq: int, now: float) -> None:
            packet = bytearray(video_packet(seq, key=seq == 1))
            producer.receive(memoryview(packet), len(packet), 0, PRODUCER_SSRC, seq,
                             seq * 3000, now)

        # seq 1..10 arrive exactly on their RTP clock (3000 ticks = 1/30 s): jitter 0
        for seq in range(1, 11):
            feed(seq, seq * 3000 / CLOCK)
        assert stats.jitter == 0
        # seq 11 is lost; its RTX copy arrives 0.3 s late but is in order (the highest yet)
        original = video_packet(11)
        rtx = bytearray(build_rtp(payload_type=97, sequence_number=7, timestamp=11 * 3000,
                                  ssrc=PRODUCER_RTX_SSRC, payload=original[2:4] + original[12:]))
        producer.receive_rtx(memoryview(rtx), len(rtx), 0, 11 * 3000 / CLOCK + 0.3)
        assert stats.received == 11 and stats.max_seq == 11  # counted for loss ...
        assert producer.receivers[0].rtx_packets == 1
        assert stats.jitter == 0  # ... but not for jitter (0.3 s late would add 1687 ticks)
        # the next original packet on time: its transit is compared with seq 10's, not 11's
        feed(12, 12 * 3000 / CLOCK)
        assert stats.jitter == 0
        # control: an original packet 0.3 s late does move it, by |D|/16 (RFC 3550 A.8)
        feed(13, 13 * 3000 / CLOCK + 0.3)
        assert stats.jitter == int(0.3 * CLOCK / 16)

    run_media(body)
