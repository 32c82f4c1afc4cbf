"""A producer stream's receive state kept in the C receive core's struct (`struct rx_stream`,
relay/uring/receive_core.c), so the C path and the Python path share one copy of it.

The C core takes the common packet whole (the newest of its stream, in order, no key frame,
nothing the NACK generator waits for) and updates these fields itself; every other packet
goes through the Python classes below, which are the ordinary `InputStream`, `ReceiveStats`,
`NackGenerator` and `NackBuffer` with the fields both paths touch read from and written to
the struct (properties), so RR blocks, stats, bitrates and NACKs read exact numbers whichever
path a packet took. Only the producer uses them, and only when `receive_core.ENABLED`.
"""

from __future__ import annotations

from typing import Any

from relay.rtp.keyframe import is_vp8_keyframe
from relay.rtp.nack_buffer import (
    AUDIO_CAPACITY,
    AUDIO_MAX_AGE,
    VIDEO_CAPACITY,
    VIDEO_MAX_AGE,
    NackBuffer,
    NackBufferStats,
)
from relay.rtp.nack_generator import NackGenerator
from relay.rtp.receive_stats import ReceiveStats
from relay.rtp.rewriter import InputStream
from relay.uring.receive_core import Store, ffi

from .stream_receiver import StreamReceiver


def _field(name: str, doc: str = "") -> property:
    def get(self: Any) -> Any:
        return getattr(self._c, name)

    def put(self: Any, value: Any) -> None:
        setattr(self._c, name, value)

    return property(get, put, doc=doc)


class CoreInputStream(InputStream):
    __slots__ = ("_c",)

    def __init__(self, ssrc: int, c: Any) -> None:
        self._c = c
        super().__init__(ssrc)

    max_seq = _field("in_max_seq")
    max_ts = _field("in_max_ts")
    last_time = _field("in_last_time")

    @property
    def started(self) -> bool:  # type: ignore[override]
        return bool(self._c.in_started)

    @started.setter
    def started(self, value: bool) -> None:
        self._c.in_started = 1 if value else 0


class CoreReceiveStats(ReceiveStats):
    def __init__(self, clock_rate: int, c: Any) -> None:
        self._c = c
        c.clock_rate = clock_rate
        super().__init__(clock_rate)

    max_seq = _field("st_max_seq")
    cycles = _field("st_cycles")
    received = _field("st_received")
    bytes_received = _field("st_bytes")
    _jitter = _field("st_jitter")

    @property
    def _started(self) -> bool:
        return bool(self._c.st_started)

    @_started.setter
    def _started(self, value: bool) -> None:
        self._c.st_started = 1 if value else 0

    @property
    def _last_transit(self) -> float | None:
        return self._c.st_last_transit if self._c.st_has_transit else None

    @_last_transit.setter
    def _last_transit(self, value: float | None) -> None:
        self._c.st_has_transit = 0 if value is None else 1
        self._c.st_last_transit = 0.0 if value is None else value


class CoreNackGenerator(NackGenerator):
    """`_newest` lives in the struct; after each Python step the struct learns whether the
    generator waits for packets and the oldest it waits for (the C core takes the next
    packet in order as long as no entry becomes too old with it)."""

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self._c = c
        super().__init__(**kwargs)
        c.nack_max_age = self.max_packet_age
        self._entries_changed()

    _newest = _field("nack_newest")

    def _entries_changed(self) -> None:
        entries = self._entries
        c = self._c
        c.nack_busy = 1 if entries else 0
        # (entries are added in ascending order: the first is the oldest)
        c.nack_oldest = next(iter(entries)) if entries else -1

    def on_packet(self, seq: int, now: float, is_keyframe: bool = False) -> list[int]:
        lost = super().on_packet(seq, now, is_keyframe)
        self._entries_changed()
        return lost

    def on_timer(self, now: float) -> list[int]:
        due = super().on_timer(now)
        self._entries_changed()
        return due


class CoreNackBuffer(NackBuffer):
    """The retransmission store in C slots (`struct rx_store`), NackBuffer's rules."""

    def __init__(self, capacity: int, max_age: float, slot_size: int) -> None:
        # (NackBuffer's own arrays are not made: the C store replaces them)
        self.capacity = capacity
        self.max_age = max_age
        self.core = Store(capacity, max_age, slot_size)

    def store(self, seq: int, packet: Any, now: float) -> None:
        self.core.put(seq, packet, now)

    def get(self, seq: int, now: float) -> bytes | None:
        return self.core.get(seq, now)

    def clear(self) -> None:
        self.core.clear()

    def __len__(self) -> int:
        return len(self.core)

    @property
    def stats(self) -> NackBufferStats:  # type: ignore[override]
        c = self.core.c
        return NackBufferStats(stored=c.stored, hits=c.hits, too_old=c.too_old,
                               evicted=c.evicted, not_stored=c.not_stored)


class CoreStreamReceiver(StreamReceiver):
    """A `StreamReceiver` whose packet-path state is the C struct `c` (see the module doc)."""

    __slots__ = ("_c", "_slot_size")

    def __init__(self, kind: str, mime_type: str, clock_rate: int, nack: bool, c: Any,
                 slot_size: int) -> None:
        self._c = c  # first: the base's __init__ sets the VP8 frame state below
        super().__init__(kind, mime_type, clock_rate, nack)
        self._slot_size = slot_size
        c.vp8 = 1 if self.detector is is_vp8_keyframe else 0
        c.nack = 1 if nack else 0
        self.stats = CoreReceiveStats(clock_rate, c)
        if nack:
            self.nack = CoreNackGenerator(c, keyframe_on_unrecoverable=kind == "video")

    # The VP8 temporal-layer accounting (StreamReceiver.on_packet), which the core keeps
    # for the packets it takes (tid_bytes: a C array; indexing and += work as on the list).
    _frame_ts = _field("frame_ts")
    _frame_tid = _field("frame_tid")
    _tid_bytes = _field("tid_bytes")

    @property
    def takes_all(self) -> bool:
        """The C core can do this stream's per-packet work (key-frame detection included)."""
        return self.detector is None or self.detector is is_vp8_keyframe

    def enable_store(self, enabled: bool) -> None:
        if enabled and self.store is None:
            video = self.kind == "video"
            self.store = CoreNackBuffer(VIDEO_CAPACITY if video else AUDIO_CAPACITY,
                                        VIDEO_MAX_AGE if video else AUDIO_MAX_AGE,
                                        self._slot_size)
            self._c.store = self.store.core.c
        elif not enabled:
            self._c.store = ffi.NULL
            self.store = None

    def reset(self) -> None:
        clock_rate = self.stats.clock_rate
        self.stats = CoreReceiveStats(clock_rate, self._c)
        if self.nack is not None:
            self.nack = CoreNackGenerator(self._c, keyframe_on_unrecoverable=self.kind == "video")
        if self.store is not None:
            self.store.clear()
