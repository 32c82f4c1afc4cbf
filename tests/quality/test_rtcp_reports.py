"""SR and RR built by the relay, checked field by field against what was sent; RTT from the
subscriber's RR; "score" events from the loss reported both ways."""

from __future__ import annotations

from media_harness import PRODUCER_SSRC
from quality_peers import CONSUMER_SSRC, consume_video, produce_video, video_packet

from relay.rtp.receive_stats import compact_ntp, ntp_now
from relay.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    parse_compound,
)


def rtcp_packets(peer, kind):
    found = []
    for data in peer.drain():
        if len(data) >= 2 and 64 <= data[1] & 0x7F <= 95:
            found += [p for p in parse_compound(data).packets if isinstance(p, kind)]
    return found


def test_sender_and_receiver_reports(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp", nack=False, rtx=False)
        consume_video(media, "tc")
        sent = [video_packet(seq, key=seq == 1) for seq in range(1, 21) if seq != 7]
        for packet in sent:
            publisher.send(packet, tp["tuple"])
        await media.wait_for(lambda: len([p for p in subscriber.drain() if p[1] & 0x7F == 101]) == 19)

        # The publisher's SR: the relay keeps it for LSR/DLSR and the NTP<->RTP mapping.
        ntp0 = ntp_now()
        rtp0 = 20 * 3000
        publisher.send(SenderReport(PRODUCER_SSRC, ntp0, rtp0, 19, 19 * 100).serialize(), tp["tuple"])
        producer = media.ctx.handlers["p1"]
        await media.wait_for(lambda: producer.receivers[0].stats.last_sr is not None)

        # RR towards the publisher: loss, extended highest seq, LSR/DLSR.
        media.ctx.handlers["tp"].rtcp_reporter.send_reports(include_audio=True)
        await media.wait_for(lambda: len(rtcp_packets(publisher, ReceiverReport)) == 1)
        rr = rtcp_packets(publisher, ReceiverReport)[0]
        [block] = rr.reports
        assert block.ssrc == PRODUCER_SSRC
        assert block.highest_sequence == 20
        assert block.packets_lost == 1
        assert block.fraction_lost == 256 // 20  # 1 of 20 expected
        assert block.lsr == compact_ntp(ntp0)
        assert 0 <= block.dlsr < 65536  # under a second since the SR
        assert block.jitter >= 0

        # SR (+ SDES) towards the subscriber: counts and the mapped RTP timestamp.
        media.ctx.handlers["tc"].rtcp_reporter.send_reports(include_audio=True)
        await media.wait_for(lambda: len(subscriber.received) > 0 and any(
            p[1] == 200 for p in subscriber.drain()))
        compound = next(p for p in subscriber.received if p[1] == 200)
        packets = parse_compound(compound).packets
        sr = packets[0]
        assert isinstance(sr, SenderReport) and sr.ssrc == CONSUMER_SSRC
        assert sr.packet_count == 19
        assert sr.octet_count == sum(len(p) - 12 for p in sent)  # payload octets
        expected_rtp = (rtp0 + round((sr.ntp_timestamp - ntp0) * 90000 / 2**32)) & 0xFFFFFFFF
        assert abs(sr.rtp_timestamp - expected_rtp) <= 1  # consumer ts offset is 0 here
        assert isinstance(packets[1], SourceDescription)
        assert packets[1].chunks[0].cname == "relay-c1"

        # The subscriber's RR answers that SR: RTT, its loss, and the consumer's score.
        block = ReportBlock(CONSUMER_SSRC, fraction_lost=128, packets_lost=10, highest_sequence=20,
                            jitter=33, lsr=compact_ntp(sr.ntp_timestamp), dlsr=0)
        subscriber.send(ReceiverReport(77, [block]).serialize(), tc["tuple"])
        await media.wait_for(
            lambda: media.request("c1", "consumer.getStats")[0]["roundTripTime"] is not None)
        stats = media.request("c1", "consumer.getStats")[0]
        assert 0 <= stats["roundTripTime"] < 1.0
        assert (stats["fractionLost"], stats["packetsLost"], stats["jitter"]) == (128, 10, 33)
        assert stats["score"] == 1  # 50 % loss: 10 * 0.5**4 rounds to 1
        assert media.request("tc", "transport.getStats")[0]["roundTripTime"] == stats["roundTripTime"]
        scores = [(h, d) for h, e, d in media.notifications if e == "score"]
        assert ("c1", {"score": 1, "producerScore": 8, "producerScores": [8]}) in scores
        # the producer's score came from its RR's 5 % loss: 10 * (1 - 12/256)**4 = 8.3
        assert ("p1", [{"encodingIdx": 0, "ssrc": PRODUCER_SSRC, "rid": None, "score": 8}]) in scores
        assert media.request("p1", "producer.getStats")[0]["score"] == 8

    run_media(body)


def test_reports_go_out_on_their_own(run_media):
    """Without being asked, a transport reports within about a second (video)."""
    async def body(media):
        media.router()
        tp = media.transport("tp")
        publisher = media.peer()
        media.connect("tp", publisher)
        produce_video(media, "tp", nack=False, rtx=False)
        publisher.send(video_packet(1, key=True), tp["tuple"])
        await media.wait_for(lambda: len(rtcp_packets(publisher, ReceiverReport)) >= 1, timeout=5)
        assert media.request("tp", "transport.getStats")[0]["rtcpReportsSent"] >= 1

    run_media(body)
