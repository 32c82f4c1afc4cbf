"""Audio levels (RFC 6464) and the two observers built on them: loudest producers and the
dominant speaker. Sans-I/O: the caller feeds levels and calls ``on_interval()`` from its
own timer every ``interval`` seconds.

Levels follow RFC 6464: ``level`` is 0..127 meaning -level dBov (0 is loudest, 127 is
silence), ``voice`` is the V bit. The observers report *volumes* as dBov, -127..0. They
accept ``voice`` but do not use it (as mediasoup): many senders never set the V bit, and
the level alone says who is loud.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

Packet = bytes | bytearray | memoryview
ProducerId = Hashable

MIN_DBOV = -127


def parse_audio_level(data: Packet) -> tuple[bool, int] | None:
    """(voice, level) from the ssrc-audio-level extension's data; None if empty."""
    if len(data) < 1:
        return None
    return bool(data[0] & 0x80), data[0] & 0x7F


def find_header_extension(packet: Packet, ext_id: int) -> Packet | None:
    """The data of header extension ``ext_id`` in a whole RTP packet, or None.

    Handles the one-byte (0xBEDE, RFC 8285 4.2) and two-byte (0x100x, 4.3) forms; stops
    without error at anything malformed.
    """
    n = len(packet)
    if n < 12 or packet[0] >> 6 != 2 or not packet[0] & 0x10:
        return None
    pos = 12 + 4 * (packet[0] & 0x0F)
    if pos + 4 > n:
        return None
    profile = (packet[pos] << 8) | packet[pos + 1]
    end = pos + 4 + 4 * ((packet[pos + 2] << 8) | packet[pos + 3])
    if end > n:
        return None
    pos += 4
    if profile == 0xBEDE:
        while pos < end:
            b = packet[pos]
            if b == 0:  # padding
                pos += 1
                continue
            ident, length = b >> 4, (b & 0x0F) + 1
            if ident == 15:  # reserved: stop processing (RFC 8285 4.2)
                return None
            if pos + 1 + length > end:
                return None
            if ident == ext_id:
                return packet[pos + 1 : pos + 1 + length]
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos < end:
            ident = packet[pos]
            if ident == 0:
                pos += 1
                continue
            if pos + 2 > end:
                return None
            length = packet[pos + 1]
            if pos + 2 + length > end:
                return None
            if ident == ext_id:
                return packet[pos + 2 : pos + 2 + length]
            pos += 2 + length
    return None


def audio_level_from_packet(packet: Packet, ext_id: int) -> tuple[bool, int] | None:
    """(voice, level) of a whole RTP packet carrying ssrc-audio-level as ``ext_id``."""
    data = find_header_extension(packet, ext_id)
    return None if data is None else parse_audio_level(data)


@dataclass(frozen=True)
class ProducerVolume:
    producer_id: ProducerId
    volume: int  # average dBov over the interval, -127..0


@dataclass(frozen=True)
class AudioLevelEvent:
    """``name`` is "volumes" (``volumes`` loudest first) or "silence" (``volumes`` empty)."""

    name: str
    volumes: list[ProducerVolume]


class _Accumulator:
    __slots__ = ("total", "count", "voiced")

    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.voiced = 0

    def reset(self) -> None:
        self.total = self.count = self.voiced = 0


class AudioLevelObserverCore:
    """The loudest producers per interval, as mediasoup's AudioLevelObserver.

    Each interval, a producer's volume is minus the mean of the levels received from it;
    those at or above ``threshold`` dBov are reported loudest first, at most
    ``max_entries`` of them, as a "volumes" event. The first interval with none after one
    that had some gives a single "silence" event; further silent intervals (and those
    before any volumes at all) give nothing. Paused observers give nothing and forget levels fed meanwhile.
    """

    def __init__(self, max_entries: int = 1, threshold: int = -80, interval: float = 1.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not MIN_DBOV <= threshold <= 0:
            raise ValueError("threshold must be -127..0 dBov")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.max_entries = max_entries
        self.threshold = threshold
        self.interval = interval
        self.paused = False
        self._producers: dict[ProducerId, _Accumulator] = {}
        self._silent = True  # as mediasoup: no "silence" before the first "volumes"

    def add_producer(self, producer_id: ProducerId) -> None:
        self._producers.setdefault(producer_id, _Accumulator())

    def remove_producer(self, producer_id: ProducerId) -> None:
        self._producers.pop(producer_id, None)

    def on_level(self, producer_id: ProducerId, level: int, voice: bool = False) -> None:
        """Feed one packet's level (0..127, -dBov). Unknown producers are ignored."""
        acc = self._producers.get(producer_id)
        if acc is None or self.paused:
            return
        acc.total += min(127, max(0, level))
        acc.count += 1

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        for acc in self._producers.values():
            acc.reset()

    def on_interval(self) -> AudioLevelEvent | None:
        """End the interval: the event to emit, if any."""
        volumes: list[ProducerVolume] = []
        for producer_id, acc in self._producers.items():
            if acc.count:
                # Round half away from zero so -50.5 dBov reports as -51, not banker's -50.
                volume = -int(acc.total / acc.count + 0.5)
                if volume >= self.threshold:
                    volumes.append(ProducerVolume(producer_id, volume))
            acc.reset()
        if self.paused:
            return None
        if volumes:
            volumes.sort(key=lambda v: v.volume, reverse=True)
            self._silent = False
            return AudioLevelEvent("volumes", volumes[: self.max_entries])
        if not self._silent:
            self._silent = True
            return AudioLevelEvent("silence", [])
        return None


class ActiveSpeakerCore:
    """The dominant speaker, by smoothed loudness with hysteresis.

    Each interval, a producer's *activity* is the mean over its packets of how far the
    level is above ``silence_floor`` dBov (0 for a packet at or below it, and 0 for a
    producer that sent nothing). A producer's *score* is an exponential moving average:
    ``score = (1 - smoothing) * score + smoothing * activity``.

    The dominant speaker changes to the top scorer C only when C has been the top scorer,
    with a score above ``min_score`` and at least ``switch_ratio`` times the current
    dominant speaker's score, for ``switch_intervals`` consecutive intervals. So a cough
    does not take the floor, a louder, sustained speaker does. With no dominant speaker
    (at the start, or after it was removed) the first condition alone decides. The
    dominant speaker stays dominant through silence; it changes only to someone else.
    """

    def __init__(
        self,
        interval: float = 0.3,
        *,
        silence_floor: int = -70,
        smoothing: float = 0.5,
        min_score: float = 5.0,
        switch_ratio: float = 1.5,
        switch_intervals: int = 2,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.interval = interval
        self.silence_floor = silence_floor
        self.smoothing = smoothing
        self.min_score = min_score
        self.switch_ratio = switch_ratio
        self.switch_intervals = max(1, switch_intervals)
        self._activity: dict[ProducerId, _Accumulator] = {}
        self.scores: dict[ProducerId, float] = {}
        self.dominant: ProducerId | None = None
        self._candidate: ProducerId | None = None
        self._candidate_intervals = 0

    def add_producer(self, producer_id: ProducerId) -> None:
        self._activity.setdefault(producer_id, _Accumulator())
        self.scores.setdefault(producer_id, 0.0)

    def remove_producer(self, producer_id: ProducerId) -> None:
        self._activity.pop(producer_id, None)
        self.scores.pop(producer_id, None)
        if self.dominant == producer_id:
            self.dominant = None
        if self._candidate == producer_id:
            self._candidate = None
            self._candidate_intervals = 0

    def on_level(self, producer_id: ProducerId, level: int, voice: bool = False) -> None:
        acc = self._activity.get(producer_id)
        if acc is None:
            return
        acc.total += max(0, -min(127, max(0, level)) - self.silence_floor)
        acc.count += 1

    def on_interval(self) -> ProducerId | None:
        """End the interval; returns the new dominant speaker when it changed, else None."""
        for producer_id, acc in self._activity.items():
            activity = acc.total / acc.count if acc.count else 0.0
            score = self.scores[producer_id]
            self.scores[producer_id] = (1 - self.smoothing) * score + self.smoothing * activity
            acc.reset()
        if not self.scores:
            return None
        # Ties go to the producer added first (dict order), so results are deterministic.
        top = max(self.scores, key=lambda p: self.scores[p])
        top_score = self.scores[top]
        qualifies = top != self.dominant and top_score >= self.min_score
        if qualifies and self.dominant is not None:
            qualifies = top_score >= self.switch_ratio * self.scores[self.dominant]
        if not qualifies:
            self._candidate = None
            self._candidate_intervals = 0
            return None
        if top == self._candidate:
            self._candidate_intervals += 1
        else:
            self._candidate = top
            self._candidate_intervals = 1
        if self._candidate_intervals < self.switch_intervals:
            return None
        self.dominant = top
        self._candidate = None
        self._candidate_intervals = 0
        return top
