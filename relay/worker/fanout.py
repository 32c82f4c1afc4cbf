"""The per-packet fan-out: one inbound RTP packet to every active consumer of its stream.

Everything per consumer and per packet happens here, and nothing else on the packet path is
per consumer. Most consumers are sent to by the C core (relay/uring/fanout_core.c, through
`CoreFanout`): one C call per inbound packet does their copies, rewrites, transport-wide
numbers, SRTP and ring sends. `fan_out` below is the same work in Python, for the consumers
the core does not take (`split_groups`) and as the reference the tests compare the core with.

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
path), so the loop has no checks for those. The transport ends its drain with `ring.flush_soon()`
(one submit per event-loop turn).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import RTP_B1_SEQ_TS_SSRC, extension_bounds, rewrite_extension_ids
from relay.rtp.rewriter import NO_PAYLOAD_TYPE, RtpRewriter
from relay.rtp.transport_cc import extension_value_offset
from relay.uring import fanout_core

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into
_core_fan_out = fanout_core.fan_out
_MALFORMED = fanout_core.MALFORMED
_NEEDS_SYNC = fanout_core.NEEDS_SYNC

# (extension id table, the group's consumers, the highest VP8 TID they take: 255 = all,
#  their transport-wide-cc extension id: 0 = none)
Group = tuple[bytes, tuple[Any, ...], int, int]


def split_groups(groups: tuple[Group, ...]) -> tuple[tuple[Group, ...], CoreFanout | None]:
    """(the groups the Python loop sends to, the C core's share of them or None): a consumer
    the core can't take (`Consumer.in_core`: ICE-TCP remote, VP8 PictureID rewriting, the
    core switched off) stays in Python, so behaviour stays complete (control path)."""
    python: list[Group] = []
    core: list[Group] = []
    for table, consumers, max_tid, tcc_id in groups:
        in_core = tuple(c for c in consumers if c.in_core)
        rest = tuple(c for c in consumers if not c.in_core)
        if in_core:
            core.append((table, in_core, max_tid, tcc_id))
        if rest:
            python.append((table, rest, max_tid, tcc_id))
    return tuple(python), (CoreFanout(tuple(core)) if core else None)


_IDENTITY = bytes(range(256))


def write_rewriter(core: Any, rw: RtpRewriter) -> None:
    """Copy what the C core reads of a consumer's rewriter into its struct (`rw.on_change`)."""
    core.seq_offset = rw.seq_offset
    core.ts_offset = rw.ts_offset
    core.sync_required = rw.sync_required
    core.sync_seq = rw.sync_seq
    core.skip_seq = rw.skip_seq


def _extensions_ok(packet: Any, n: int) -> bool:
    """The packet's header extensions are well formed (else no consumer syncs on it, as in
    `fan_out`; only asked when a consumer waits for a sync)."""
    copy = bytearray(fanout_core.ffi.buffer(packet, n))
    if not copy[0] & 0x10:
        return True
    profile, start, end = extension_bounds(copy, n)
    return rewrite_extension_ids(copy, start, end, profile, _IDENTITY)


class CoreFanout:
    """One producer stream's groups as the C core sends to them (relay/uring/fanout_core.c).

    Python keeps the decisions the core does not make: a temporal skip (`on_temporal_drop`,
    which moves the consumer's offsets) happens here before the core is called, and the sync
    of a (re)starting consumer when the core says one is due (it then sent nothing); each
    writes the consumer's core struct through the rewriter's `on_change`; the core only
    reads them."""

    __slots__ = ("groups", "table", "min_tid")

    def __init__(self, groups: tuple[Group, ...]) -> None:
        self.groups = groups
        self.table = fanout_core.GroupTable(
            [(table, max_tid, tcc_id, [c.core for c in consumers])
             for table, consumers, max_tid, tcc_id in groups],
            keep=[c for _, consumers, _, _ in groups for c in consumers])
        self.min_tid = min(max_tid for _, _, max_tid, _ in groups)

    def fan_out(self, ring: Any, packet: Any, n: int, ssrc: int, seq: int, ts: int,
                older: bool, tid: int, payload_size: int, now: float,
                dropped: Counter[str]) -> int:
        """As `fan_out` (below) for these groups, through the core; `ring` is the send
        ring's C pointer, `packet` a C pointer to the packet."""
        if tid > self.min_tid and not older:
            for _, consumers, max_tid, _ in self.groups:
                if tid > max_tid:
                    for consumer in consumers:
                        consumer.on_temporal_drop(seq)
        sends = _core_fan_out(ring, self.table.groups, self.table.count, packet, n, seq, ts,
                              older, tid, payload_size, now)
        if sends == _NEEDS_SYNC:
            if not _extensions_ok(packet, n):
                dropped["malformedExtensions"] += 1
                return 0
            self._sync(ssrc, seq, ts, tid, now)
            sends = _core_fan_out(ring, self.table.groups, self.table.count, packet, n, seq,
                                  ts, older, tid, payload_size, now)
        if sends >= _MALFORMED:
            dropped["malformedExtensions"] += 1
            sends -= _MALFORMED
        return sends

    def _sync(self, ssrc: int, seq: int, ts: int, tid: int, now: float) -> None:
        """(Re)start the consumers waiting for a sync on this packet, as the Python loop
        does on a consumer's first packet (only where the packet is sent: its TID taken).
        Each sync writes the consumer's struct (the rewriter's `on_change`)."""
        for _, consumers, max_tid, _ in self.groups:
            if tid <= max_tid:
                for consumer in consumers:
                    rw = consumer.rewriter
                    if rw.sync_required:
                        rw.sync(ssrc, seq, ts, now)


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
                consumer.py_dropped += 1
                continue
            pt = rw.payload_types[pt_in]
            if pt == NO_PAYLOAD_TYPE:
                consumer.py_dropped += 1
                continue
            pack_header(scratch, 1, marker | pt, (seq + rw.seq_offset) & 0xFFFF,
                        (ts + rw.ts_offset) & 0xFFFFFFFF, rw.ssrc)
            vp8 = consumer.vp8
            if vp8 is not None:
                vp8.rewrite(scratch, n - payload_size, n)
            if tcc_offset > 0:
                history = consumer.tcc_history
                if history is not None:
                    # through record_next: the C core numbers on the same transport
                    wide = history.record_next(now, n)
                    scratch[tcc_offset] = wide >> 8
                    scratch[tcc_offset + 1] = wide & 0xFF
            srtp = consumer.srtp
            if srtp is None:
                data = out
            else:
                data = srtp.protect_rtp(out, n)
                if data is None:
                    consumer.py_dropped += 1
                    continue
            # consumer.send: the ring's send, or a copy send for an ICE-TCP remote. (The
            # consumer's counters add these `py_` ones to what the C core counted.)
            if consumer.send(consumer.fd, data, consumer.addr):
                consumer.py_packets_sent += 1
                consumer.py_bytes_sent += n
                consumer.py_payload_bytes += payload_size
                sends += 1
            else:
                consumer.py_ring_drops += 1
    return sends
