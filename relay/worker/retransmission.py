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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.rtp.nack_buffer import RtpHeaderError
from relay.rtp.packet import (
    RTP_B1_SEQ_TS_SSRC,
    extension_bounds,
    rewrite_extension_ids,
)
from relay.rtp.rewriter import NO_PAYLOAD_TYPE

if TYPE_CHECKING:
    from relay.uring import SendRing
    from relay.worker.consumer import Consumer

_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into


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
    return packet


def retransmit(consumer: Consumer, lost: list[int], now: float, ring: SendRing) -> int:
    """Resend what can be resent of `lost` (output seqs) to the consumer's remote; returns
    the number sent. Misses are counted on the consumer (`nack_misses`)."""
    sent = 0
    for out_seq in lost:
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
            sent += 1
            consumer.retransmitted_packets += 1
            consumer.retransmitted_bytes += n
        else:
            consumer.ring_drops += 1
    if sent:
        ring.flush()
    return sent
