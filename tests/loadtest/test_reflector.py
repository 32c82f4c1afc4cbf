"""The self-test reflector (reflector_core.c): every datagram reaches every destination of
its input, unchanged and in order, with runs of equal-sized datagrams sent as one GSO send,
and datagram by datagram when GSO is off."""

from __future__ import annotations

import os
import select
import socket

import pytest

from relay.loadtest.traffic_lib import ffi, lib

# Runs that split where the size grows, keep one shorter datagram at a run's end (GSO allows
# it), an empty datagram, and a run longer than one GSO send holds (65000 / 1400 = 46).
SIZES = [200] * 5 + [120] + [1200] * 3 + [0] + [1400] * 50 + [300, 300]


def _datagrams() -> list[bytes]:
    return [os.urandom(size) for size in SIZES]


def _udp(rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return sock


def _read(sock: socket.socket, count: int) -> list[bytes]:
    out = []
    while len(out) < count:
        ready, _, _ = select.select([sock], [], [], 5)
        assert ready, f"got {len(out)} of {count}"
        out.append(sock.recv(2048))
    return out


@pytest.mark.parametrize("gso", [True, False])
def test_reflector_delivers_every_datagram_to_every_destination(gso: bool):
    sender, inp, out = _udp(), _udp(1 << 20), _udp()
    sinks = [_udp(1 << 20), _udp(1 << 20), _udp(1 << 20)]
    try:
        addrs = bytearray()
        for sink in sinks:
            buf = ffi.new("unsigned char[]", lib.LT_ADDR_SIZE)
            assert lib.lt_make_addr(b"127.0.0.1", sink.getsockname()[1], buf) == 0
            addrs += ffi.buffer(buf)[:]
        c_in = ffi.new("int[]", [inp.fileno()])
        c_off = ffi.new("int[]", [0, len(sinks)])
        c_dst = ffi.from_buffer("unsigned char[]", addrs)
        stats = ffi.new("struct lt_reflect_stats *")
        stats.gso = 1 if gso else 0
        datagrams = _datagrams()
        for d in datagrams:
            sender.sendto(d, inp.getsockname())
        for _ in range(100):
            assert lib.lt_reflect(c_in, 1, c_off, c_dst, out.fileno(), 50, stats) == 0
            if stats.received == len(datagrams):
                break
        assert stats.received == len(datagrams)
        assert stats.sent == len(datagrams) * len(sinks) and stats.send_errors == 0
        for sink in sinks:
            assert _read(sink, len(datagrams)) == datagrams
            assert not select.select([sink], [], [], 0.05)[0]  # nothing more
        if gso:
            assert stats.gso == 1
            # Runs: 200x5+120 | 1200x3+0 | 1400x46 | 1400x4 | 300x2 per sink (64 per recvmmsg).
            assert stats.sends < len(datagrams) * len(sinks) / 4
        else:
            assert stats.sends == len(datagrams) * len(sinks)
    finally:
        for sock in (sender, inp, out, *sinks):
            sock.close()
