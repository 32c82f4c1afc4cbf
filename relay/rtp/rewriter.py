"""Sequence-number and timestamp continuity for forwarded RTP (mediasoup's SeqManager idea).

Two halves:
- `InputStream`: what the producer saw of one incoming stream (its SSRC, highest sequence
  number and its timestamp, when that arrived). Updated once per inbound packet.
- `RtpRewriter`: one consumer's output stream. It rewrites a copy of the packet in place
  (SSRC, payload type, sequence number, timestamp; header-extension ids are rewritten before,
  once per group of consumers sharing an id table) with fixed offsets. The offsets only change
  when the consumer (re)starts receiving: on its first packet, after a pause (its own or the
  producer's), and when the producer's input SSRC changes.

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
(its number may be taken), and `input_seq` maps a NACKed output number back across the runs.

The per-packet rewrite that applies these offsets (bytes 1–11: marker|PT, seq, ts, SSRC) is
done by the C fan-out core (relay/uring/fanout_core.c) from a copy of the offsets that
`on_change` keeps current, and written out in the Python fan-out loop
(`relay.worker.fanout.fan_out`) for the consumers the core does not take; the tests of these
rules drive both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF
# A backward jump larger than this is a sender restart (new max), not a reordered packet
# (RFC 3550 A.1 uses 100 for MAX_MISORDER; a little more slack costs nothing here).
MAX_MISORDER = 1000
NO_PAYLOAD_TYPE = 0xFF  # payload-type table entry: this consumer doesn't take that codec
SKIP_RUNS = 256  # runs of skipped packets remembered to map NACKed numbers back (seconds of video)



class InputStream:
    """One incoming RTP stream as a producer sees it."""

    __slots__ = ("ssrc", "max_seq", "max_ts", "last_time", "started")

    def __init__(self, ssrc: int = 0) -> None:
        self.ssrc = ssrc
        self.max_seq = 0
        self.max_ts = 0
        self.last_time = 0.0
        self.started = False

    def update(self, seq: int, ts: int, now: float) -> bool:
        """Record a packet; return True if it is older than (or a duplicate of) the highest."""
        if not self.started:
            self.started = True
        else:
            delta = (seq - self.max_seq) & SEQ_MASK
            if delta == 0:
                return True
            if delta >= 0x8000 and SEQ_MASK + 1 - delta <= MAX_MISORDER:
                return True
        self.max_seq = seq
        self.max_ts = ts
        self.last_time = now
        return False

    def reset(self, ssrc: int) -> None:
        """The stream now carries another SSRC (the sender restarted)."""
        self.ssrc = ssrc
        self.started = False


class RtpRewriter:
    """One consumer's output stream: fixed SSRC, payload-type table, continuous seq/ts."""

    __slots__ = (
        "ssrc",
        "payload_types",
        "clock_rate",
        "seq_offset",
        "ts_offset",
        "sync_required",
        "started",
        "last_seq",
        "last_ts",
        "last_time",
        "input_ssrc",
        "sync_seq",
        "skip_seq",
        "skip_runs",
        "syncs",
        "on_change",
    )

    def __init__(self, ssrc: int, payload_types: bytes, clock_rate: int) -> None:
        if len(payload_types) != 128:
            raise ValueError("payload_types must map all 128 payload types")
        self.ssrc = ssrc
        self.payload_types = payload_types  # input PT -> output PT, NO_PAYLOAD_TYPE = drop
        self.clock_rate = clock_rate
        self.seq_offset = 0
        self.ts_offset = 0
        self.sync_required = True
        self.started = False
        self.last_seq = 0
        self.last_ts = 0
        self.last_time = 0.0
        self.input_ssrc = -1
        self.sync_seq = 0
        self.syncs = 0  # (re)starts so far: per-codec rewriters re-base on a change
        self.skip_seq = -1  # input seq of the last packet skipped while running
        # [input seq of a skipped run's last packet, the seq offset used before that run],
        # oldest first.
        self.skip_runs: deque[list[int]] = deque(maxlen=SKIP_RUNS)
        # called after every change of the offsets or the sync state (the C fan-out core
        # keeps a copy of them: relay.worker.consumer)
        self.on_change: Callable[[], None] | None = None

    def stop(self, stream: InputStream) -> None:
        """The consumer stops receiving `stream` (pause, producer pause, SSRC change): remember
        where its output got to so the next sync continues from there."""
        if not self.sync_required and stream.started:
            self.last_seq = (stream.max_seq + self.seq_offset) & SEQ_MASK
            self.last_ts = (stream.max_ts + self.ts_offset) & TS_MASK
            self.last_time = stream.last_time
        self.sync_required = True
        self.skip_seq = -1
        self.skip_runs.clear()
        if self.on_change is not None:
            self.on_change()

    def sync(self, in_ssrc: int, seq: int, ts: int, now: float) -> None:
        """Choose the offsets for a (re)start at the packet (in_ssrc, seq, ts)."""
        if not self.started:
            # First packet ever: keep the sender's numbering (it is already random).
            self.seq_offset = 0
            self.ts_offset = 0
            self.started = True
        else:
            self.seq_offset = (self.last_seq + 1 - seq) & SEQ_MASK
            if in_ssrc == self.input_ssrc:
                out_ts = (ts + self.ts_offset) & TS_MASK
                if (out_ts - self.last_ts) & TS_MASK >= 0x80000000 or out_ts == self.last_ts:
                    self.ts_offset = (self.last_ts + 1 - ts) & TS_MASK
            else:
                step = max(1, int((now - self.last_time) * self.clock_rate))
                self.ts_offset = (self.last_ts + step - ts) & TS_MASK
        self.input_ssrc = in_ssrc
        self.sync_seq = seq
        self.sync_required = False
        self.syncs += 1
        if self.on_change is not None:
            self.on_change()

    def skip(self, seq: int) -> None:
        """The in-order input packet `seq` is not sent to this consumer (a temporal layer above
        its own): the next packet sent takes its output number."""
        if self.sync_required:
            return
        runs = self.skip_runs
        if runs and self.skip_seq >= 0 and (seq - self.skip_seq) & SEQ_MASK == 1:
            runs[-1][0] = seq  # the same run of skips: nothing was sent in between
        else:
            runs.append([seq, self.seq_offset])
        self.seq_offset = (self.seq_offset - 1) & SEQ_MASK
        self.skip_seq = seq
        if self.on_change is not None:
            self.on_change()

    def input_seq(self, out_seq: int) -> int | None:
        """The input sequence number of the packet sent as `out_seq`, across runs of skipped
        packets (each changed the offset); None if it can't be known."""
        runs = self.skip_runs
        offset = self.seq_offset
        if not runs:
            return (out_seq - offset) & SEQ_MASK
        after: int | None = runs[-1][0]  # packets after this skip
        before: int | None = None  # ... and before this one
        for i in range(len(runs), -1, -1):
            in_seq = (out_seq - offset) & SEQ_MASK
            if (after is None or 0 < (in_seq - after) & SEQ_MASK < 0x8000) and (
                before is None or 0 < (before - in_seq) & SEQ_MASK < 0x8000
            ):
                if after is None and i == 0 and len(runs) == runs.maxlen:
                    return None  # older than the runs we remember
                return in_seq
            if i == 0:
                break
            before, offset = runs[i - 1]
            after = runs[i - 2][0] if i >= 2 else None
        return None
