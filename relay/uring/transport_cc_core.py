"""The transport-cc receiver's loops in C (transport_cc_core.c).

`small_deltas` is `relay.rtp.transport_cc.small_deltas` (the bulk feedback encoder's
deltas) in C; the worker gives it to each `TransportCcReceiver`. The receive core records
in-order arrivals itself (`tcc_record`, through `relay.transport.core_drain`).
"""

from __future__ import annotations

from array import array

from relay.uring._ring import ffi, lib

__all__ = ["small_deltas"]


def small_deltas(arrivals: array, reference: int) -> bytearray | None:
    """As `relay.rtp.transport_cc.small_deltas`; ``arrivals`` is an array of doubles."""
    count = len(arrivals)
    out = ffi.new("unsigned char[]", count)
    if lib.tcc_small_deltas(ffi.from_buffer("double[]", arrivals), count, reference, out) < 0:
        return None
    return bytearray(ffi.buffer(out, count))
