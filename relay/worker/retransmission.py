"""Answering a consumer's NACK from its producer stream's shared retransmission store.

The store (`StreamReceiver.store`) holds each inbound packet once, as received, keyed by its
*input* sequence number. A consumer's output sequence numbers are the input ones plus a fixed
offset since its last (re)start (`RtpRewriter.sync`), so output seq S maps back to input seq
S - seq_offset for every packet sent since then; a NACK for a packet from before the last
restart can't be mapped and is counted as missing. On a hit the stored packet is copied and
rewritten exactly as the fan-out loop did (extension ids, PT, seq, timestamp, SSRC), then
wrapped as RTX (RFC 4588: the consumer's RTX SSRC and `apt` payload type, its own sequence
numbers) when the consumer negotiated RTX, else resent as is. Control path: one copy per
retransmitted packet, none on the forwarding path.

Resends are limited per consumer and packet (issue 16), so a congested receiver that NACKs
what it lost again and again is not answered with ever more traffic:

- at most once per round-trip time of that consumer (its RTT from RR blocks; DEFAULT_RTT
  while none is known): a resend younger than one RTT may still be on its way, and resending
  it again only adds to the queue that dropped it (mediasoup `RtpStreamSend`: it ignores a
  request for a packet resent within the last RTT, 100 ms `DefaultRtt` when unknown);
- at most MAX_RESENDS times in all: a WebRTC receiver NACKs one packet at most 10 times
  (libwebrtc `NackRequester` and mediasoup `NackGenerator`: `MaxNackRetries` 10) and then
  asks for a key frame, so an 11th resend answers no well-behaved receiver.

What is refused is counted (`Consumer.nack_suppressed`, stats `nackSuppressed`). The
bookkeeping (`ResendHistory`) is a per-consumer table keyed by output sequence number, the
size of the retransmission store rounded up to a power of two, allocated at the consumer's
first NACK and touched only here. `resend_verdict` is the one place that decides.
"""

from __future__ import annotations

from array import array
from enum import IntEnum
from typing import TYPE_CHECKING

from relay.rtp.nack_buffer import (
    AUDIO_CAPACITY,
    AUDIO_MAX_AGE,
    VIDEO_CAPACITY,
    VIDEO_MAX_AGE,
    RtpHeaderError,
)
from relay.rtp.packet import (
    RTP_B1_SEQ_TS_SSRC,
    extension_bounds,
    rewrite_extension_ids,
    rtp_payload_offset,
)
from relay.rtp.rewriter import NO_PAYLOAD_TYPE
from relay.rtp.transport_cc import extension_value_offset

if TYPE_CHECKING:
    from relay.uring import SendRing
    from relay.worker.consumer import Consumer

_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into

DEFAULT_RTT = 0.1  # seconds: the resend window while a consumer's RTT is unknown (or 0)
MAX_RESENDS = 10  # resends of one packet to one consumer, in all


class ResendHistory:
    """When each recently resent output seq of one consumer was last resent, and how often.

    Slot `seq % size` holds one seq; `size` is a power of two at least the store's capacity,
    so two seqs the store can both still hold never share a slot (65536 is a multiple of it,
    so this holds across the 16-bit wrap too). An entry whose last resend is older than the
    store's max age describes a packet the store no longer serves (or an older packet with
    the same 16-bit number): it reads as never resent.
    """

    __slots__ = ("_mask", "_max_age", "_seqs", "_times", "_counts")

    def __init__(self, capacity: int, max_age: float) -> None:
        size = 1 << max(0, capacity - 1).bit_length()
        self._mask = size - 1
        self._max_age = max_age
        self._seqs = array("H", bytes(2 * size))
        self._times = array("d", bytes(8 * size))
        self._counts = bytearray(size)  # 0: empty slot (MAX_RESENDS fits a byte)

    @classmethod
    def for_kind(cls, kind: str) -> ResendHistory:
        if kind == "video":
            return cls(VIDEO_CAPACITY, VIDEO_MAX_AGE)
        return cls(AUDIO_CAPACITY, AUDIO_MAX_AGE)

    @property
    def size(self) -> int:
        return self._mask + 1

    def lookup(self, seq: int, now: float) -> tuple[int, float]:
        """(times resent, time of the last resend) of output `seq`; (0, 0.0) if never."""
        slot = seq & self._mask
        count = self._counts[slot]
        if count == 0 or self._seqs[slot] != seq & 0xFFFF:
            return 0, 0.0
        last = self._times[slot]
        if now - last > self._max_age:
            return 0, 0.0
        return count, last

    def record(self, seq: int, now: float, count: int) -> None:
        """Output `seq` was resent at `now`, its `count`-th time."""
        slot = seq & self._mask
        self._seqs[slot] = seq & 0xFFFF
        self._times[slot] = now
        self._counts[slot] = min(count, 255)


KEY_FRAME_INTERVAL = 1.0  # seconds: at most one congestion key-frame request per consumer


class Verdict(IntEnum):
    """What to do with one NACKed packet."""

    RESEND = 0
    TOO_SOON = 1  # resent less than one RTT ago: that resend may still be on its way
    TOO_OFTEN = 2  # resent MAX_RESENDS times already
    KEY_FRAME = 3  # the path is full: a key frame repairs the loss without adding to it


def resend_verdict(consumer: Consumer, count: int, last: float, now: float) -> Verdict:
    """Whether `consumer` gets a packet again that it NACKed at `now`, having been resent
    `count` times, the last at `last`. The one place that decides, given the consumer's
    state: at most once per RTT and MAX_RESENDS times; and for video, not while its
    transport already sends more than the send-side estimate says the path carries (the
    estimate comes from the remote's feedback): a resend would feed the congestion that
    lost the packet, so a key frame is asked for instead (`retransmit`)."""
    if count >= MAX_RESENDS:
        return Verdict.TOO_OFTEN
    if count and now - last <= (consumer.rtt or DEFAULT_RTT):
        return Verdict.TOO_SOON
    if consumer.kind == "video" and _over_estimate(consumer):
        return Verdict.KEY_FRAME
    return Verdict.RESEND


def _over_estimate(consumer: Consumer) -> bool:
    estimation = consumer.transport.send_estimation
    if estimation is None or not (estimation.feedback_received or estimation.remb_received):
        return False  # no word from the remote: no estimate to go by
    sending = sum(c.bitrate for c in consumer.transport.consumers.values())
    return sending > estimation.available_bitrate


def rebuild_packet(consumer: Consumer, out_seq: int, now: float) -> bytearray | None:
    """The packet `consumer` sent as `out_seq`, rebuilt from the store; None if it can't be."""
    rw = consumer.rewriter
    if rw.sync_required:
        return None  # not running: its offsets say nothing about what it sent
    receiver = consumer.producer.receivers[consumer.stream_index]
    store = receiver.store
    if store is None:
        return None
    mapped = rw.input_seq(out_seq)  # across temporal-layer skips, which moved the offset
    if mapped is None:
        return None
    in_seq = mapped
    if (in_seq - rw.sync_seq) & 0xFFFF >= 0x8000:
        return None  # before the last restart
    stored = store.get(in_seq, now)
    if stored is None:
        return None
    pt = rw.payload_types[stored[1] & 0x7F]
    if pt == NO_PAYLOAD_TYPE:
        return None
    packet = bytearray(stored)
    n = len(packet)
    if packet[0] & 0x10:
        profile, start, end = extension_bounds(packet, n)
        if not rewrite_extension_ids(packet, start, end, profile, consumer.extension_table):
            return None
    ts = int.from_bytes(stored[4:8], "big")
    _pack_header(
        packet, 1, (stored[1] & 0x80) | pt, out_seq & 0xFFFF, (ts + rw.ts_offset) & 0xFFFFFFFF,
        rw.ssrc,
    )
    if consumer.vp8 is not None:  # the PictureID it had when sent (same offsets)
        consumer.vp8.rewrite(packet, rtp_payload_offset(packet, n), n, update=False)
    history = consumer.tcc_history
    if history is not None and consumer.tcc_id:
        # A resend is a new packet on the wire: it gets its own transport-wide number (the
        # stored one is the sender's, or an earlier send's).
        offset = extension_value_offset(packet, n, consumer.tcc_id, 2)
        if offset > 0:
            wide = history.record_next(now, n)
            packet[offset] = wide >> 8
            packet[offset + 1] = wide & 0xFF
    return packet


def retransmit(consumer: Consumer, lost: list[int], now: float, ring: SendRing) -> int:
    """Resend what can be resent of `lost` (output seqs) to the consumer's remote; returns
    the number sent. Refusals (`resend_verdict`) are counted on the consumer
    (`nack_suppressed`), before the store is looked at; misses too (`nack_misses`)."""
    history = consumer.resend_history
    if history is None:
        history = consumer.resend_history = ResendHistory.for_kind(consumer.kind)
    sent = 0
    key_frame_wanted = False
    for out_seq in lost:
        count, last = history.lookup(out_seq, now)
        verdict = resend_verdict(consumer, count, last, now)
        if verdict is not Verdict.RESEND:
            consumer.nack_suppressed += 1
            if verdict is Verdict.KEY_FRAME:
                key_frame_wanted = True
            continue
        packet = rebuild_packet(consumer, out_seq, now)
        if packet is None or consumer.addr is None:
            consumer.nack_misses += 1
            continue
        data: bytes | bytearray = packet
        rtx = consumer.rtx
        if rtx is not None:
            try:
                data = rtx.wrap(packet)
            except RtpHeaderError:
                consumer.nack_misses += 1
                continue
        n = len(data)
        if consumer.srtp is not None:
            protected = consumer.srtp.protect_rtp(data, n)
            if protected is None:
                consumer.nack_misses += 1
                continue
            data = protected
        # consumer.send: the ring's send, or a copy send on ICE-TCP (issue 4).
        if consumer.send(consumer.fd, data, consumer.addr):
            history.record(out_seq, now, count + 1)
            sent += 1
            consumer.retransmitted_packets += 1
            consumer.retransmitted_bytes += n
        else:
            consumer.ring_drops += 1
    if sent:
        ring.flush_soon()
    if key_frame_wanted and now - consumer.congestion_key_frame_at >= KEY_FRAME_INTERVAL:
        consumer.congestion_key_frame_at = now
        consumer.congestion_key_frames += 1
        consumer.request_key_frame()
    return sent
