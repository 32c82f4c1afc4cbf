"""transport-cc, receive side: record arrivals, build the feedback; and parse feedback.

draft-holmer-rmcat-transport-wide-cc-extensions-01: every RTP packet a sender puts on a
transport carries a 16-bit transport-wide sequence number in a header extension; the receiver
reports, in RTCP RTPFB packets (PT 205, FMT 15), which numbers arrived and when, and the
sender's congestion controller (GCC in browsers) estimates the bandwidth from that.

Sans-I/O. Per inbound RTP packet the transport calls :meth:`TransportCcReceiver.on_rtp`
(read the number, record the arrival: :func:`read_transport_seq` and
:meth:`TransportCcReceiver.on_packet`, with a fast path for the usual case); every
:func:`feedback_interval` seconds it calls :meth:`TransportCcReceiver.build_feedback` and
sends what it returns (built in bulk when one packet with small deltas holds it all). Times are seconds on a
monotonic clock (``loop.time()``), never negative.

Receiver rules (libwebrtc's ``RemoteEstimatorProxy`` and ``PacketArrivalTimeMap``):

- The 16-bit number is unwrapped against the last one seen; only the first arrival of each
  number is recorded (a duplicate changes nothing).
- Each feedback covers everything recorded since the previous one. A packet that arrives
  late, older than what was already reported, moves the report start back to it, so the next
  feedback reports it and re-reports what followed it (feedback may overlap; a sender skips
  arrivals it already has).
- History: once everything has been reported, arrivals older than ``back_window`` (0.5 s)
  before the newest are dropped. A late packet older than what is left is refused (counted):
  its neighbours are gone, so a report would call them lost. libwebrtc accepts it and does
  just that. Unlike libwebrtc, a duplicate of an old packet does not re-report anything.
- Bounds: the table spans at most ``max_span`` sequence numbers (power of two, default
  16384; libwebrtc's is 32768), so it holds at most that many arrivals whatever numbers a
  stranger sends. A packet that would stretch it further evicts the oldest entries (counted
  in ``evicted`` when they were not reported yet); a jump of ``max_span`` or more ahead
  starts over (``resets``). The table starts small and doubles as needed.

Feedback encoding (libwebrtc's ``TransportFeedback``): chunks are chosen greedily as
libwebrtc does (a run-length chunk for up to 8191 equal symbols, else a one-bit vector of 14
when no delta is large, else a two-bit vector of 7), deltas in 250 µs ticks (one unsigned
byte, or two signed bytes for a large or negative delta), the reference time is the first
reported arrival in 64 ms units (24 bits, wrapping), the 8-bit feedback packet count wraps.
A packet is closed and the next one started when the next delta does not fit 16 bits, when
the packet would pass ``max_packet_size``, or when the status count would pass 0xFFFF. A run
of missing numbers before the first reported arrival longer than ``max_leading_missing``
moves the base forward (the older ones are not reported) instead of failing. Padding uses
the RTCP P bit (as current libwebrtc does).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from operator import add, floordiv, itemgetter, mul, sub
from typing import Any, NamedTuple

from relay.rtp.rtcp import RtcpParseError

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

RTCP_PT_RTPFB = 205
RTPFB_FMT_TRANSPORT_CC = 15

DELTA_TICK_US = 250  # receive deltas are in 250 µs ticks
REFERENCE_TICK_US = 64_000  # the reference time is in 64 ms units (250 µs << 8)
REFERENCE_TIME_BITS = 24

# Packet status symbols (draft §3.1.1); 3 is reserved.
NOT_RECEIVED = 0
SMALL_DELTA = 1  # one unsigned byte: 0 .. 63.75 ms
LARGE_DELTA = 2  # two signed bytes: negative, or above 63.75 ms

RUN_LENGTH_MAX = 0x1FFF  # 13-bit run length
ONE_BIT_CAPACITY = 14
TWO_BIT_CAPACITY = 7
MAX_STATUS_COUNT = 0xFFFF
MAX_LEADING_MISSING = 0x7FFE  # libwebrtc's kMaxMissingSequenceNumbers

HEADER_SIZE = 20  # RTCP header 4, sender and media SSRC 8, base/count/reference/fb count 8
MIN_PACKET_SIZE = 64  # room for the header, a leading missing run and one arrival

BACK_WINDOW = 0.5  # libwebrtc's kBackWindow
DEFAULT_MAX_SPAN = 1 << 14
_MAX_MAX_SPAN = 1 << 15
_MIN_CAPACITY = 256

# Feedback interval (libwebrtc RemoteEstimatorProxy::OnBitrateChanged): feedback takes about
# 5 % of the incoming bitrate, at an average report of 68 bytes on the wire (IPv4 20 + UDP 8
# + SRTP 10 + report 30), within 50–250 ms.
MIN_FEEDBACK_INTERVAL = 0.05
MAX_FEEDBACK_INTERVAL = 0.25
DEFAULT_FEEDBACK_INTERVAL = 0.1
FEEDBACK_SHARE = 0.05
_REPORT_BITS = (20 + 8 + 10 + 30) * 8

_NOT_RECEIVED_TIME = -1.0  # a table slot with no arrival (arrival times are >= 0)
_CULL_BLOCK = 256
_CLEARED = array("d", [_NOT_RECEIVED_TIME]) * _CULL_BLOCK

_U16_U16 = struct.Struct("!HH")
_FEEDBACK_HEADER = struct.Struct("!BBHIIHHI")  # ... base, count, reference << 8 | fb count
_RTCP_HEADER = struct.Struct("!BBH")
_FEEDBACK_FIELDS = struct.Struct("!IIHHI")
_I16 = struct.Struct("!h")


class TransportCcParseError(RtcpParseError):
    """Malformed transport-cc feedback. The only exception :func:`parse_feedback` raises
    (a ``ValueError``, and an :class:`~relay.rtp.rtcp.RtcpParseError`)."""


# --- header extension -----------------------------------------------------------------------


def extension_value_offset(
    buf: bytearray | memoryview | bytes, n: int, ext_id: int, min_size: int
) -> int:
    """Offset in ``buf`` of the value of RFC 8285 header-extension element ``ext_id`` of the
    RTP packet ``buf[:n]``, or -1 when the packet has none, or one shorter than
    ``min_size`` bytes, or a malformed extension block (never raises, never reads past n)."""
    if n < 16:
        return -1
    b0 = buf[0]
    if not b0 & 0x10:
        return -1
    i = 12 + ((b0 & 0x0F) << 2)
    if i + 4 > n:
        return -1
    profile, words = _U16_U16.unpack_from(buf, i)
    i += 4
    end = i + (words << 2)
    if end > n:
        return -1
    if profile == 0xBEDE:
        while i < end:
            b = buf[i]
            if b == 0:  # padding
                i += 1
                continue
            element_id = b >> 4
            if element_id == 15:  # reserved: stop
                return -1
            size = (b & 0x0F) + 1
            if element_id == ext_id:
                return i + 1 if size >= min_size and i + 1 + size <= end else -1
            i += 1 + size
        return -1
    if profile & 0xFFF0 == 0x1000:
        while i < end:
            element_id = buf[i]
            if element_id == 0:  # padding
                i += 1
                continue
            if i + 2 > end:
                return -1
            size = buf[i + 1]
            if element_id == ext_id:
                return i + 2 if size >= min_size and i + 2 + size <= end else -1
            i += 2 + size
    return -1


def read_transport_seq(buf: bytearray | memoryview | bytes, n: int, ext_id: int) -> int | None:
    """The transport-wide sequence number of the RTP packet ``buf[:n]`` (one-byte or
    two-byte header extension ``ext_id``), or None. The element is 2 bytes (4 in the
    transport-cc-02 variant, whose first 2 bytes are the same number).

    Per inbound packet: the one-byte form (what browsers send) is walked here, inline."""
    if n < 16:
        return None
    b0 = buf[0]
    if not b0 & 0x10:
        return None
    i = 12 + ((b0 & 0x0F) << 2)
    if i + 4 > n:
        return None
    profile, words = _U16_U16.unpack_from(buf, i)
    if profile != 0xBEDE:
        i = extension_value_offset(buf, n, ext_id, 2)
        return None if i < 0 else (buf[i] << 8) | buf[i + 1]
    i += 4
    end = i + (words << 2)
    if end > n or ext_id == 15:  # 15 is reserved in the one-byte form
        return None
    while i < end:
        b = buf[i]
        element_id = b >> 4
        if element_id == ext_id:
            size = b & 0x0F  # value bytes - 1
            if size and i + 2 + size <= end:  # 2 bytes or more, inside the block
                return (buf[i + 1] << 8) | buf[i + 2]
            return None
        if b == 0:  # padding
            i += 1
        elif element_id == 15:  # reserved: stop
            return None
        else:
            i += (b & 0x0F) + 2
    return None


def one_byte_layout(buf: bytearray | memoryview | bytes, n: int,
                    ext_id: int) -> tuple[tuple[int, ...], tuple[int, ...], int] | None:
    """The layout of the RTP packet ``buf[:n]`` when it is the usual one (version 2, no
    padding, no CSRC, one-byte header extensions, element ``ext_id`` of 2 bytes or more
    inside the block): (the positions of byte 0, of the 0xBEDE profile and of every element
    header up to and including ``ext_id``'s, the bytes found there, the extension block
    length in 32-bit words that the element needs); else None.

    A packet whose bytes at those positions are the same, with a block at least that long,
    has the element at the same offset: each element header fixes where the next begins.
    (Padding bytes between elements are not positions: such a packet gets None.)"""
    if n < 16 or buf[0] != 0x90 or buf[12] != 0xBE or buf[13] != 0xDE or ext_id == 15:
        return None
    words = (buf[14] << 8) | buf[15]
    end = 16 + (words << 2)
    if end > n:
        return None
    positions = [0, 12, 13]
    i = 16
    while i < end:
        b = buf[i]
        if b == 0 or b >> 4 == 15:  # padding or reserved: not the usual layout
            return None
        positions.append(i)
        size = (b & 0x0F) + 1
        if b >> 4 == ext_id:
            if size < 2 or i + 1 + size > end:
                return None
            return tuple(positions), tuple(buf[p] for p in positions), (i + size - 12) >> 2
        i += 1 + size
    return None


def feedback_interval(incoming_bitrate_bps: float | None) -> float:
    """Seconds between feedback rounds so that feedback takes about 5 % of the incoming
    bitrate, within 50–250 ms; 100 ms when the bitrate is unknown (None)."""
    if incoming_bitrate_bps is None:
        return DEFAULT_FEEDBACK_INTERVAL
    feedback_bps = FEEDBACK_SHARE * incoming_bitrate_bps
    if feedback_bps <= _REPORT_BITS / MAX_FEEDBACK_INTERVAL:
        return MAX_FEEDBACK_INTERVAL
    return max(_REPORT_BITS / feedback_bps, MIN_FEEDBACK_INTERVAL)


# --- status chunks --------------------------------------------------------------------------


def encode_chunks(runs: list[tuple[int, int]]) -> list[int]:
    """Packet status chunks for a list of ``(symbol, count)`` runs, chosen as libwebrtc's
    ``TransportFeedback::LastChunk`` does: pending symbols stay open while one chunk type can
    still hold them (a run-length chunk for up to 8191 equal symbols, a one-bit vector for
    14 symbols without a large delta, a two-bit vector for 7); when the next symbol fits
    none, the chunk they allow is closed (a two-bit vector takes the first 7 and leaves the
    rest pending). The last pending symbols become a run-length chunk if all equal, else a
    two-bit vector if at most 7, else a one-bit vector.

    Work is per run plus per symbol only inside mixed vectors (at most 14 per chunk)."""
    chunks: list[int] = []
    pend: list[int] = []  # the first min(size, 14) pending symbols
    size = 0
    same = True  # all pending symbols are equal
    large = False  # a pending symbol is LARGE_DELTA
    for sym, count in runs:
        while count > 0:
            if size == 0 or (same and pend[0] == sym):
                # An all-equal run absorbs equal symbols up to the run-length maximum.
                if size == RUN_LENGTH_MAX:
                    chunks.append((sym << 13) | size)
                    pend, size, large = [], 0, False
                    continue
                take = min(count, RUN_LENGTH_MAX - size)
                if size < ONE_BIT_CAPACITY:
                    pend.extend([sym] * min(take, ONE_BIT_CAPACITY - size))
                size += take
                count -= take
                if sym == LARGE_DELTA:
                    large = True
                continue
            if size < TWO_BIT_CAPACITY or (
                size < ONE_BIT_CAPACITY and not large and sym != LARGE_DELTA
            ):
                pend.append(sym)  # size < 14 here
                size += 1
                count -= 1
                same = False
                if sym == LARGE_DELTA:
                    large = True
                continue
            # The symbol fits no chunk with the pending ones: close one.
            if same:
                chunks.append((pend[0] << 13) | size)
                pend, size, large = [], 0, False
            elif size == ONE_BIT_CAPACITY:
                chunks.append(_one_bit_chunk(pend))
                pend, size, same, large = [], 0, True, False
            else:
                chunks.append(_two_bit_chunk(pend[:TWO_BIT_CAPACITY]))
                pend = pend[TWO_BIT_CAPACITY:]
                size = len(pend)
                same = all(s == pend[0] for s in pend)
                large = LARGE_DELTA in pend
    if size:
        if same:
            chunks.append((pend[0] << 13) | size)
        elif size <= TWO_BIT_CAPACITY:
            chunks.append(_two_bit_chunk(pend))
        else:
            chunks.append(_one_bit_chunk(pend))
    return chunks


def _one_bit_chunk(syms: list[int]) -> int:
    chunk = 0x8000
    for i, s in enumerate(syms):
        chunk |= s << (ONE_BIT_CAPACITY - 1 - i)
    return chunk


def _two_bit_chunk(syms: list[int]) -> int:
    chunk = 0xC000
    for i, s in enumerate(syms):
        chunk |= s << (2 * (TWO_BIT_CAPACITY - 1 - i))
    return chunk


def _runs(missing: list[int], syms: list[int], k: int) -> list[tuple[int, int]]:
    """The status runs of the first ``k`` arrivals of a packet: each arrival's symbol,
    after the missing sequence numbers before it."""
    runs: list[list[int]] = []
    last = -1
    for j in range(k):
        m = missing[j]
        if m:
            runs.append([NOT_RECEIVED, m])
            last = NOT_RECEIVED
        s = syms[j]
        if s == last:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
            last = s
    return [(s, c) for s, c in runs]


_RECEIVED = (0.0).__le__  # an arrival time, not _NOT_RECEIVED_TIME


def _status_runs(received: bytes, leading: int) -> list[tuple[int, int]]:
    """The status runs of ``leading`` missing numbers, then one number per byte of
    ``received`` (1: a small-delta arrival, 0: missing); work per run, not per number."""
    runs = [(NOT_RECEIVED, leading)] if leading else []
    find = received.find
    i, total = 0, len(received)
    while i < total:
        sym = received[i]
        j = find(b"\x00" if sym else b"\x01", i)
        if j < 0:
            j = total
        if runs and runs[-1][0] == sym:
            runs[-1] = (sym, runs[-1][1] + j - i)
        else:
            runs.append((sym, j - i))
        i = j
    return runs


def small_deltas(arrivals: array, reference: int) -> bytearray | None:
    """The receive deltas of ``arrivals`` (seconds, in order of their numbers) from the
    reference time ``reference`` (64 ms units), each one byte of 250 µs ticks; None when one
    is not a small delta (negative or above 63.75 ms). The bulk encoder's loop: the
    worker gives `TransportCcReceiver` the C one (relay/uring/transport_cc_core.c), and the
    tests compare the two."""
    us = list(map(round, map(mul, arrivals, repeat(1e6))))
    # In 250 µs ticks, rounded half up: the differences of the rounded times are the
    # rounded differences the arrival-by-arrival encoder gives.
    ticks = list(map(floordiv, map(add, us, repeat(DELTA_TICK_US // 2)),
                     repeat(DELTA_TICK_US)))
    previous = ticks[:-1]
    previous.insert(0, reference * (REFERENCE_TICK_US // DELTA_TICK_US))
    deltas = list(map(sub, ticks, previous))
    if min(deltas) < 0 or max(deltas) > 0xFF:
        return None
    return bytearray(deltas)


# --- receiver -------------------------------------------------------------------------------


class TransportCcReceiver:
    """Arrival times by transport-wide sequence number, and the feedback that reports them.

    ``media_ssrc`` is the SSRC of the most recent packet given to :meth:`on_packet` (the
    feedback's "media source" field; browsers ignore it). Counters: ``packets`` (recorded),
    ``duplicates``, ``refused`` (late packets older than the history), ``evicted``
    (unreported arrivals pushed out by the span bound), ``resets`` (jumps of ``max_span``
    or more), ``feedback_packets`` (built).
    """

    def __init__(
        self,
        *,
        max_span: int = DEFAULT_MAX_SPAN,
        back_window: float = BACK_WINDOW,
        max_leading_missing: int = MAX_LEADING_MISSING,
        ext_id: int = 0,
        deltas: Callable[[array, int], bytearray | None] = small_deltas,
    ) -> None:
        if max_span & (max_span - 1) or not 16 <= max_span <= _MAX_MAX_SPAN:
            raise ValueError("max_span must be a power of two in 16 .. 32768")
        if not 0 <= max_leading_missing <= MAX_LEADING_MISSING:
            raise ValueError("max_leading_missing must be in 0 .. 0x7FFE")
        capacity = min(_MIN_CAPACITY, max_span)
        # Ring of arrival times indexed by unwrapped seq & mask; every slot outside
        # [begin, end) holds _NOT_RECEIVED_TIME, so extending the window needs no clearing.
        self._times = array("d", [_NOT_RECEIVED_TIME]) * capacity  # C may write it
        self._mask = capacity - 1
        self._capacity = capacity
        self._max_span = max_span
        self._back_window = back_window
        self._max_leading_missing = max_leading_missing
        self._last: int | None = None  # last unwrapped seq seen
        self._begin = 0  # window [begin, end) of unwrapped seqs
        self._end = 0
        self._report_from = 0  # first seq the next feedback covers
        self._floor = 0  # no late packet below this is taken (history dropped there)
        self._fb_count = 0
        self.media_ssrc = 0
        self._packets = 0  # recorded, but for those :meth:`on_rtp` took since _fast_base
        self.duplicates = 0
        self.refused = 0
        self.evicted = 0
        self.resets = 0
        self.feedback_packets = 0
        # on_rtp's fast path (see there): the header extension element ``ext_id`` of the
        # packets' usual layout, and an in-order packet recorded without on_packet. While
        # _fast_limit >= 0: the last seq seen is _end - 1 (not _last), the window has room
        # below _fast_limit, everything from _fast_base to _end was recorded by the fast path.
        self.ext_id = ext_id
        self._layout_get: Any = itemgetter(0, 0)
        self._layout: tuple[int, ...] = (-1, -1)  # bytes found at those positions
        self._layout_words = 0  # extension block words the element needs
        self._offset = 0  # of the element's value
        self._fast_limit = -1
        self._fast_base = 0
        self._small_deltas = deltas

    @property
    def packets(self) -> int:
        """Arrivals recorded."""
        if self._fast_limit >= 0:
            return self._packets + self._end - self._fast_base
        return self._packets

    def __len__(self) -> int:
        """Sequence numbers spanned by the table (received or not)."""
        return self._end - self._begin

    @property
    def pending(self) -> bool:
        """Whether the next :meth:`build_feedback` has something to report."""
        return self._report_from < self._end

    def on_rtp(self, buf: bytearray | memoryview | bytes, n: int, ssrc: int,
               arrival: float) -> None:
        """Read the transport-wide sequence number of the RTP packet ``buf[:n]`` (element
        ``ext_id``) and record its arrival (:meth:`on_packet`); a packet without one is
        ignored. The transport calls it for every inbound packet whose header and extension
        block it checked to lie within ``n`` (``relay.rtp.packet.rtp_payload_offset``).

        Hot path (every inbound packet). When the packet's layout is the one last seen
        (`one_byte_layout`: the bytes at its element-header positions are equal, the block is
        long enough) the number is read at the known offset; when it is the next number in
        order and the window has room it is stored here, without on_packet (measured:
        docs/performance.md, "Congestion feedback"). Anything else takes the general path."""
        try:
            if self._layout_get(buf) == self._layout and buf[15] >= self._layout_words:
                off = self._offset
                seq = (buf[off] << 8) | buf[off + 1]
                end = self._end
                if seq == end & 0xFFFF and end < self._fast_limit:
                    self._times[end & self._mask] = arrival
                    self._end = end + 1
                    self.media_ssrc = ssrc
                    return
                self.on_packet(seq, arrival, ssrc)
                return
        except IndexError:  # a buffer shorter than the usual layout: the general path
            pass
        ext_id = self.ext_id
        read = read_transport_seq(buf, n, ext_id)
        if read is None:
            return
        layout = one_byte_layout(buf, n, ext_id)
        if layout is not None:
            positions, found, words = layout
            self._layout_get = itemgetter(*positions)
            self._layout = found
            self._layout_words = words
            self._offset = positions[-1] + 1
        self.on_packet(read, arrival, ssrc)

    def lend(self) -> tuple[array, int, int, int] | None:
        """The table for a recorder outside (the C receive core) while the fast path is
        armed: (times, mask, end, limit). It may store the arrival of number ``end`` (its
        low 16 bits) at ``times[end & mask]`` and go on with end + 1 while end < limit, as
        on_rtp's fast path does, then gives the new end back (:meth:`take_back`) before
        anything else is recorded here. None: on_rtp must see every packet now."""
        if self._fast_limit < 0:
            return None
        return self._times, self._mask, self._end, self._fast_limit

    def take_back(self, end: int, media_ssrc: int) -> None:
        """The lent table's new end (and the SSRC of the last packet recorded there)."""
        if self._fast_limit >= 0 and self._end <= end <= self._fast_limit:
            self._end = end
            self.media_ssrc = media_ssrc

    def _leave_fast(self) -> None:
        """Make _last and _packets exact again (before anything but the fast path)."""
        if self._fast_limit >= 0:
            end = self._end
            self._last = end - 1
            self._packets += end - self._fast_base
            self._fast_limit = -1

    def _arm_fast(self) -> None:
        """Let on_rtp store the next packets itself while they come in order, up to the
        capacity, and nothing needs culling (something is left to report)."""
        end = self._end
        if self._last == end - 1 and self._report_from < end:
            self._fast_limit = self._begin + self._capacity
            self._fast_base = end

    def on_packet(self, wide_seq: int, arrival: float, media_ssrc: int | None = None) -> bool:
        """Record the arrival of transport-wide sequence number ``wide_seq`` (16 bits) at
        ``arrival`` seconds. Returns False when the packet was not recorded (a duplicate,
        or late beyond the history)."""
        self._leave_fast()
        recorded = self._on_packet(wide_seq, arrival, media_ssrc)
        self._arm_fast()
        return recorded

    def _on_packet(self, wide_seq: int, arrival: float, media_ssrc: int | None) -> bool:
        if media_ssrc is not None:
            self.media_ssrc = media_ssrc
        last = self._last
        if last is None:
            return self._first(wide_seq & 0xFFFF, arrival)
        delta = (wide_seq - last) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        seq = last + delta
        self._last = seq
        end = self._end
        if self._report_from >= end:
            self._cull(seq, arrival)
        if seq == end and end - self._begin < self._capacity:  # the usual case
            self._times[seq & self._mask] = arrival
            self._end = end + 1
            self._packets += 1
            return True
        return self._add(seq, arrival)

    def _first(self, seq: int, arrival: float) -> bool:
        self._last = seq
        self._begin = self._report_from = seq
        self._end = seq + 1
        self._floor = seq - self._max_span
        self._times[seq & self._mask] = arrival
        self._packets += 1
        return True

    def _cull(self, seq: int, arrival: float) -> None:
        """Everything is reported: drop arrivals older than the back window (libwebrtc
        culls the same way, only between a feedback and the next arrival)."""
        times, mask = self._times, self._mask
        begin = self._begin
        stop = min(seq, self._end)
        limit = arrival - self._back_window
        if begin < stop and times[begin & mask] <= limit:
            # in blocks (at 25,000 pkt/s a cull drops over a thousand): each block whose
            # every slot is old goes whole; in the first that is not, up to its first new one
            while begin < stop:
                lo = begin & mask
                n = min(stop - begin, self._capacity - lo, _CULL_BLOCK)
                block = times[lo:lo + n]
                if max(block) > limit:
                    n = next(i for i, t in enumerate(block) if t > limit)
                    if n:  # (an empty slice assignment counts as a resize, which C's hold on
                        # the table forbids)
                        times[lo:lo + n] = _CLEARED[:n]
                    begin += n
                    break
                times[lo:lo + n] = _CLEARED[:n]
                begin += n
            self._begin = self._floor = begin

    def _add(self, seq: int, arrival: float) -> bool:
        times = self._times
        begin, end = self._begin, self._end
        if seq >= end:  # ahead, past a gap or past the current capacity
            new_end = seq + 1
            if new_end - end >= self._max_span:  # nothing kept could be reported with it
                self._clear(begin, end)
                self.resets += 1
                self._begin = self._floor = self._report_from = seq
                self._end = new_end
                self._times[seq & self._mask] = arrival
                self._packets += 1
                return True
            if new_end - begin > self._max_span:
                self._clear(begin, new_end - self._max_span)
                begin = new_end - self._max_span
                while begin < end and times[begin & self._mask] < 0.0:
                    begin += 1  # the window starts at an arrival
                self._begin = self._floor = begin
                if self._report_from < begin:
                    self._report_from = begin
            if new_end - begin > self._capacity:
                self._grow(new_end - begin)
            self._times[seq & self._mask] = arrival
            self._end = new_end
            self._packets += 1
            return True
        if seq >= begin:  # reordered, inside the window
            slot = seq & self._mask
            if times[slot] >= 0.0:
                self.duplicates += 1
                return False
            times[slot] = arrival
            self._packets += 1
            if seq < self._report_from:
                self._report_from = seq  # late: report it (and what follows) again
            return True
        # Older than the window: take it only where no history was dropped.
        if seq < self._floor or end - seq > self._max_span:
            self.refused += 1
            return False
        if end - seq > self._capacity:
            self._grow(end - seq)
        self._times[seq & self._mask] = arrival
        self._begin = seq
        if seq < self._report_from:
            self._report_from = seq
        self._packets += 1
        return True

    def _clear(self, lo: int, hi: int) -> None:
        """Drop the arrivals of seqs lo .. hi-1, counting the unreported ones."""
        times, mask = self._times, self._mask
        report_from = self._report_from
        for seq in range(lo, hi):
            slot = seq & mask
            if times[slot] >= 0.0:
                if seq >= report_from:
                    self.evicted += 1
                times[slot] = _NOT_RECEIVED_TIME

    def _grow(self, needed: int) -> None:
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        old, old_mask = self._times, self._mask
        new = array("d", [_NOT_RECEIVED_TIME]) * capacity
        mask = capacity - 1
        for seq in range(self._begin, self._end):
            new[seq & mask] = old[seq & old_mask]
        self._times, self._mask, self._capacity = new, mask, capacity

    # --- feedback ---------------------------------------------------------------------------

    def build_feedback(self, sender_ssrc: int, max_packet_size: int = 1200) -> list[bytes]:
        """RTCP transport-cc feedback packets covering everything recorded since the last
        call (several when one would pass ``max_packet_size`` bytes, or when a delta does not
        fit 16 bits); [] when there is nothing new."""
        if max_packet_size < MIN_PACKET_SIZE:
            raise ValueError(f"max_packet_size must be at least {MIN_PACKET_SIZE}")
        limit = max_packet_size & ~3
        packets: list[bytes] = []
        self._leave_fast()
        while self._report_from < self._end:
            before = self._report_from
            packet = self._build_packet(sender_ssrc & 0xFFFFFFFF, limit)
            if packet is not None:
                packets.append(packet)
            if self._report_from <= before:  # no progress: cannot happen, never loop on it
                break
        self._arm_fast()
        return packets

    def _build_packet(self, sender_ssrc: int, limit: int) -> bytes | None:
        times, mask, end = self._times, self._mask, self._end
        seq = max(self._report_from, self._begin)
        while seq < end and times[seq & mask] < 0.0:
            seq += 1
        if seq >= end:
            self._report_from = end
            return None
        base = max(self._report_from, seq - self._max_leading_missing)
        reference = round(times[seq & mask] * 1_000_000) // REFERENCE_TICK_US
        packet = self._build_whole(sender_ssrc, limit, base, seq, reference)
        if packet is not None:
            return packet
        last_us = reference * REFERENCE_TICK_US
        # Pass 1: the arrivals this packet can take (deltas that fit 16 bits, a status
        # count within 0xFFFF, deltas alone within the size), with their delta bytes.
        missing: list[int] = []
        syms: list[int] = []
        delta_ends: list[int] = []  # delta bytes up to and including each arrival
        deltas = bytearray()
        max_deltas = limit - HEADER_SIZE - 2
        stop = min(end, base + MAX_STATUS_COUNT)
        next_seq = base
        while seq < stop:
            arrival = times[seq & mask]
            if arrival < 0.0:
                seq += 1
                continue
            d = round(arrival * 1_000_000) - last_us
            # rounded half up (libwebrtc rounds half away from zero; the two differ only on
            # negative ties, the usual one two arrivals in one microsecond, as a recvmmsg
            # batch's are: half up keeps that a small delta of 0, as the bulk encoder has it)
            ticks = (d + DELTA_TICK_US // 2) // DELTA_TICK_US
            if 0 <= ticks <= 0xFF:
                if len(deltas) + 1 > max_deltas:
                    break
                deltas.append(ticks)
                syms.append(SMALL_DELTA)
            elif -0x8000 <= ticks <= 0x7FFF:
                if len(deltas) + 2 > max_deltas:
                    break
                deltas += _I16.pack(ticks)
                syms.append(LARGE_DELTA)
            else:
                break  # the next packet starts with a new reference time
            last_us += ticks * DELTA_TICK_US
            missing.append(seq - next_seq)
            delta_ends.append(len(deltas))
            next_seq = seq + 1
            seq += 1
        # Pass 2: the chunks; if the packet is too big, the most arrivals that fit.
        count = len(syms)
        chunks = encode_chunks(_runs(missing, syms, count))
        if HEADER_SIZE + 2 * len(chunks) + len(deltas) > limit:
            lo, hi = 1, count - 1  # 1 always fits (MIN_PACKET_SIZE); count does not
            while lo < hi:
                mid = (lo + hi + 1) // 2
                n_chunks = len(encode_chunks(_runs(missing, syms, mid)))
                if HEADER_SIZE + 2 * n_chunks + delta_ends[mid - 1] <= limit:
                    lo = mid
                else:
                    hi = mid - 1
            count = lo
            chunks = encode_chunks(_runs(missing, syms, count))
            del deltas[delta_ends[count - 1]:]
            next_seq = base + sum(missing[:count]) + count
        self._report_from = next_seq
        return self._packet(sender_ssrc, base, next_seq - base, reference, chunks, deltas)

    def _build_whole(self, sender_ssrc: int, limit: int, base: int, seq: int,
                     reference: int) -> bytes | None:
        """The usual case in bulk: one packet reports everything from ``base`` (``seq``
        is the first arrival) to the end, every delta a small one; or, with no loss, the
        first arrivals as many as one packet holds (at high rates a feedback interval holds
        more than one packet's worth). None when that does not hold (a large or negative
        delta, loss and too many for one packet);
        then the packet is built arrival by arrival. Same bytes either way
        (tests/rtp/test_transport_cc.py compares them); per arrival this runs in C (map,
        bytes), about a tenth of the arrival-by-arrival cost."""
        end = self._end
        if end - base > MAX_STATUS_COUNT:
            return None
        times, mask = self._times, self._mask
        lo, hi = seq & mask, end & mask
        window = times[lo:hi] if lo < hi else times[lo:] + times[:hi]
        if window[-1] < 0.0:
            return None
        lossless = window[0] >= 0.0 and min(window) >= 0.0
        max_deltas = limit - HEADER_SIZE - 2
        if lossless and len(window) > max_deltas:
            # the arrivals the general path's first pass takes (all small deltas, checked
            # below); its second pass then keeps the most that fit with their chunks
            window = window[:max_deltas]
            end = seq + max_deltas
        arrivals = window if lossless else array("d", filter(_RECEIVED, window))
        if HEADER_SIZE + 2 + len(arrivals) > limit:
            return None
        deltas = self._small_deltas(arrivals, reference)
        if deltas is None:
            return None
        leading = seq - base
        if lossless:
            # the most arrivals that fit with their chunks (the general path's binary search
            # finds the same: the size only grows with the count); a leading missing run
            # costs a chunk or two, so a few steps down at most
            count = len(window)
            for _ in range(8):
                runs = [(NOT_RECEIVED, leading), (SMALL_DELTA, count)] if leading else \
                    [(SMALL_DELTA, count)]
                chunks = encode_chunks(runs)
                if HEADER_SIZE + 2 * len(chunks) + count <= limit:
                    break
                count -= 1
            else:
                return None
            end = seq + count
            del deltas[count:]
        else:
            chunks = encode_chunks(_status_runs(bytes(map(_RECEIVED, window)), leading))
            if HEADER_SIZE + 2 * len(chunks) + len(deltas) > limit:
                return None
        self._report_from = end
        return self._packet(sender_ssrc, base, end - base, reference, chunks, deltas)

    def _packet(self, sender_ssrc: int, base: int, count: int, reference: int,
                chunks: list[int], deltas: bytes | bytearray) -> bytes:
        body_size = HEADER_SIZE + 2 * len(chunks) + len(deltas)
        padding = -body_size % 4
        fb_count = self._fb_count
        self._fb_count = (fb_count + 1) & 0xFF
        self.feedback_packets += 1
        out = bytearray(
            _FEEDBACK_HEADER.pack(
                0x80 | (0x20 if padding else 0) | RTPFB_FMT_TRANSPORT_CC,
                RTCP_PT_RTPFB,
                (body_size + padding) // 4 - 1,
                sender_ssrc,
                self.media_ssrc & 0xFFFFFFFF,
                base & 0xFFFF,
                count,
                ((reference & 0xFFFFFF) << 8) | fb_count,
            )
        )
        out += struct.pack(f"!{len(chunks)}H", *chunks)
        out += deltas
        if padding:
            out += bytes(padding - 1)
            out.append(padding)
        return bytes(out)


# --- parsing --------------------------------------------------------------------------------


class ReceivedPacket(NamedTuple):
    """One reported arrival: ``seq`` (16 bits), ``delta_us`` from the previous reported
    arrival (from the reference time for the first), ``arrival_us`` on the feedback
    sender's clock (``reference_time * 64000`` plus the deltas so far)."""

    seq: int
    delta_us: int
    arrival_us: int


class PacketStatus(NamedTuple):
    """One reported sequence number; the times are None when it was not received."""

    seq: int
    received: bool
    delta_us: int | None
    arrival_us: int | None


@dataclass(frozen=True)
class TransportCcFeedback:
    """A parsed transport-cc feedback packet.

    ``reference_time`` is the draft's signed 24-bit field in 64 ms units (consecutive
    feedback wraps modulo 2**24). ``statuses`` holds one symbol per reported sequence number
    (``NOT_RECEIVED``, ``SMALL_DELTA``, ``LARGE_DELTA``) and ``received`` the arrivals in
    order; both are bounded by the packet's size. :meth:`packets` expands every sequence
    number (up to 65535 entries: the caller's choice)."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    status_count: int
    reference_time: int
    fb_count: int
    statuses: bytes
    received: list[ReceivedPacket]

    @property
    def reference_time_us(self) -> int:
        return self.reference_time * REFERENCE_TICK_US

    def lost(self) -> list[int]:
        """The sequence numbers reported as not received."""
        base = self.base_seq
        return [(base + i) & 0xFFFF for i, s in enumerate(self.statuses) if s == NOT_RECEIVED]

    def packets(self) -> list[PacketStatus]:
        """Every reported sequence number, in order."""
        out: list[PacketStatus] = []
        arrivals = iter(self.received)
        base = self.base_seq
        for i, s in enumerate(self.statuses):
            if s == NOT_RECEIVED:
                out.append(PacketStatus((base + i) & 0xFFFF, False, None, None))
            else:
                r = next(arrivals)
                out.append(PacketStatus(r.seq, True, r.delta_us, r.arrival_us))
        return out


def parse_feedback(data: bytes | bytearray | memoryview) -> TransportCcFeedback:
    """Parse one transport-cc feedback packet (exactly one RTCP packet, header included, as
    in ``relay.rtp.rtcp.TransportFeedback.data``). Raises :class:`TransportCcParseError`
    for anything malformed: wrong header, length not matching, status count 0, truncated
    chunks or deltas, the reserved symbol, more than 3 bytes left after the deltas.
    The work done is bounded by the packet's size."""
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:
        raise TransportCcParseError("feedback must be a bytes-like object") from exc
    n = len(view)
    if n < HEADER_SIZE + 4:
        raise TransportCcParseError("feedback shorter than its fixed part and one chunk")
    b0, pt, words = _RTCP_HEADER.unpack_from(view, 0)
    if b0 >> 6 != 2:
        raise TransportCcParseError("bad RTCP version")
    if pt != RTCP_PT_RTPFB or b0 & 0x1F != RTPFB_FMT_TRANSPORT_CC:
        raise TransportCcParseError("not a transport-cc feedback (RTPFB FMT 15)")
    if (words + 1) * 4 != n:
        raise TransportCcParseError("length field does not match the packet size")
    stop = n
    if b0 & 0x20:
        padding = view[n - 1]
        if padding == 0 or padding > n - HEADER_SIZE:
            raise TransportCcParseError("bad padding")
        stop = n - padding
    sender, media, base, count, ref_fb = _FEEDBACK_FIELDS.unpack_from(view, 4)
    if count == 0:
        raise TransportCcParseError("status count 0")
    reference = ref_fb >> 8
    if reference & 0x800000:
        reference -= 1 << REFERENCE_TIME_BITS

    # Chunks → status symbols, and the positions of the received ones. A run of received
    # symbols needs that many delta bytes, so it is checked against the room left before it
    # is expanded: the work stays bounded by the packet size.
    parts: list[bytes] = []
    positions: list[int] = []
    have = 0
    min_delta_bytes = 0
    i = HEADER_SIZE
    while have < count:
        if i + 2 > stop:
            raise TransportCcParseError("chunks truncated")
        chunk = (view[i] << 8) | view[i + 1]
        i += 2
        left = count - have
        if not chunk & 0x8000:  # run length
            sym = (chunk >> 13) & 0x03
            run = min(chunk & RUN_LENGTH_MAX, left)
            if run == 0:
                continue
            if sym == 3:
                raise TransportCcParseError("reserved status symbol")
            min_delta_bytes += sym * run
            if i + min_delta_bytes > stop:
                raise TransportCcParseError("deltas truncated")
            parts.append(bytes((sym,)) * run)
            if sym:
                positions.extend(range(have, have + run))
            have += run
        elif not chunk & 0x4000:  # one-bit vector
            k = min(ONE_BIT_CAPACITY, left)
            syms = bytes((chunk >> (ONE_BIT_CAPACITY - 1 - j)) & 0x01 for j in range(k))
            min_delta_bytes += sum(syms)
            parts.append(syms)
            positions.extend(have + j for j in range(k) if syms[j])
            have += k
        else:  # two-bit vector
            k = min(TWO_BIT_CAPACITY, left)
            syms = bytes((chunk >> (2 * (TWO_BIT_CAPACITY - 1 - j))) & 0x03 for j in range(k))
            if 3 in syms:
                raise TransportCcParseError("reserved status symbol")
            min_delta_bytes += sum(syms)
            parts.append(syms)
            positions.extend(have + j for j in range(k) if syms[j])
            have += k
    statuses = b"".join(parts)
    if i + min_delta_bytes > stop:
        raise TransportCcParseError("deltas truncated")

    received: list[ReceivedPacket] = []
    t_us = reference * REFERENCE_TICK_US
    for pos in positions:
        if statuses[pos] == SMALL_DELTA:
            ticks = view[i]
            i += 1
        else:
            ticks = _I16.unpack_from(view, i)[0]
            i += 2
        delta_us = ticks * DELTA_TICK_US
        t_us += delta_us
        received.append(ReceivedPacket((base + pos) & 0xFFFF, delta_us, t_us))
    if stop - i > 3:
        raise TransportCcParseError("bytes left after the receive deltas")
    return TransportCcFeedback(sender, media, base, count, reference, ref_fb & 0xFF,
                               statuses, received)

