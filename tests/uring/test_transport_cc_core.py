"""transport_cc_core.c against the Python it replaces on the hot path: the bulk encoder's
deltas (relay.rtp.transport_cc.small_deltas) and the in-order record (on_rtp's fast path)."""

from __future__ import annotations

import random
from array import array

import pytest
from relay.uring._ring import ffi, lib

from relay.rtp.packet import build_rtp
from relay.rtp.transport_cc import TransportCcReceiver, read_transport_seq, small_deltas
from relay.uring import transport_cc_core

SENDER = 0x52454C59
MEDIA = 0x4D2


@pytest.mark.parametrize("seed", range(4))
def test_small_deltas_in_c_are_the_pythons(seed):
    """Random arrivals: steady, on 125 µs ties (either side), reordered (negative),
    long gaps (above 63.75 ms), large times; the same bytes or the same refusal."""
    rng = random.Random(seed)
    refused = taken = 0
    for _ in range(3000):
        t = rng.choice((0.0, 5.0, 1234.5678, 86400.0 * 30))
        reference = round(t * 1_000_000) // 64_000
        arrivals = array("d")
        for _ in range(rng.choice((1, 2, 10, 300))):
            r = rng.random()
            if r < 0.002:
                t -= 0.0003  # reordered
            elif r < 0.004:
                t += 0.07  # beyond a small delta
            else:
                t += rng.choice((0.0, 0.000125, 0.000250, 0.0000375, rng.expovariate(3000)))
            arrivals.append(t)
        mine = transport_cc_core.small_deltas(arrivals, reference)
        assert mine == small_deltas(arrivals, reference), (list(arrivals), reference)
        refused += mine is None
        taken += mine is not None
    assert refused > 100 and taken > 100


@pytest.mark.parametrize("seed", range(2))
def test_a_receiver_with_the_c_deltas_builds_the_same_feedback(seed):
    rng = random.Random(seed)
    c = TransportCcReceiver(deltas=transport_cc_core.small_deltas)
    py = TransportCcReceiver()
    seq, t = 65000, 3.0
    for _ in range(40):
        for _ in range(rng.choice((5, 300, 1250, 3000))):
            if rng.random() < 0.01:
                seq += rng.choice((1, 5))
            t += rng.choice((0.00004, 0.000125, rng.expovariate(2000)))
            c.on_packet(seq & 0xFFFF, t, MEDIA)
            py.on_packet(seq & 0xFFFF, t, MEDIA)
            seq += 1
        size = rng.choice((1200, 300))
        assert c.build_feedback(SENDER, size) == py.build_feedback(SENDER, size)


def _packet(wide: int | None, *, two_byte: bool = False, ext_id: int = 5) -> bytes:
    extensions = {1: b"\x90"}
    if wide is not None:
        extensions[ext_id] = wide.to_bytes(2, "big")
    return build_rtp(payload_type=111, sequence_number=1, timestamp=0, ssrc=0x1234,
                     payload=b"\x00" * 40, extensions=extensions, two_byte_extensions=two_byte)


class Window:
    """A struct tcc_window over a receiver-like table."""

    def __init__(self, end: int, limit: int) -> None:
        self.times = array("d", [-1.0]) * 16
        self.w = ffi.new("struct tcc_window *")
        self._times_c = ffi.from_buffer("double[]", self.times)
        self.w.times = self._times_c
        self.w.mask = 15
        self.w.ext_id = 5
        self.w.end = end
        self.w.limit = limit

    def record(self, packet: bytes, now: float, n: int | None = None) -> int:
        n = len(packet) if n is None else n
        return lib.tcc_record(self.w, ffi.from_buffer(packet), n, 0x1234, now)


def test_record_takes_the_next_number_in_order_and_gives_up_at_anything_else():
    win = Window(end=0x1FFFE, limit=0x20003)  # the next numbers: 0xFFFE, 0xFFFF, 0, ...
    assert win.record(_packet(0xFFFE), 1.0) == 1
    assert win.record(_packet(0xFFFF, two_byte=True), 1.1) == 1
    assert win.record(_packet(None), 1.15) == 1  # no number: nothing to record (as on_rtp)
    assert win.record(_packet(0, ext_id=6), 1.16) == 1  # another element only
    assert win.record(_packet(0), 1.2) == 1
    assert (win.w.end, win.w.recorded, win.w.media_ssrc) == (0x20001, 3, 0x1234)
    assert [win.times[(0x1FFFE + k) & 15] for k in range(3)] == [1.0, 1.1, 1.2]
    assert win.record(_packet(5), 1.3) == 0  # a gap: Python records it, and what follows
    assert win.w.limit == -1
    assert win.record(_packet(1), 1.4) == 0
    assert win.w.end == 0x20001 and win.w.recorded == 3


def test_record_stops_at_the_limit():
    win = Window(end=7, limit=8)
    assert win.record(_packet(7), 1.0) == 1
    assert win.record(_packet(8), 1.1) == 0  # no room: the receiver makes it
    assert win.w.end == 8 and win.w.limit == -1


def test_record_never_reads_past_the_packet():
    """Cut anywhere, the number is read only when the element lies inside: as Python's
    reader, which the receiver uses for every packet the core does not record."""
    for two_byte in (False, True):
        packet = _packet(3, two_byte=two_byte)
        for cut in range(len(packet) + 1):
            buf = packet[:cut]
            win = Window(end=3, limit=100)
            handled = win.record(buf + b"\xff" * 64, 1.0, n=cut)  # bytes beyond n: not read
            recorded = win.w.recorded == 1
            assert handled == 1
            assert recorded == (read_transport_seq(buf, cut, 5) == 3), (two_byte, cut)


@pytest.mark.parametrize("seed", range(3))
def test_the_table_is_never_resized_while_the_core_holds_it(seed):
    """The receive core holds a pointer to the receiver's table (the array is exported):
    every operation on it (culls, gaps, late packets, growth, feedback) must keep it
    whole, and record what a receiver nobody holds records. (A cull that stopped at the
    start of a block assigned an empty slice, which the array counts as a resize: the
    matrix's worker raised on it thousands of times.)"""
    rng = random.Random(seed)
    held, free = TransportCcReceiver(), TransportCcReceiver()
    seq, t = rng.randrange(65536), 1.0
    for _ in range(20000):
        export = ffi.from_buffer("double[]", held._times)
        t += rng.choice((0.0, 0.0001, 0.001, 0.01, 0.3))
        s = seq
        r = rng.random()
        if r < 0.01:
            s -= rng.randint(1, 100)
        elif r < 0.02:
            seq += rng.randint(1, 300)
        else:
            seq += 1
        assert held.on_packet(s & 0xFFFF, t, MEDIA) == free.on_packet(s & 0xFFFF, t, MEDIA)
        del export
        if rng.random() < 0.02:
            assert held.build_feedback(SENDER) == free.build_feedback(SENDER)
    assert (held.packets, held.duplicates, held.refused, held.evicted, len(held)) == \
        (free.packets, free.duplicates, free.refused, free.evicted, len(free))
