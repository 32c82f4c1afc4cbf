"""relay.transport.port_allocator: range, reuse order, exhaustion, explicit ports."""

from __future__ import annotations

import socket

import pytest

from relay.transport.port_allocator import PortAllocator
from worker_proto.errors import ArgumentError, ResourceExhaustedError


def test_allocates_in_range_until_exhausted_then_reuses_released_ports():
    ports = PortAllocator(44100, 44104)
    socks = []
    with pytest.raises(ResourceExhaustedError, match=r"no free UDP port on 127\.0\.0\.1 .*44100.44104"):
        for _ in range(10):
            socks.append(ports.allocate("127.0.0.1"))
    assert 1 <= len(socks) <= 5  # other processes may hold some of them
    bound = [s.getsockname()[1] for s in socks]
    assert len(set(bound)) == len(bound) and all(44100 <= p <= 44104 for p in bound)
    assert ports.in_use == frozenset(bound)
    assert all(not s.getblocking() for s in socks)
    victim = socks.pop(0)
    victim.close()
    ports.release(bound[0])
    again = ports.allocate("127.0.0.1")
    assert again.getsockname()[1] == bound[0]
    for s in (*socks, again):
        s.close()


def test_a_port_held_by_another_socket_is_skipped():
    ports = PortAllocator(44110, 44111)
    outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        outsider.bind(("127.0.0.1", 44110))
    except OSError:
        pytest.fail("test port 44110 is busy on this machine")
    try:
        s = ports.allocate("127.0.0.1")
        assert s.getsockname()[1] == 44111
        with pytest.raises(ResourceExhaustedError):
            ports.allocate("127.0.0.1")
        s.close()
    finally:
        outsider.close()


def test_released_port_is_not_handed_out_again_at_once():
    ports = PortAllocator(44120, 44129)
    a = ports.allocate("127.0.0.1")
    port_a = a.getsockname()[1]
    a.close()
    ports.release(port_a)
    b = ports.allocate("127.0.0.1")
    assert b.getsockname()[1] != port_a
    b.close()


def test_explicit_port_and_bad_arguments():
    ports = PortAllocator(44130, 44131)
    s = ports.allocate("127.0.0.1", 44140)  # outside the range: allowed, like mediasoup's port
    assert s.getsockname()[1] == 44140 and 44140 in ports.in_use
    with pytest.raises(ResourceExhaustedError, match="44140"):
        ports.allocate("127.0.0.1", 44140)
    for bad in (0, 70000, "1", True):
        with pytest.raises(ArgumentError):
            ports.allocate("127.0.0.1", bad)
    with pytest.raises(ArgumentError):
        ports.allocate("localhost")
    with pytest.raises(ArgumentError):
        PortAllocator(5000, 4000)
    with pytest.raises(ArgumentError):
        PortAllocator(0, 10)
    s.close()
