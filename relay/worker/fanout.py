"""The per-packet fan-out: one inbound RTP packet to every active consumer of its stream.

Everything per consumer and per packet happens here, and nothing else on the packet path is
per consumer. Every consumer is sent to by the C core (relay/uring/fanout_core.c, through
`CoreFanout`): one C call per inbound packet does their copies, rewrites, transport-wide
numbers, SRTP and ring sends (or ICE-TCP framing). `fan_out` below is the same work with the
steps around the rewrite in Python: used when the core is switched off
(`RELAY_FANOUT_CORE=0`, `split_groups`), and the reference the tests compare the core with.

Consumers of a stream are grouped by header-extension id table (usually one group: consumers
get the router's ids) and by the highest VP8 temporal layer they take. Per inbound packet and
group, the packet is copied once into a scratch buffer and its extension ids rewritten once;
then per consumer only bytes 1–11 are rewritten by the consumer's `RtpRewriter` (C, the
same code the core calls: relay/uring/rewriter_core.c; with a simulcast VP8 consumer's
PictureID and TL0PICIDX), SRTP-protected if its transport has SRTP, and queued in the send
ring (or copied to an ICE-TCP connection).
The groups hold only active consumers (not paused, producer not paused, remote known, not
waiting for a key frame) and are rebuilt on every state change (`build_groups`, control
path), so the loop has no checks for those. The transport ends its drain with `ring.flush_soon()`
(one submit per event-loop turn).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import extension_bounds, rewrite_extension_ids
from relay.rtp.transport_cc import extension_value_offset
from relay.uring import fanout_core
from relay.uring.rewriter import rewrite_header
from relay.uring.vp8_rewriter import rewrite_vp8

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

_core_fan_out = fanout_core.fan_out
_MALFORMED = fanout_core.MALFORMED
_STREAM_QUEUED = fanout_core.STREAM_QUEUED
_from_buffer = fanout_core.ffi.from_buffer

# (extension id table, the group's consumers, the highest VP8 TID they take: 255 = all,
#  their transport-wide-cc extension id: 0 = none)
Group = tuple[bytes, tuple[Any, ...], int, int]


def split_groups(groups: tuple[Group, ...]) -> tuple[tuple[Group, ...], CoreFanout | None]:
    """(the groups the Python loop sends to, the C core's share of them or None): a consumer
    the core can't take (`Consumer.in_core`: the core switched off, or no address the ring
    can send to) stays in Python, so behaviour stays complete (control path)."""
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


class CoreFanout:
    """One producer stream's groups as the C core sends to them (relay/uring/fanout_core.c).

    Python keeps the decisions (who is in which group); the core does the rest, syncs of
    (re)starting consumers and temporal skips included, in their rewriters' C structs.
    ICE-TCP consumers' packets are framed by the core into their connection's buffer, which
    the connection writes once per loop turn (`media_queued`, called when the core's result
    says a buffer started filling or is half full: not per packet); a batching pipe's
    (relay.transport.pipe_batch) the same way."""

    __slots__ = ("groups", "table", "streams")

    def __init__(self, groups: tuple[Group, ...]) -> None:
        self.groups = groups
        self.table = fanout_core.GroupTable(
            [(table, max_tid, tcc_id, [c.core for c in consumers])
             for table, consumers, max_tid, tcc_id in groups],
            keep=[c for _, consumers, _, _ in groups for c in consumers])
        self.streams = tuple({c.media_stream: None for _, consumers, _, _ in groups
                              for c in consumers if c.media_stream is not None})

    def fan_out(self, ring: Any, packet: Any, n: int, ssrc: int, seq: int, ts: int,
                older: bool, tid: int, payload_size: int, now: float,
                dropped: Counter[str]) -> int:
        """As `fan_out` (below) for these groups, through the core; `ring` is the send
        ring's C pointer, `packet` a C pointer to the packet."""
        sends = _core_fan_out(ring, self.table.groups, self.table.count, packet, n, seq, ts,
                              older, tid, payload_size, now)
        if sends >= _STREAM_QUEUED:  # rare bits
            if sends >= _MALFORMED:
                dropped["malformedExtensions"] += 1
                sends -= _MALFORMED
            if sends >= _STREAM_QUEUED:
                sends -= _STREAM_QUEUED
                self.media_queued()
        return sends

    def media_queued(self) -> None:
        """The core framed into a stream buffer (ICE-TCP, batching pipe) that wants
        sending."""
        for stream in self.streams:
            stream.media_queued()


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
    has_extension = packet[0] & 0x10
    b1 = packet[1]
    out = scratch_view[:n]
    out_ptr = _from_buffer("unsigned char[]", scratch)
    in_ptr = None  # the input packet, for VP8 PictureIDs (read from it, not the shared copy)
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
            if not rewrite_header(consumer.rewriter.c, out_ptr, b1, ssrc, seq, ts, older, now):
                consumer.py_dropped += 1  # PT not taken, or older than a restart or a skip
                continue
            if consumer.vp8 is not None:
                if in_ptr is None:
                    in_ptr = _from_buffer("unsigned char[]", bytes(packet))
                rewrite_vp8(consumer.rewriter.c, in_ptr, out_ptr, n - payload_size, n, True)
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
