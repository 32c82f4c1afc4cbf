"""Resend limits (issue 16): a subscriber that NACKs the same packets again and again gets
each at most once per round-trip time (its RTT measured from its RR blocks, 100 ms while
none is known) and at most MAX_RESENDS times in all; what is refused is counted
(`nackSuppressed`), and `retransmissionShare` is the retransmitted share of the bytes sent
over the last report interval. Packet level: real UDP sockets, the worker in process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from lossy_proxy import is_rtcp, rtp_seq_ssrc
from quality_peers import (
    CONSUMER_RTX_SSRC,
    CONSUMER_SSRC,
    consume_video,
    produce_video,
    video_packet,
)

from relay.rtp.nack_buffer import parse_rtx_packet
from relay.rtp.receive_stats import compact_ntp
from relay.rtp.rtcp import Nack, ReceiverReport, ReportBlock, SenderReport, parse_compound
from relay.worker.retransmission import MAX_RESENDS

N = 30  # packets published (all delivered: the losses are only claimed, by the NACKs)
SUBSCRIBER_SSRC = 99
DEFAULT_RTT = 0.1  # the window while the consumer has no RTT (issue 16, as mediasoup)
MARGIN = 0.03  # waits past a window end; the relay's clock can only be behind ours


class Subscriber:
    """Receives the consumer's stream; counts repairs (RTX or plain duplicates) per seq."""

    def __init__(self, peer) -> None:
        self.peer = peer
        self.media: dict[int, bytes] = {}
        self.resends: Counter[int] = Counter()
        self.media_bytes = 0
        self.resend_bytes = 0
        self.sender_reports: list[SenderReport] = []

    def poll(self) -> None:
        while True:
            try:
                data = self.peer.sock.recv(4096)
            except BlockingIOError:
                return
            if is_rtcp(data):
                self.sender_reports += [p for p in parse_compound(data).packets
                                        if isinstance(p, SenderReport)]
                continue
            seq, ssrc = rtp_seq_ssrc(data)
            is_rtx = ssrc == CONSUMER_RTX_SSRC
            if is_rtx:
                seq, ssrc = rtp_seq_ssrc(parse_rtx_packet(data, 101, CONSUMER_SSRC))
            assert ssrc == CONSUMER_SSRC
            if is_rtx or seq in self.media:
                self.resends[seq] += 1
                self.resend_bytes += len(data)
            else:
                self.media[seq] = data
                self.media_bytes += len(data)


class Session:
    """One publisher and one subscriber of a VP8 stream with NACK (and RTX unless told)."""

    def __init__(self, media, rtx: bool = True) -> None:
        self.media = media
        self.tp, self.tc, self.publisher, peer = media.publish_subscribe()
        produce_video(media, "tp")
        consume_video(media, "tc", rtx=rtx)
        self.subscriber = Subscriber(peer)
        self.next_seq = 1

    async def publish(self, count: int) -> None:
        first = self.next_seq
        for seq in range(first, first + count):
            self.publisher.send(video_packet(seq, key=seq == 1), self.tp["tuple"])
        self.next_seq += count
        await self.until(lambda: len(self.subscriber.media) == self.next_seq - 1)

    async def until(self, condition, timeout: float = 3.0) -> float:
        """Poll the subscriber until `condition()`; the time it was seen to hold."""

        def check() -> bool:
            self.subscriber.poll()
            return condition()

        await self.media.wait_for(check, timeout)
        return time.monotonic()

    def nack(self, lost: list[int], copies: int = 1) -> None:
        """`copies` NACK packets for `lost` in one compound (handled at one instant)."""
        compound = Nack(SUBSCRIBER_SSRC, CONSUMER_SSRC, lost).serialize() * copies
        self.subscriber.peer.send(compound, self.tc["tuple"])

    async def nack_and_wait(self, lost: list[int], expect_resends: int) -> float:
        """NACK `lost` and wait until each was resent `expect_resends` times in all (or
        more: the caller checks)."""
        self.nack(lost)
        return await self.until(lambda: all(self.subscriber.resends[s] >= expect_resends
                                            for s in lost))

    def stats(self) -> dict:
        return self.media.request("c1", "consumer.getStats")[0]

    async def measure_rtt(self, delay: float) -> float:
        """The relay's RTT to the subscriber, from a real SR -> RR exchange: the subscriber
        answers the relay's SR after `delay` seconds and reports no processing delay
        (DLSR 0), as a receiver behind a `delay` path would look."""
        self.media.ctx.handlers["tc"].rtcp_reporter.send_reports(include_audio=True)
        await self.until(lambda: bool(self.subscriber.sender_reports))
        sr = self.subscriber.sender_reports[-1]
        await asyncio.sleep(delay)
        block = ReportBlock(CONSUMER_SSRC, highest_sequence=self.next_seq - 1,
                            lsr=compact_ntp(sr.ntp_timestamp), dlsr=0)
        self.subscriber.peer.send(ReceiverReport(SUBSCRIBER_SSRC, [block]).serialize(),
                                  self.tc["tuple"])
        await self.media.wait_for(lambda: self.stats()["roundTripTime"] is not None)
        return self.stats()["roundTripTime"]


@pytest.mark.parametrize("rtx", [True, False], ids=["rtx", "plain-resend"])
def test_default_window_is_100_ms(run_media, rtx):
    """No RTT known: NACKs repeated within 100 ms of a resend are refused, one later is
    answered."""

    async def body(media):
        s = Session(media, rtx=rtx)
        await s.publish(N)
        lost = [3, 7, 11]
        # Three NACKs for the same packets in one compound: one instant, one resend each.
        s.nack(lost, copies=3)
        resent_at = await s.until(lambda: all(s.subscriber.resends[q] >= 1 for q in lost))
        await media.settle()
        s.subscriber.poll()
        assert s.subscriber.resends == Counter(lost)
        stats = s.stats()
        assert stats["roundTripTime"] is None
        assert stats["nackCount"] == 3
        assert stats["nackPacketCount"] == 9
        assert stats["retransmittedPackets"] == 3
        assert stats["nackSuppressed"] == 6
        assert stats["nackMisses"] == 0
        # One window later they are resent again.
        await asyncio.sleep(max(0.0, resent_at + DEFAULT_RTT + MARGIN - time.monotonic()))
        await s.nack_and_wait(lost, 2)
        await media.settle()
        s.subscriber.poll()
        assert s.subscriber.resends == Counter(lost * 2)
        stats = s.stats()
        assert stats["retransmittedPackets"] == 6
        assert stats["retransmittedBytes"] == s.subscriber.resend_bytes
        assert stats["nackSuppressed"] == 6
        assert stats["packetCount"] == N

    run_media(body)


def test_window_is_the_rtt_from_receiver_reports(run_media):
    """RTT ~0.4 s from the subscriber's RR: a NACK 0.15 s after a resend (past the 100 ms
    default) is refused, one after the RTT is answered."""

    async def body(media):
        s = Session(media)
        await s.publish(N)
        rtt = await s.measure_rtt(0.4)
        assert 0.4 <= rtt < 0.6
        lost = [4, 5, 20]
        started = time.monotonic()  # before the resend: the relay resends after this
        resent_at = await s.nack_and_wait(lost, 1)
        await asyncio.sleep(0.15)
        s.nack(lost)
        refused_by = await s.until(lambda: s.stats()["nackCount"] == 2)
        assert refused_by - started < rtt  # the NACK really came within one RTT
        await media.settle()
        s.subscriber.poll()
        assert s.subscriber.resends == Counter(lost)
        assert s.stats()["nackSuppressed"] == 3
        await asyncio.sleep(max(0.0, resent_at + rtt + MARGIN - time.monotonic()))
        await s.nack_and_wait(lost, 2)
        await media.settle()
        s.subscriber.poll()
        assert s.subscriber.resends == Counter(lost * 2)
        stats = s.stats()
        assert stats["nackCount"] == 3
        assert stats["retransmittedPackets"] == 6
        assert stats["nackSuppressed"] == 3
        assert stats["nackMisses"] == 0

    run_media(body)


def test_at_most_max_resends_in_all(run_media):
    """A packet NACKed once per RTT for ever is resent MAX_RESENDS times, then refused."""

    async def body(media):
        s = Session(media)
        await s.publish(N)
        rtt = await s.measure_rtt(0.02)
        assert 0.02 <= rtt < 0.2
        lost = [9]
        for n in range(1, MAX_RESENDS + 1):
            resent_at = await s.nack_and_wait(lost, n)
            await asyncio.sleep(max(0.0, resent_at + rtt + MARGIN - time.monotonic()))
        for n in range(1, 4):
            s.nack(lost)
            await s.until(lambda n=n: s.stats()["nackCount"] == MAX_RESENDS + n)
            await asyncio.sleep(rtt + MARGIN)
        s.subscriber.poll()
        assert s.subscriber.resends == Counter({9: MAX_RESENDS})
        stats = s.stats()
        assert stats["nackCount"] == MAX_RESENDS + 3
        assert stats["retransmittedPackets"] == MAX_RESENDS
        assert stats["nackSuppressed"] == 3
        assert stats["nackMisses"] == 0

    run_media(body)


def test_nack_flood_gets_one_resend_per_window(run_media):
    """A congested subscriber NACKing the same packets every 5 ms gets each at most once per
    100 ms; every requested number is accounted for."""

    async def body(media):
        s = Session(media)
        await s.publish(N)
        lost = [2, 6, 10, 14, 18]
        started = time.monotonic()
        nacks = 0
        while time.monotonic() - started < 0.35:
            s.nack(lost)
            nacks += 1
            await asyncio.sleep(0.005)
        ended = await s.until(lambda: s.stats()["nackCount"] == nacks)
        await media.settle()
        s.subscriber.poll()
        # Resends of one packet are more than 100 ms apart on the relay's clock, and all
        # fall between `started` and `ended`.
        most = int((ended - started) / DEFAULT_RTT) + 1
        assert all(1 <= s.subscriber.resends[q] <= most for q in lost), s.subscriber.resends
        stats = s.stats()
        resent = sum(s.subscriber.resends.values())
        assert stats["retransmittedPackets"] == resent
        assert stats["nackPacketCount"] == nacks * len(lost)
        assert stats["nackSuppressed"] == nacks * len(lost) - resent
        assert stats["nackMisses"] == 0

    run_media(body)


def test_retransmission_share_of_the_last_report_interval(run_media):
    """`retransmissionShare` = retransmitted bytes / all bytes sent, over the interval that
    ends at the consumer's latest report: measured against what the subscriber received."""

    async def body(media):
        s = Session(media)
        reporter = media.ctx.handlers["tc"].rtcp_reporter
        reporter.close()  # the test sends the reports: it decides the intervals
        await s.publish(N)
        reporter.send_reports(include_audio=True)  # interval 1 ends: media only
        assert s.stats()["retransmissionShare"] == 0.0
        media_before, resend_before = s.subscriber.media_bytes, s.subscriber.resend_bytes
        await s.publish(10)
        await s.nack_and_wait([N + 1, N + 2, N + 5], 1)
        reporter.send_reports(include_audio=True)  # interval 2: 10 packets, 3 resent
        media_bytes = s.subscriber.media_bytes - media_before
        resend_bytes = s.subscriber.resend_bytes - resend_before
        stats = s.stats()
        assert stats["retransmissionShare"] == resend_bytes / (media_bytes + resend_bytes)
        assert 0.2 < stats["retransmissionShare"] < 0.3
        await s.publish(5)
        reporter.send_reports(include_audio=True)  # interval 3: media only again
        assert s.stats()["retransmissionShare"] == 0.0
        assert s.stats()["retransmittedBytes"] == s.subscriber.resend_bytes

    run_media(body)
