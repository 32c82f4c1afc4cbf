"""The RTCP the relay sends as a receiver (RR, NACK, PLI, FIR) carries one fixed non-zero
sender SSRC (`RECEIVER_RTCP_SSRC`), never 0, and no consumer may send media with it."""

from __future__ import annotations

import pytest
from media_harness import PRODUCER_SSRC
from quality_peers import consume_video, produce_video, video_packet

from relay.rtp.rtcp import RECEIVER_RTCP_SSRC, Fir, Nack, Pli, ReceiverReport, parse_compound
from worker_proto.errors import ArgumentError


def rtcp_of(peer) -> list:
    found = []
    for data in peer.drain():
        if len(data) >= 2 and 64 <= data[1] & 0x7F <= 95:
            found += parse_compound(data).packets
    return found


def test_rr_nack_pli_fir_carry_the_receiver_ssrc(run_media):
    async def body(media):
        assert RECEIVER_RTCP_SSRC != 0
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp")
        consume_video(media, "tc")  # a new video consumer asks for a key frame: PLI
        for seq in (1, 2, 4):  # 3 missing: NACK
            publisher.send(video_packet(seq, key=seq == 1), tp["tuple"])
        got: list = []

        def seen(kind) -> bool:
            got.extend(rtcp_of(publisher))
            return any(isinstance(p, kind) for p in got)

        await media.wait_for(lambda: seen(Pli) and seen(Nack))
        media.ctx.handlers["tp"].rtcp_reporter.send_reports(include_audio=True)
        await media.wait_for(lambda: seen(ReceiverReport))
        pli = next(p for p in got if isinstance(p, Pli))
        nack = next(p for p in got if isinstance(p, Nack))
        rr = next(p for p in got if isinstance(p, ReceiverReport))
        assert (pli.sender_ssrc, pli.media_ssrc) == (RECEIVER_RTCP_SSRC, PRODUCER_SSRC)
        assert (nack.sender_ssrc, nack.media_ssrc, nack.lost) == (RECEIVER_RTCP_SSRC, PRODUCER_SSRC, [3])
        assert rr.ssrc == RECEIVER_RTCP_SSRC and rr.reports[0].ssrc == PRODUCER_SSRC

        # a sender that negotiated only "ccm fir" gets a FIR, from the same SSRC
        tf = media.transport("tf")
        fir_sender = media.peer()
        media.connect("tf", fir_sender)
        media.request("tf", "transport.produce", {
            "producerId": "pf", "kind": "video",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 96,
                                          "clockRate": 90000,
                                          "rtcpFeedback": [{"type": "ccm", "parameter": "fir"}]}],
                              "encodings": [{"ssrc": 7777}]},
            "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                           "encodings": [{"ssrc": 7777, "mappedSsrc": 5555}]},
        })
        fir_sender.send(video_packet(1, ssrc=7777), tf["tuple"])
        await media.wait_for(lambda: media.ctx.handlers["pf"].packets_received == 1)
        media.ctx.handlers["pf"].request_key_frame()
        firs: list = []
        await media.wait_for(lambda: bool(firs.extend(
            p for p in rtcp_of(fir_sender) if isinstance(p, Fir)) or firs))
        assert firs[0].sender_ssrc == RECEIVER_RTCP_SSRC
        assert [ssrc for ssrc, _ in firs[0].entries] == [7777]

    run_media(body)


def test_consumer_may_not_use_the_receiver_ssrc(run_media):
    async def body(media):
        media.router()
        media.transport("tp")
        media.transport("tc")
        produce_video(media, "tp")
        with pytest.raises(ArgumentError):
            consume_video(media, "tc", ssrc=RECEIVER_RTCP_SSRC, rtx=False)
        with pytest.raises(ArgumentError):  # nor as its RTX SSRC
            consume_video(media, "tc", ssrc=RECEIVER_RTCP_SSRC - 1)
        assert "c1" not in media.ctx.handlers

    run_media(body)
