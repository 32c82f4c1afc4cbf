"""Congestion feedback from a transport to its sender (issue 11), through the worker's real
sockets: a producer that negotiated transport-cc gets transport-cc feedback that reports
every packet it sent (received or lost) within a few hundred milliseconds, RTX probes
included; one that negotiated only goog-remb with abs-send-time gets REMB; and
`transport.setMaxIncomingBitrate` caps what either allows."""

from __future__ import annotations

import asyncio
import struct

from media_harness import VP8, VP8_DELTA_FRAME
from test_simulcast_rid import rtcp_of

from relay.rtp.packet import build_rtp
from relay.rtp.rtcp import Remb, TransportFeedback
from relay.rtp.transport_cc import TRANSPORT_CC_URI, parse_feedback

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TCC_ID, ABS_ID = 5, 4
SSRC = 1111


def produce(media, feedback: list[dict], extensions: list[dict]) -> None:
    media.request("tp", "transport.produce", {
        "producerId": "p1", "kind": "video",
        "rtpParameters": {"codecs": [{**VP8, "rtcpFeedback": feedback}],
                          "headerExtensions": extensions, "encodings": [{"ssrc": SSRC}]},
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                       "encodings": [{"ssrc": SSRC, "mappedSsrc": 5000}]},
    })


def test_transport_cc_feedback_reports_every_packet(run_media):
    async def body(media):
        tp, _, publisher, _ = media.publish_subscribe()
        produce(media, [{"type": "transport-cc", "parameter": ""}],
                [{"uri": TRANSPORT_CC_URI, "id": TCC_ID}])
        lost = {17, 18, 40}
        sent = [w for w in range(65500, 65500 + 80) if (w - 65500) not in lost]  # wraps
        for i, wide in enumerate(range(65500, 65500 + 80)):
            if i in lost:
                continue
            publisher.send(build_rtp(payload_type=96, sequence_number=i, timestamp=3000 * i,
                                     ssrc=SSRC, payload=VP8_DELTA_FRAME,
                                     extensions={TCC_ID: struct.pack("!H", wide & 0xFFFF)}),
                           tp["tuple"])
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.4)  # feedback goes out every 50–250 ms
        feedback = [parse_feedback(p.data) for p in rtcp_of(publisher, TransportFeedback)]
        assert feedback, "no transport-cc feedback"
        received = {r.seq for f in feedback for r in f.received}
        reported_lost = {s for f in feedback for s in f.lost()}
        assert received == {w & 0xFFFF for w in sent}
        assert reported_lost == {(65500 + i) & 0xFFFF for i in lost}
        assert {f.media_ssrc for f in feedback} == {SSRC}
        counts = [f.fb_count for f in feedback]
        assert counts == list(range(counts[0], counts[0] + len(counts)))
        # arrival deltas follow the 5 ms pacing (250 µs units; loopback, a loaded machine)
        arrivals = [r.arrival_us for f in feedback for r in f.received]
        assert all(b >= a for a, b in zip(arrivals, arrivals[1:], strict=False))
        stats = media.request("tp", "transport.getStats")[0]["receiveFeedback"]
        assert stats["type"] == "transport-cc" and stats["feedbackPacketsSent"] == len(feedback)
        assert stats["transportCc"]["packets"] == len(sent)
        # a cap rides next to transport-cc as REMB
        media.request("tp", "transport.setMaxIncomingBitrate", {"bitrate": 300_000})
        await media.wait_for(lambda: any(r.bitrate <= 300_000 for r in rtcp_of(publisher, Remb)))
        (cap,) = {(r.bitrate, tuple(r.ssrcs)) for r in rtcp_of(publisher, Remb)}
        assert 290_000 <= cap[0] <= 300_000 and cap[1] == (SSRC,)

    run_media(body)


def test_remb_for_a_sender_without_transport_cc(run_media):
    async def body(media):
        tp, _, publisher, _ = media.publish_subscribe()
        produce(media, [{"type": "goog-remb", "parameter": ""}],
                [{"uri": ABS_SEND_TIME, "id": ABS_ID}])
        loop = asyncio.get_running_loop()
        start = loop.time()
        i = 0
        # ~500 kbit/s for 4 s: aiortc's estimator gives its first estimate after about 3 s
        while loop.time() - start < 4.0:
            now = loop.time() - start
            abs_time = int(now * (1 << 18)) & 0xFFFFFF  # 6.18 fixed point seconds
            for _ in range(2):
                publisher.send(build_rtp(payload_type=96, sequence_number=i & 0xFFFF,
                                         timestamp=90 * i, ssrc=SSRC, payload=bytes(600),
                                         extensions={ABS_ID: abs_time.to_bytes(3, "big")}),
                               tp["tuple"])
                i += 1
            await asyncio.sleep(0.02)
        rembs = rtcp_of(publisher, Remb)
        assert rembs, "no REMB"
        assert all(r.ssrcs == [SSRC] for r in rembs)
        stats = media.request("tp", "transport.getStats")[0]["receiveFeedback"]
        assert stats["type"] == "remb" and stats["rembPacketsSent"] == len(rembs)
        assert 200_000 <= rembs[-1].bitrate <= 5_000_000, rembs[-1].bitrate
        media.request("tp", "transport.setMaxIncomingBitrate", {"bitrate": 100_000})
        await media.wait_for(lambda: rtcp_of(publisher, Remb)[-1].bitrate <= 100_000)

    run_media(body)
