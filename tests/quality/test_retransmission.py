"""Loss between a publisher and the relay, and between the relay and a subscriber, through
lossy UDP proxies with a fixed drop pattern: the relay NACKs the publisher and unwraps its RTX,
answers the subscriber's NACK from its store (RTX or plain resend), and the subscriber ends
up with every packet; the counters agree with what the proxies dropped."""

from __future__ import annotations

import asyncio
import struct

import pytest
from lossy_proxy import LossyProxy, is_rtcp, once, rtp_seq_ssrc
from media_harness import PRODUCER_SSRC
from quality_peers import (
    CONSUMER_RTX_PT,
    CONSUMER_RTX_SSRC,
    CONSUMER_SSRC,
    PRODUCER_RTX_SSRC,
    consume_video,
    produce_video,
    video_packet,
)

from relay.rtp.nack_buffer import make_rtx_packet, parse_rtx_packet
from relay.rtp.rtcp import Nack, parse_compound

N = 80
UP_LOSS = {5, 17, 18, 40}  # dropped between publisher and relay (first transmission only)
DOWN_LOSS = {10, 33, 60, 61, 62}  # dropped between relay and subscriber
NEVER_SENT = N + 500


class Publisher:
    """Sends VP8 packets and answers NACKs with RTX (RFC 4588), as a WebRTC sender does."""

    def __init__(self, loop, peer, target) -> None:
        self.peer, self.target, self.loop = peer, target, loop
        self.sent: dict[int, bytes] = {}
        self.rtx_seq = 1000
        self.nacked: list[int] = []
        loop.add_reader(peer.sock.fileno(), self._on_readable)

    def send(self, seq: int) -> None:
        packet = video_packet(seq, key=seq == 1)
        self.sent[seq] = packet
        self.peer.send(packet, self.target)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.peer.sock.recv(4096)
            except BlockingIOError:
                return
            if not is_rtcp(data):
                continue
            for packet in parse_compound(data).packets:
                if isinstance(packet, Nack) and packet.media_ssrc == PRODUCER_SSRC:
                    for seq in packet.lost:
                        self.nacked.append(seq)
                        if seq in self.sent:
                            rtx = make_rtx_packet(self.sent[seq], PRODUCER_RTX_SSRC, 97, self.rtx_seq)
                            self.rtx_seq += 1
                            self.peer.send(rtx, self.target)

    def close(self) -> None:
        self.loop.remove_reader(self.peer.sock.fileno())


class Subscriber:
    def __init__(self, peer) -> None:
        self.peer = peer
        self.media: dict[int, bytes] = {}  # output seq -> packet (originals and repairs)
        self.rtx: list[bytes] = []
        self.plain_resends = 0

    def poll(self) -> None:
        while True:
            try:
                data = self.peer.sock.recv(4096)
            except BlockingIOError:
                return
            if is_rtcp(data):
                continue
            seq, ssrc = rtp_seq_ssrc(data)
            if ssrc == CONSUMER_RTX_SSRC:
                assert data[1] & 0x7F == CONSUMER_RTX_PT
                self.rtx.append(data)
                data = parse_rtx_packet(data, 101, CONSUMER_SSRC)
                seq, ssrc = rtp_seq_ssrc(data)
            assert ssrc == CONSUMER_SSRC
            if seq in self.media:
                self.plain_resends += 1
            self.media[seq] = data


@pytest.mark.parametrize("consumer_rtx", [True, False], ids=["rtx", "plain-resend"])
def test_loss_on_both_legs_is_repaired(run_media, consumer_rtx):
    async def body(media):
        loop = asyncio.get_running_loop()
        media.router()
        tp = media.transport("tp")
        tc = media.transport("tc")
        publisher_peer, subscriber_peer = media.peer(), media.peer()
        relay_in = (tp["tuple"]["localIp"], tp["tuple"]["localPort"])
        relay_out = (tc["tuple"]["localIp"], tc["tuple"]["localPort"])

        def upstream_loss(p: bytes) -> bool:
            return not is_rtcp(p) and rtp_seq_ssrc(p)[1] == PRODUCER_SSRC and rtp_seq_ssrc(p)[0] in UP_LOSS

        def downstream_loss(p: bytes) -> bool:
            return not is_rtcp(p) and rtp_seq_ssrc(p)[1] == CONSUMER_SSRC and rtp_seq_ssrc(p)[0] in DOWN_LOSS

        up = LossyProxy(loop, ("127.0.0.1", publisher_peer.port), relay_in, drop_up=once(upstream_loss))
        down = LossyProxy(loop, ("127.0.0.1", subscriber_peer.port), relay_out,
                          drop_down=once(downstream_loss))
        media.request("tp", "transport.connect", {"ip": "127.0.0.1", "port": up.inner_address[1]})
        media.request("tc", "transport.connect", {"ip": "127.0.0.1", "port": down.inner_address[1]})
        produce_video(media, "tp")
        consume_video(media, "tc", rtx=consumer_rtx)
        publisher = Publisher(loop, publisher_peer, up.outer_address)
        subscriber = Subscriber(subscriber_peer)
        try:
            for seq in range(1, N + 1):
                publisher.send(seq)
                if seq % 8 == 0:
                    await asyncio.sleep(0.001)
            # Upstream losses are repaired before they reach anyone: everything but the
            # downstream losses arrives.
            expected_first = set(range(1, N + 1)) - DOWN_LOSS

            def first_pass() -> bool:
                subscriber.poll()
                return set(subscriber.media) >= expected_first

            await media.wait_for(first_pass)
            assert set(subscriber.media) == expected_first
            assert sorted(set(publisher.nacked)) == sorted(UP_LOSS)
            # The subscriber NACKs what it misses (plus one number never sent).
            lost = sorted(DOWN_LOSS) + [NEVER_SENT]
            subscriber_peer.send(Nack(99, CONSUMER_SSRC, lost).serialize(), down.outer_address)

            def repaired() -> bool:
                subscriber.poll()
                return set(subscriber.media) == set(range(1, N + 1))

            await media.wait_for(repaired)
        finally:
            publisher.close()
            up.close()
            down.close()

        # Every packet, original or repaired, is the publisher's with the consumer's header.
        for seq, packet in subscriber.media.items():
            original = publisher.sent[seq]
            b1, out_seq, ts, ssrc = struct.unpack_from("!BHII", packet, 1)
            assert (b1 & 0x7F, out_seq, ts, ssrc) == (101, seq, seq * 3000, CONSUMER_SSRC)
            assert packet[12:] == original[12:]
        assert len(up.dropped_up) == len(UP_LOSS)
        assert len(down.dropped_down) == len(DOWN_LOSS)
        if consumer_rtx:
            assert len(subscriber.rtx) == len(DOWN_LOSS)
            assert subscriber.plain_resends == 0
        else:
            assert subscriber.rtx == []

        producer = media.request("p1", "producer.getStats")[0]
        assert producer["rtxPacketsReceived"] == len(UP_LOSS)
        assert producer["packetsRecovered"] == len(UP_LOSS)
        assert producer["packetsLost"] == 0  # after repair
        assert producer["packetsReceived"] == N
        assert producer["nackCount"] >= len(UP_LOSS)
        assert producer["nackPacketsSent"] >= 1
        consumer = media.request("c1", "consumer.getStats")[0]
        assert consumer["packetCount"] == N
        assert consumer["retransmittedPackets"] == len(DOWN_LOSS)
        assert consumer["nackCount"] == 1
        assert consumer["nackPacketCount"] == len(DOWN_LOSS) + 1
        assert consumer["nackMisses"] == 1  # the number never sent
        assert consumer["rtxSsrc"] == (CONSUMER_RTX_SSRC if consumer_rtx else None)
        assert media.request("tc", "transport.getStats")[0]["nackPacketsReceived"] == 1

    run_media(body)


def test_nack_without_negotiated_nack_is_counted_not_answered(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce_video(media, "tp", nack=False, rtx=False)
        consume_video(media, "tc", nack=False, rtx=False)
        for seq in range(1, 11):
            if seq != 4:  # lost upstream: no NACK (the producer did not negotiate it)
                publisher.send(video_packet(seq, key=seq == 1), tp["tuple"])

        def got_all() -> bool:
            return len([p for p in subscriber.drain() if not is_rtcp(p)]) == 9

        await media.wait_for(got_all)
        subscriber.send(Nack(1, CONSUMER_SSRC, [2, 3]).serialize(), tc["tuple"])
        await media.wait_for(
            lambda: media.request("c1", "consumer.getStats")[0]["nackMisses"] == 2)
        await media.settle()
        assert [p for p in subscriber.drain() if not is_rtcp(p)][9:] == []
        assert [p for p in publisher.drain() if is_rtcp(p) and p[1] == 205] == []  # no NACK upstream
        stats = media.request("p1", "producer.getStats")[0]
        assert stats["packetsLost"] == 1 and stats["retransmissionStore"] is None

    run_media(body)
