"""One consumer's output RTP stream: sequence-number and timestamp continuity for forwarded
RTP (mediasoup's SeqManager idea), as a thin wrapper over the C that applies it
(rewriter_core.c, the only implementation: the C fan-out core calls it per packet and
consumer, the Python fan-out loop for the consumers the core does not take).

`RtpRewriter` rewrites a copy of a packet in place (SSRC, payload type, sequence number,
timestamp; header-extension ids are rewritten before, once per group of consumers sharing an
id table) with fixed offsets. The offsets only change when the consumer (re)starts
receiving: on its first packet, after a pause (its own or the producer's), and when the
producer's input SSRC changes. (The input half, what the producer saw of its stream, is
`relay.rtp.rewriter.InputStream`.)

The rule kept at every (re)start ("sync"): the next output sequence number is the last one sent
plus one (no gap, never backwards), and the output timestamp never goes backwards:
- same input stream as before the stop: the timestamp offset is kept, so the output timestamp
  advances by the real time the pause lasted (what a receiver's jitter buffer expects); if that
  would not move forward (the sender rewound), it becomes last + 1;
- a new input stream (SSRC change): the output timestamp continues from the last one plus the
  wall-clock time since the last packet, in the codec's clock rate (at least 1).
A packet older than the sync point (reordered across the restart) is dropped: sending it would
reuse a sequence number already sent before the stop.

The offsets of a running consumer don't need per-packet bookkeeping: its last output is the
input stream's highest sequence number plus its offset, computed when it stops.

Packets the consumer skips while running (VP8 temporal layers above its own, `skip`) give
their output number to the next packet sent, so receivers see no gap: each run of skips moves
the sequence offset down by its length. A packet older than the last skip is then not sent
(its number may be taken), and `input_seq` maps a NACKed output number back across the runs
(the last FC_SKIP_RUNS runs).

The state is a `struct fc_rewriter` owned by this object (`c`); a consumer's core struct
points at it, and the consumer keeps its rewriter, so it lives as long as any table holding
the pointer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.uring._ring import ffi, lib

if TYPE_CHECKING:
    from relay.rtp.rewriter import InputStream

NO_PAYLOAD_TYPE = lib.FC_NO_PAYLOAD_TYPE  # payload-type table entry: this codec is not taken
SKIP_RUNS = lib.FC_SKIP_RUNS

# (rewriter.c, buf, input byte 1, in_ssrc, seq, ts, older, now) -> 1 / 0: RtpRewriter.rewrite without the
# method call, for the Python fan-out loop
rewrite_header = lib.fc_rewriter_rewrite


class RtpRewriter:
    """One consumer's output stream: fixed SSRC, payload-type table, continuous seq/ts."""

    __slots__ = ("c", "payload_types")

    def __init__(self, ssrc: int, payload_types: bytes, clock_rate: int) -> None:
        if len(payload_types) != 128:
            raise ValueError("payload_types must map all 128 payload types")
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        c = ffi.new("struct fc_rewriter *")
        c.ssrc = ssrc
        c.clock_rate = clock_rate
        c.sync_required = 1
        c.input_ssrc = -1
        c.skip_seq = -1
        c.vp8_syncs = -1  # (VP8 PictureIDs: relay.uring.vp8_rewriter switches them on)
        c.last_pid = -1
        c.last_tl0 = -1
        ffi.memmove(c.payload_types, payload_types, 128)
        self.c = c
        self.payload_types = bytes(payload_types)  # input PT -> output PT, NO_PAYLOAD_TYPE: drop

    # -- the rare operations (control path) ---------------------------------------------------

    def stop(self, stream: InputStream) -> None:
        """The consumer stops receiving `stream` (pause, producer pause, SSRC change): remember
        where its output got to so the next sync continues from there."""
        lib.fc_rewriter_stop(self.c, stream.started, stream.max_seq, stream.max_ts,
                             stream.last_time)

    def sync(self, in_ssrc: int, seq: int, ts: int, now: float) -> None:
        """Choose the offsets for a (re)start at the packet (in_ssrc, seq, ts) (the rewrite
        does this itself on the first packet after a stop)."""
        lib.fc_rewriter_sync(self.c, in_ssrc, seq, ts, now)

    def skip(self, seq: int) -> None:
        """The in-order input packet `seq` is not sent to this consumer (a temporal layer above
        its own): the next packet sent takes its output number."""
        lib.fc_rewriter_skip(self.c, seq)

    def input_seq(self, out_seq: int) -> int | None:
        """The input sequence number of the packet sent as `out_seq`, across runs of skipped
        packets (each changed the offset); None if it can't be known."""
        seq = lib.fc_rewriter_input_seq(self.c, out_seq & 0xFFFF)
        return None if seq < 0 else seq

    def rewrite(self, buf: Any, in_b1: int, in_ssrc: int, seq: int, ts: int, older: bool,
                now: float) -> bool:
        """Write bytes 1-11 of this consumer's copy of a packet at `buf` (a C `unsigned char
        *`, e.g. `ffi.from_buffer`; `in_b1`: the input packet's marker|PT byte), syncing
        first if due; False (buf untouched): not sent (payload type not taken, or older than
        the sync point or the last skip)."""
        return bool(rewrite_header(self.c, buf, in_b1, in_ssrc, seq, ts, older, now))

    # -- the state, read from the C struct ----------------------------------------------------

    @property
    def ssrc(self) -> int:
        return int(self.c.ssrc)

    @property
    def clock_rate(self) -> int:
        return int(self.c.clock_rate)

    @property
    def seq_offset(self) -> int:
        return int(self.c.seq_offset)

    @property
    def ts_offset(self) -> int:
        return int(self.c.ts_offset)

    @property
    def sync_required(self) -> bool:
        return bool(self.c.sync_required)

    @property
    def started(self) -> bool:
        return bool(self.c.started)

    @property
    def last_seq(self) -> int:
        return int(self.c.last_seq)

    @property
    def last_ts(self) -> int:
        return int(self.c.last_ts)

    @property
    def last_time(self) -> float:
        return float(self.c.last_time)

    @property
    def input_ssrc(self) -> int:
        return int(self.c.input_ssrc)

    @property
    def sync_seq(self) -> int:
        return int(self.c.sync_seq)

    @property
    def skip_seq(self) -> int:
        return int(self.c.skip_seq)

    @property
    def syncs(self) -> int:
        """(Re)starts so far: per-codec rewriters (VP8 PictureIDs) re-base on a change."""
        return int(self.c.syncs)
