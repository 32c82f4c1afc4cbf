"""The per-packet fan-out: one inbound RTP packet to every active consumer of its stream.

This is the seam the C forwarding core replaces: everything per consumer and per packet
happens here, and nothing else on the packet path is per consumer.

Consumers of a stream are grouped by header-extension id table (usually one group: consumers
get the router's ids) and by the highest VP8 temporal layer they take. Per inbound packet and
group, the packet is copied once into a scratch buffer and its extension ids rewritten once;
then per consumer only bytes 1–11 are rewritten (the consumer's `RtpRewriter` holds the
offsets and the rules; the rewrite itself is written out in the loop, because a method call
per consumer and packet cost +6 % instructions per packet at 10 consumers), SRTP-protected
if its transport has SRTP, and queued in the send ring (or copied to an ICE-TCP connection).
tests/rtp/test_rewriter.py drives this loop, so the rules are tested in the shipped code.
The groups hold only active consumers (not paused, producer not paused, remote known, not
waiting for a key frame) and are rebuilt on every state change (`build_groups`, control
path), so the loop has no checks for those. The transport flushes the ring after its drain.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import RTP_B1_SEQ_TS_SSRC, extension_bounds, rewrite_extension_ids
from relay.rtp.rewriter import NO_PAYLOAD_TYPE
from relay.rtp.transport_cc import extension_value_offset

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into

# (extension id table, the group's consumers, the highest VP8 TID they take: 255 = all,
#  their transport-wide-cc extension id: 0 = none)
Group = tuple[bytes, tuple[Any, ...], int, int]


def build_groups(consumers: list[Consumer], index: int) -> tuple[Group, ...]:
    """The fan-out groups of producer stream `index` (control path)."""
    groups: dict[tuple[bytes, int], list[Consumer]] = {}
    for consumer in consumers:
        if consumer.stream_index == index and consumer.active and not consumer.key_frame_pending:
            # a group either rewrites VP8 PictureIDs (each consumer its own, in the shared
            # copy) or leaves them alone, never both
            key = (consumer.extension_table, consumer.max_tid, consumer.tcc_id,
                   consumer.vp8 is not None)
            groups.setdefault(key, []).append(consumer)
    return tuple((table, tuple(members), max_tid, tcc_id)
                 for (table, max_tid, tcc_id, _), members in groups.items())


def fan_out(
    groups: tuple[Group, ...],
    packet: memoryview,
    n: int,
    ssrc: int,
    seq: int,
    ts: int,
    older: bool,
    tid: int,
    payload_size: int,
    now: float,
    scratch: bytearray,
    scratch_view: memoryview,
    dropped: Counter[str],
) -> int:
    """Send `packet` (n bytes; input ssrc/seq/ts; `older`: not the newest of its stream; `tid`:
    its VP8 temporal layer, 0 if none) to every consumer of `groups`; return the sends
    queued. `payload_size` feeds the consumers' SR octet counts."""
    sends = 0
    b1 = packet[1]
    marker = b1 & 0x80
    pt_in = b1 & 0x7F
    pack_header = _pack_header
    has_extension = packet[0] & 0x10
    out = scratch_view[:n]
    for table, consumers, max_tid, tcc_id in groups:
        if tid > max_tid:
            if not older:  # else its number was already given to a later packet (or never was)
                for consumer in consumers:
                    consumer.on_temporal_drop(seq)
            continue
        out[:] = packet
        if has_extension:
            profile, start, end = extension_bounds(scratch, n)
            if not rewrite_extension_ids(scratch, start, end, profile, table):
                dropped["malformedExtensions"] += 1
                return sends
        # where each consumer's transport-wide sequence number goes (-1: the packet has no
        # such extension, so it goes unnumbered; the fan-out does not grow packets)
        tcc_offset = extension_value_offset(scratch, n, tcc_id, 2) if tcc_id else -1
        for consumer in consumers:
            rw = consumer.rewriter
            if rw.sync_required:
                rw.sync(ssrc, seq, ts, now)
            elif older and (
                (seq - rw.sync_seq) & 0xFFFF >= 0x8000
                # older than a skip that moved the offset: its number is taken
                or (rw.skip_seq >= 0 and (seq - rw.skip_seq) & 0xFFFF >= 0x8000)
            ):
                consumer.dropped += 1
                continue
            pt = rw.payload_types[pt_in]
            if pt == NO_PAYLOAD_TYPE:
                consumer.dropped += 1
                continue
            pack_header(scratch, 1, marker | pt, (seq + rw.seq_offset) & 0xFFFF,
                        (ts + rw.ts_offset) & 0xFFFFFFFF, rw.ssrc)
            vp8 = consumer.vp8
            if vp8 is not None:
                vp8.rewrite(scratch, n - payload_size, n)
            if tcc_offset > 0:
                history = consumer.tcc_history
                if history is not None:
                    # SendHistory.record_next, written out (a call here cost as much again)
                    wide = history.last + 1
                    history.last = wide
                    history.entries[wide & history.mask] = (wide, now, n, None)
                    scratch[tcc_offset] = (wide >> 8) & 0xFF
                    scratch[tcc_offset + 1] = wide & 0xFF
            srtp = consumer.srtp
            if srtp is None:
                data = out
            else:
                data = srtp.protect_rtp(out, n)
                if data is None:
                    consumer.dropped += 1
                    continue
            # consumer.send: the ring's send, or a copy send for an ICE-TCP remote.
            if consumer.send(consumer.fd, data, consumer.addr):
                consumer.packets_sent += 1
                consumer.bytes_sent += n
                consumer.payload_bytes += payload_size
                sends += 1
            else:
                consumer.ring_drops += 1
    return sends
