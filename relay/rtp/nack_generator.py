"""Producer-side loss detection: which sequence numbers to NACK upstream, and when.

Modelled on libwebrtc's ``NackModule`` (and mediasoup's ``NackGenerator``), sans-I/O:
feed every received sequence number to :meth:`NackGenerator.on_packet` and call
:meth:`NackGenerator.on_timer` every :attr:`NackGenerator.timer_interval` seconds (the
exact period does not matter; retries are due by time, not by calls). Both return the
sequence numbers to put in a NACK now, oldest first (ready for ``rtcp.Nack``). Times are
seconds on a monotonic clock, passed in as ``now``.

Rules (thresholds are constructor arguments; defaults in brackets):

- A gap between the newest sequence number and a newer one puts every missing number on
  the NACK list and NACKs them at once.
- An older packet that is on the list is a recovery (retransmission or late arrival) and
  leaves the list; an older packet not on the list (a duplicate) is ignored, as is the
  newest one again.
- Each entry is NACKed again when ``max(rtt, min_retry_interval)`` [rtt 0.1 s until told,
  20 ms] has passed since its last NACK, at most ``max_retries`` [10] times in all; then
  it is given up.
- Entries more than ``max_packet_age`` [10000] sequence numbers behind the newest are
  dropped (too old to be of any use).
- The list holds at most ``max_nack_packets`` [1000] entries. When a new gap would exceed
  that, entries older than the last key frame are dropped first (they are no longer needed
  to decode); if that is not enough the list is cleared, the new gap is not NACKed, and a
  key frame is requested.
- A jump of more than ``max_nack_packets`` ahead, or more than ``max_packet_age`` behind,
  is a reset (the sender restarted its numbering, or an outage): the list is cleared, the
  new number becomes the newest, nothing is NACKed, and a key frame is requested.
- When an entry is given up (retries exhausted) or dropped as too old, the loss cannot be
  repaired, so a key frame is requested too (``keyframe_on_unrecoverable``; turn it off
  for audio). libwebrtc leaves that to the jitter buffer; an SFU has none, and a consumer
  would otherwise freeze until its own receiver asks.

A key-frame request is a flag: :meth:`NackGenerator.take_keyframe_request` returns it and
clears it, so the caller coalesces requests naturally.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RTT = 0.1
MIN_RETRY_INTERVAL = 0.02
MAX_RETRIES = 10
MAX_NACK_PACKETS = 1000
MAX_PACKET_AGE = 10000
TIMER_INTERVAL = 0.02
_TIME_SLACK = 1e-6  # a retry due within a microsecond is due now (float time, timer jitter)


@dataclass
class _Entry:
    ext_seq: int
    sent_at: float
    retries: int


@dataclass
class NackGeneratorStats:
    nacks_sent: int = 0  # sequence numbers NACKed, retries included
    recovered: int = 0  # entries that arrived after being NACKed
    given_up: int = 0  # entries that ran out of retries
    dropped_too_old: int = 0  # entries dropped by max_packet_age or an older key frame
    resets: int = 0
    overflows: int = 0  # the list was cleared because it would exceed max_nack_packets
    keyframe_requests: int = 0


class NackGenerator:
    """Loss detection and NACK scheduling for one incoming stream. See the module doc."""

    timer_interval = TIMER_INTERVAL

    def __init__(
        self,
        *,
        max_retries: int = MAX_RETRIES,
        min_retry_interval: float = MIN_RETRY_INTERVAL,
        max_nack_packets: int = MAX_NACK_PACKETS,
        max_packet_age: int = MAX_PACKET_AGE,
        rtt: float = DEFAULT_RTT,
        keyframe_on_unrecoverable: bool = True,
    ) -> None:
        if not 0 < max_nack_packets < max_packet_age < 0x8000:
            raise ValueError("need 0 < max_nack_packets < max_packet_age < 32768")
        self.max_retries = max_retries
        self.min_retry_interval = min_retry_interval
        self.max_nack_packets = max_nack_packets
        self.max_packet_age = max_packet_age
        self.rtt = rtt
        self.keyframe_on_unrecoverable = keyframe_on_unrecoverable
        self._newest = -1  # extended sequence number of the newest packet, -1 = none yet
        self._entries: dict[int, _Entry] = {}  # by extended seq, insertion order = seq order
        self._keyframes: list[int] = []  # extended seqs of recent key-frame packets, ascending
        self._keyframe_requested = False
        self.stats = NackGeneratorStats()

    # -- input -----------------------------------------------------------------
    def set_rtt(self, rtt: float) -> None:
        """Update the round-trip time (seconds) that spaces retries."""
        self.rtt = max(0.0, rtt)

    def on_packet(self, seq: int, now: float, is_keyframe: bool = False) -> list[int]:
        """Account a received packet; returns the sequence numbers to NACK at once."""
        seq &= 0xFFFF
        if self._newest < 0:
            self._newest = seq + (1 << 16)  # one cycle up: older packets still extend >= 0
            if is_keyframe:
                self._keyframes.append(self._newest)
            return []
        newest = self._newest
        delta = (seq - newest) & 0xFFFF
        if delta == 1 and not self._entries and not is_keyframe:
            self._newest = newest + 1  # hot path: the next packet, nothing pending
            return []
        if delta >= 0x8000:
            delta -= 0x10000
        elif delta == 0:
            return []
        ext = newest + delta
        if delta < 0:
            if -delta > self.max_packet_age:
                self._reset(seq, is_keyframe)
                return []
            if self._entries.pop(ext, None) is not None:
                self.stats.recovered += 1
            if is_keyframe:
                self._add_keyframe(ext)
            return []
        missing = delta - 1
        if missing > self.max_nack_packets:
            self._reset(seq, is_keyframe)
            return []
        if is_keyframe:
            self._add_keyframe(ext)
        if self._entries:
            self._drop_older_than(ext - self.max_packet_age)
        if missing and len(self._entries) + missing > self.max_nack_packets:
            self._drop_before_last_keyframe()
            if len(self._entries) + missing > self.max_nack_packets:
                # As libwebrtc: give up on repair, a key frame makes the old and new
                # losses irrelevant, so nothing is NACKed.
                self._entries.clear()
                self.stats.overflows += 1
                self._request_keyframe()
                self._newest = ext
                return []
        first_missing = self._newest + 1
        self._newest = ext
        if not missing:
            return []
        for e in range(first_missing, ext):
            self._entries[e] = _Entry(e, now, 1)
        self.stats.nacks_sent += missing
        return [e & 0xFFFF for e in range(first_missing, ext)]

    def on_timer(self, now: float) -> list[int]:
        """Entries due for another NACK at ``now``; gives up those out of retries."""
        interval = max(self.rtt, self.min_retry_interval) - _TIME_SLACK
        due: list[int] = []
        gave_up: list[int] = []
        for ext, entry in self._entries.items():
            if now - entry.sent_at < interval:
                continue
            if entry.retries >= self.max_retries:
                gave_up.append(ext)
                continue
            entry.retries += 1
            entry.sent_at = now
            due.append(ext & 0xFFFF)
        for ext in gave_up:
            del self._entries[ext]
        if gave_up:
            self.stats.given_up += len(gave_up)
            if self.keyframe_on_unrecoverable:
                self._request_keyframe()
        self.stats.nacks_sent += len(due)
        return due

    # -- output ------------------------------------------------------------------
    def take_keyframe_request(self) -> bool:
        """True once after something made a key frame necessary; clears the flag."""
        requested = self._keyframe_requested
        self._keyframe_requested = False
        return requested

    def is_missing(self, seq: int) -> bool:
        """Whether `seq` is one we are waiting for: lost (NACKed or not yet) or newer than
        any seen. False for a packet already received (a duplicate, e.g. a sender's RTX
        bandwidth probe)."""
        if self._newest < 0:
            return True
        delta = (seq - self._newest) & 0xFFFF
        if delta == 0:
            return False
        if delta < 0x8000:
            return True
        return (self._newest + delta - 0x10000) in self._entries

    @property
    def pending(self) -> list[int]:
        """Sequence numbers currently awaiting recovery, oldest first."""
        return [e & 0xFFFF for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    # -- internals ---------------------------------------------------------------
    def _request_keyframe(self) -> None:
        self._keyframe_requested = True
        self.stats.keyframe_requests += 1

    def _reset(self, seq: int, is_keyframe: bool) -> None:
        self._entries.clear()
        self._keyframes.clear()
        self._newest = seq + (1 << 16)
        if is_keyframe:
            self._keyframes.append(self._newest)
        self.stats.resets += 1
        self._request_keyframe()

    def _add_keyframe(self, ext: int) -> None:
        if self._keyframes and self._keyframes[-1] >= ext:
            if ext not in self._keyframes:  # a late key-frame packet: keep the list sorted
                self._keyframes.append(ext)
                self._keyframes.sort()
        else:
            self._keyframes.append(ext)
        # Only the newest few matter; keep memory bounded.
        if len(self._keyframes) > 64:
            del self._keyframes[:-64]

    def _drop_older_than(self, oldest_kept: int) -> None:
        # Entries are in ascending order, so only the head needs looking at (O(1) per packet).
        entries = self._entries
        dropped = 0
        while entries:
            oldest = next(iter(entries))
            if oldest >= oldest_kept:
                break
            del entries[oldest]
            dropped += 1
        if dropped:
            self.stats.dropped_too_old += dropped
            if self.keyframe_on_unrecoverable:
                self._request_keyframe()

    def _drop_before_last_keyframe(self) -> None:
        if not self._keyframes:
            return
        last = self._keyframes[-1]
        stale = [e for e in self._entries if e < last]
        for e in stale:
            del self._entries[e]
        self.stats.dropped_too_old += len(stale)
