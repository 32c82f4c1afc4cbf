"""RFC 3611 XR end to end over a plain transport: our RRs towards a producer's sender come
with an RRTR; a sender answering it with a DLRR gives the producer stream an RTT with no
consumer on its transport; an RRTR from a consumer's receiver is answered with a DLRR after
our next SR; a malformed XR is counted and the rest of its compound still handled."""

from __future__ import annotations

import asyncio

from media_harness import PRODUCER_SSRC
from quality_peers import CONSUMER_SSRC, consume_video, produce_video, video_packet

from relay.rtp.receive_stats import compact_ntp, ntp_now
from relay.rtp.rtcp import (
    RECEIVER_RTCP_SSRC,
    DlrrSubBlock,
    ExtendedReport,
    Pli,
    ReceiverReport,
    SenderReport,
    parse_compound,
)


def rtcp_of(peer) -> list:
    """The RTCP packets received since the last call."""
    found = []
    for data in peer.drain():
        if len(data) >= 2 and 64 <= data[1] & 0x7F <= 95:
            found += parse_compound(data).packets
    peer.received.clear()
    return found


def test_producer_rtt_from_the_senders_dlrr(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        publisher = media.peer()
        media.connect("tp", publisher)
        produce_video(media, "tp", nack=False, rtx=False)
        for seq in range(1, 11):
            publisher.send(video_packet(seq, key=seq == 1), tp["tuple"])
        producer = media.ctx.handlers["p1"]
        await media.wait_for(lambda: producer.packets_received == 10)
        assert media.request("p1", "producer.getStats")[0]["roundTripTime"] is None

        media.ctx.handlers["tp"].rtcp_reporter.send_reports(include_audio=True)
        got: list = []
        await media.wait_for(lambda: bool(got.extend(rtcp_of(publisher))
                                          or any(isinstance(p, ExtendedReport) for p in got)))
        rr = next(p for p in got if isinstance(p, ReceiverReport))
        xr = next(p for p in got if isinstance(p, ExtendedReport))
        assert rr.ssrc == xr.ssrc == RECEIVER_RTCP_SSRC
        assert xr.rrtr is not None and xr.dlrr == []
        assert abs(xr.rrtr - ntp_now()) < (1 << 32)  # our wall clock, within a second

        # The sender holds it 0.2 s but claims 0.05 s: the RTT we compute is ~0.15 s.
        await asyncio.sleep(0.2)
        answer = ExtendedReport(PRODUCER_SSRC, dlrr=[
            DlrrSubBlock(RECEIVER_RTCP_SSRC, compact_ntp(xr.rrtr), int(0.05 * 65536))])
        # a DLRR for somebody else's RRTR is ignored
        other = ExtendedReport(PRODUCER_SSRC, dlrr=[DlrrSubBlock(12345, 1, 1)])
        publisher.send(other.serialize() + answer.serialize(), tp["tuple"])
        await media.wait_for(
            lambda: media.request("p1", "producer.getStats")[0]["roundTripTime"] is not None)
        rtt = media.request("p1", "producer.getStats")[0]["roundTripTime"]
        assert 0.14 <= rtt < 0.5
        assert media.ctx.handlers["tp"].rtt is None  # not from a consumer: there is none

    run_media(body)


def test_consumer_answers_the_receivers_rrtr_with_dlrr(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp", nack=False, rtx=False)
        consume_video(media, "tc")
        for seq in range(1, 6):
            publisher.send(video_packet(seq, key=seq == 1), tp["tuple"])
        consumer = media.ctx.handlers["c1"]
        await media.wait_for(lambda: consumer.packets_sent == 5)

        rrtr_ntp = ntp_now()
        subscriber.send(ExtendedReport(0xABCD, rrtr=rrtr_ntp).serialize(), tc["tuple"])
        await media.wait_for(lambda: consumer._rrtr is not None)
        await asyncio.sleep(0.1)
        reporter = media.ctx.handlers["tc"].rtcp_reporter
        reporter.send_reports(include_audio=True)
        got: list = []
        await media.wait_for(lambda: bool(got.extend(rtcp_of(subscriber))
                                          or any(isinstance(p, ExtendedReport) for p in got)))
        sr = next(p for p in got if isinstance(p, SenderReport))
        xr = next(p for p in got if isinstance(p, ExtendedReport))
        assert sr.ssrc == xr.ssrc == CONSUMER_SSRC
        (sub,) = xr.dlrr
        assert (sub.ssrc, sub.lrr) == (0xABCD, compact_ntp(rrtr_ntp))
        assert 0.09 * 65536 <= sub.dlrr < 0.5 * 65536  # held ~0.1 s, in 1/65536 s
        # answered once: the next report has no DLRR until a new RRTR
        reporter.send_reports(include_audio=True)
        got = []
        await media.wait_for(lambda: bool(got.extend(rtcp_of(subscriber))
                                          or any(isinstance(p, SenderReport) for p in got)))
        assert not any(isinstance(p, ExtendedReport) for p in got)

    run_media(body)


def test_malformed_xr_is_counted_and_the_rest_handled(run_media):
    async def body(media):
        media.router()
        media.transport("tp")
        tc = media.transport("tc")
        publisher, subscriber = media.peer(), media.peer()
        media.connect("tp", publisher)
        media.connect("tc", subscriber)
        produce_video(media, "tp", nack=False, rtx=False)
        consume_video(media, "tc")
        bad_xr = bytes.fromhex("80cf0002" "00000001" "05000001")  # DLRR overruns the XR
        subscriber.send(bad_xr + Pli(1, CONSUMER_SSRC).serialize(), tc["tuple"])
        transport = media.ctx.handlers["tc"]
        await media.wait_for(lambda: transport.dropped["xrMalformed"] == 1)
        assert transport.keyframe_requests_received == 1  # the PLI after it still counted
        assert "rtcpMalformed" not in transport.dropped

    run_media(body)
