"""A video consumer that joins or resumes sends nothing until a key frame, then continues its
sequence numbers; key-frame requests to the sender are coalesced and retried."""

from __future__ import annotations

import struct

from media_harness import PRODUCER_SSRC
from quality_peers import CONSUMER_SSRC, consume_video, produce_video, video_packet

from relay.rtp.packet import build_pli
from relay.rtp.rtcp import Fir, Pli, parse_compound


def media_packets(peer):
    return [p for p in peer.drain() if not 64 <= p[1] & 0x7F <= 95]


def key_frame_requests(peer):
    found = []
    for data in peer.drain():
        if 64 <= data[1] & 0x7F <= 95:
            found += [p for p in parse_compound(data).packets if isinstance(p, (Pli, Fir))]
    return found


def out_seq_and_input(packet: bytes) -> tuple[int, int]:
    """(output sequence number, input seq carried in the payload's last two bytes)."""
    return struct.unpack_from("!H", packet, 2)[0], int.from_bytes(packet[-2:], "big")


def test_join_and_resume_wait_for_a_key_frame(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp")
        consume_video(media, "tc")
        # Joining asks for a key frame; the subscriber's own PLIs and FIR meanwhile are
        # coalesced into that one request.
        await media.wait_for(lambda: len(key_frame_requests(publisher)) == 1)
        for _ in range(3):
            subscriber.send(build_pli(1, CONSUMER_SSRC), tc["tuple"])
        subscriber.send(Fir(1, [(CONSUMER_SSRC, 1)]).serialize(), tc["tuple"])
        for seq in range(1, 6):  # delta frames: not forwarded
            publisher.send(video_packet(seq), tp["tuple"])
        await media.wait_for(
            lambda: media.request("tc", "transport.getStats")[0]["keyFrameRequestsReceived"] == 4)
        await media.settle()
        assert media_packets(subscriber) == []
        assert len(key_frame_requests(publisher)) == 1
        stats = media.request("p1", "producer.getStats")[0]
        assert stats["keyFrameRequestsSent"] == 1 and stats["keyFrameRequestsCoalesced"] == 4
        assert media.request("c1", "consumer.getStats")[0]["waitingForKeyFrame"] is True
        consumer_stats = media.request("c1", "consumer.getStats")[0]
        assert (consumer_stats["pliCount"], consumer_stats["firCount"]) == (3, 1)

        for seq in range(6, 10):  # a key frame, then deltas: all forwarded from the key frame
            publisher.send(video_packet(seq, key=seq == 6), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 4)
        assert [out_seq_and_input(p) for p in subscriber.received] == [(s, s) for s in range(6, 10)]

        media.request("c1", "consumer.pause")
        publisher.send(video_packet(10), tp["tuple"])
        media.request("c1", "consumer.resume")  # → a new key-frame request
        await media.wait_for(lambda: len(key_frame_requests(publisher)) == 2)
        for seq in range(11, 14):
            publisher.send(video_packet(seq), tp["tuple"])  # deltas after resume: held back
        await media.settle()
        assert len(media_packets(subscriber)) == 4
        for seq in range(14, 17):
            publisher.send(video_packet(seq, key=seq == 14), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 7)
        # Output sequence numbers stay continuous across the gap: 10, 11, 12 for inputs 14-16.
        assert [out_seq_and_input(p) for p in subscriber.received[4:]] == [(10, 14), (11, 15), (12, 16)]
        for pli in key_frame_requests(publisher):
            assert pli.media_ssrc == PRODUCER_SSRC

    run_media(body)


def test_request_is_retried_when_no_key_frame_comes(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp")
        consume_video(media, "tc")
        publisher.send(video_packet(1), tp["tuple"])  # the stream exists, but no key frame
        await media.wait_for(lambda: len(key_frame_requests(publisher)) == 1)
        # about a second later the still-waiting consumer's request is sent again
        await media.wait_for(lambda: len(key_frame_requests(publisher)) == 2, timeout=5)
        publisher.send(video_packet(2, key=True), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 1)
        assert media.request("p1", "producer.getStats")[0]["keyFrameRequestsSent"] == 2

    run_media(body)
