"""RTP stream statistics for RTCP reports (RFC 3550 6.4 and appendix A).

Sans-I/O: callers pass the arrival time ``now`` in seconds on a monotonic clock (for
example ``loop.time()``) and, where a wall clock is needed (SR), a 64-bit NTP timestamp.

- :class:`ReceiveStats`: one incoming stream (a producer's): extended highest sequence,
  cumulative loss, fraction lost since the last report, interarrival jitter, LSR/DLSR, and
  the RR report block built from them.
- :class:`SendStats`: one outgoing stream (a consumer's): packet and octet counters for
  its SR.
- :func:`rtt_from_report_block`: the round-trip time from a report block that answers one
  of our SRs (RFC 3550 6.4.1); :func:`rtt_from_dlrr` the same from an XR DLRR sub-block
  answering one of our RRTRs (RFC 3611 4.5).
- :class:`NtpRtpMapping`: the NTP <-> RTP timestamp pair of a producer's SR, used to give
  a consumer's SR an RTP timestamp consistent with the media it forwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from relay.rtp.rtcp import ReportBlock, SenderReport

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # RFC 3550 A.1: a forward jump larger than this is suspicious
MAX_MISORDER = 100  # RFC 3550 A.1: a backward step larger than this is suspicious
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time."""
    return int(round((seconds + NTP_EPOCH_OFFSET) * (1 << 32))) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    """The Unix time of a 64-bit NTP timestamp."""
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def ntp_now() -> int:
    """The current wall-clock time as a 64-bit NTP timestamp."""
    return ntp_from_unix(time.time())


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (16.16 fixed point), as LSR uses."""
    return (ntp >> 16) & 0xFFFFFFFF


class ReceiveStats:
    """Receiver statistics of one incoming RTP stream (RFC 3550 A.1, A.3, A.8).

    The sequence tracking is appendix A.1's ``update_seq`` without probation (the first
    packet is counted): a jump of more than ``MAX_DROPOUT`` ahead or ``MAX_MISORDER``
    behind is dropped (not counted) unless the next packet follows it, in which case the
    sender is taken to have restarted and statistics start over from there.

    Jitter (A.8) is kept in RTP timestamp units of ``clock_rate`` and updated only for
    in-order packets that are not retransmissions (a retransmission's transit time says
    nothing about the network's jitter), as libwebrtc does.
    """

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self._started = False
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0  # shifted count of sequence number cycles
        self.bad_seq = RTP_SEQ_MOD + 1
        self.received = 0  # packets counted (including retransmissions and duplicates)
        self.bytes_received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_transit: float | None = None
        self.restarts = 0
        self.dropped_out_of_range = 0
        self._lsr = 0
        self._sr_arrival: float | None = None
        self.last_sr: SenderReport | None = None

    # -- packets ---------------------------------------------------------------
    def on_packet(
        self,
        seq: int,
        rtp_timestamp: int,
        now: float,
        size: int = 0,
        retransmission: bool = False,
    ) -> bool:
        """Account one received packet; ``now`` is its arrival time in seconds. Returns
        False if the packet was not counted (a suspicious jump, see the class doc)."""
        seq &= 0xFFFF
        if self._started:
            # Fast path (the common case: the next packet, or a small forward gap).
            max_seq = self.max_seq
            udelta = (seq - max_seq) & 0xFFFF
            if 0 < udelta < MAX_DROPOUT:
                if seq < max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
                if not retransmission:
                    transit = now * self.clock_rate - rtp_timestamp
                    last = self._last_transit
                    if last is not None:
                        d = transit - last
                        if d < 0:
                            d = -d
                        if d >= 1 << 31:  # RTP timestamps wrap at 2**32
                            d = abs((d + (1 << 31)) % (1 << 32) - (1 << 31))
                        self._jitter += (d - self._jitter) / 16
                    self._last_transit = transit
                self.received += 1
                self.bytes_received += size
                return True
        if not self._started:
            self._init_seq(seq)
            self._started = True
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self.max_seq:  # wrapped around
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
                in_order = udelta != 0
            elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
                # A very large jump: accept it only if the next packet follows it.
                if seq == self.bad_seq:
                    self._init_seq(seq)
                    self.restarts += 1
                    in_order = True
                else:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    self.dropped_out_of_range += 1
                    return False
            else:
                in_order = False  # duplicate or reordered
            if in_order and not retransmission:
                self._update_jitter(rtp_timestamp, now)
            self.received += 1
            self.bytes_received += size
            return True
        if not retransmission:
            self._update_jitter(rtp_timestamp, now)
        self.received += 1
        self.bytes_received += size
        return True

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_transit = None

    def _update_jitter(self, rtp_timestamp: int, now: float) -> None:
        transit = now * self.clock_rate - rtp_timestamp
        if self._last_transit is not None:
            d = transit - self._last_transit
            d = (d + (1 << 31)) % (1 << 32) - (1 << 31)  # RTP timestamps wrap at 2**32
            self._jitter += (abs(d) - self._jitter) / 16
        self._last_transit = transit

    # -- derived values ----------------------------------------------------------
    @property
    def extended_highest_sequence(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_highest_sequence - self.base_seq + 1 if self._started else 0

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received; negative when duplicates outnumber losses (RFC 3550)."""
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        """Interarrival jitter in RTP timestamp units."""
        return int(self._jitter)

    @property
    def jitter_seconds(self) -> float:
        return self._jitter / self.clock_rate

    # -- sender reports ------------------------------------------------------------
    def on_sender_report(self, sr: SenderReport, now: float) -> None:
        """Remember the last SR of this stream (for LSR/DLSR and the NTP<->RTP mapping)."""
        self.last_sr = sr
        self._lsr = compact_ntp(sr.ntp_timestamp)
        self._sr_arrival = now

    def mapping(self) -> NtpRtpMapping | None:
        """The NTP <-> RTP timestamp mapping of the last SR, if any."""
        if self.last_sr is None:
            return None
        return NtpRtpMapping(
            self.last_sr.ntp_timestamp, self.last_sr.rtp_timestamp, self.clock_rate
        )

    # -- reports ---------------------------------------------------------------------
    def report_block(self, ssrc: int, now: float) -> ReportBlock:
        """Build the report block for this stream (source ``ssrc``) and start a new report
        interval: ``fraction_lost`` covers the packets since the previous call (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self._sr_arrival is not None:
            dlsr = max(0, int((now - self._sr_arrival) * 65536)) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=self.cumulative_lost,
            highest_sequence=self.extended_highest_sequence & 0xFFFFFFFF,
            jitter=self.jitter,
            lsr=self._lsr,
            dlsr=dlsr,
        )


def rtt_from_report_block(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds from a report block about one of our streams, received
    at wall-clock ``arrival_ntp`` (64-bit NTP): A - LSR - DLSR (RFC 3550 6.4.1).

    None when the block answers no SR of ours (LSR 0). A negative result (clock steps,
    bogus reports) is returned as 0.0.
    """
    if block.lsr == 0:
        return None
    rtt = (compact_ntp(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt & 0x80000000:
        return 0.0
    return rtt / 65536


def rtt_from_dlrr(lrr: int, dlrr: int, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds from a DLRR sub-block (RFC 3611 4.5) answering one of our
    RRTRs, received at wall-clock ``arrival_ntp``: A - LRR - DLRR, the same 1/65536 s
    arithmetic as for SRs. None when it answers no RRTR (LRR 0); negative gives 0.0."""
    if lrr == 0:
        return None
    rtt = (compact_ntp(arrival_ntp) - lrr - dlrr) & 0xFFFFFFFF
    if rtt & 0x80000000:
        return 0.0
    return rtt / 65536


class SendStats:
    """Counters of one outgoing RTP stream for its SR (RFC 3550 6.4.1): packets sent and
    payload octets sent (RTP header and padding excluded)."""

    def __init__(self) -> None:
        self.packet_count = 0
        self.octet_count = 0
        self.retransmitted_packets = 0
        self.retransmitted_octets = 0

    def on_packet(self, payload_octets: int, retransmission: bool = False) -> None:
        """Count a sent packet. Retransmissions are counted apart, not in the SR counters
        (the SR counts the original stream)."""
        if retransmission:
            self.retransmitted_packets += 1
            self.retransmitted_octets += payload_octets
        else:
            self.packet_count += 1
            self.octet_count += payload_octets


@dataclass(frozen=True)
class NtpRtpMapping:
    """One SR's (NTP, RTP timestamp) pair and the stream's clock rate.

    A consumer forwarding a producer's stream with a timestamp offset builds its own SR as
    ``rtp_timestamp_at(now_ntp) + offset``: the consumer's NTP<->RTP relation is then the
    producer's, so receivers keep lip sync across streams.
    """

    ntp_timestamp: int
    rtp_timestamp: int
    clock_rate: int

    def rtp_timestamp_at(self, ntp: int) -> int:
        """The RTP timestamp that corresponds to wall-clock ``ntp`` (64-bit NTP)."""
        delta = ntp - self.ntp_timestamp
        if delta >= 0:
            ticks = (delta * self.clock_rate + (1 << 31)) >> 32
        else:
            ticks = -((-delta * self.clock_rate + (1 << 31)) >> 32)
        return (self.rtp_timestamp + ticks) & 0xFFFFFFFF


def build_sender_report(
    ssrc: int,
    ntp: int,
    mapping: NtpRtpMapping,
    stats: SendStats,
    timestamp_offset: int = 0,
    reports: list[ReportBlock] | None = None,
) -> SenderReport:
    """A consumer's SR at wall-clock ``ntp``: RTP timestamp mapped from the producer's SR
    (``mapping``) plus the consumer's ``timestamp_offset``, and the consumer's counters."""
    return SenderReport(
        ssrc=ssrc,
        ntp_timestamp=ntp,
        rtp_timestamp=(mapping.rtp_timestamp_at(ntp) + timestamp_offset) & 0xFFFFFFFF,
        packet_count=stats.packet_count & 0xFFFFFFFF,
        octet_count=stats.octet_count & 0xFFFFFFFF,
        reports=list(reports or []),
    )
