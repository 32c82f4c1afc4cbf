"""Zero-copy slots held by a congested path: the per-fd cap and the free-slot share.

A zero-copy slot comes back only when the kernel frees the datagram's skb, so datagrams
waiting in a slow qdisc (tbf at 1 Mbit/s on a veth into a namespace, see slow_link.py) keep
their slots in flight. No fd may hold more than min(fd_cap, slots free) of them.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest
from slow_link import SlowLink

from relay.uring import SendRing

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")),
    reason="a network namespace, a veth and tc need root (CI runs as root)")


@pytest.fixture(scope="module")
def slow_link():
    link = SlowLink()
    yield link
    link.close()


def slow_sockets(link: SlowLink, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((link.host_ip, 0))
        socks.append(s)
    return socks


def test_one_fd_holds_at_most_fd_cap_slots(slow_link, receiver, sender):
    ring = SendRing(slots=256, mode="zerocopy", fd_cap=16, drain_timeout=5.0)
    [slow] = slow_sockets(slow_link, 1)
    dst = (slow_link.peer_ip, slow_link.port)
    try:
        results = []
        for i in range(200):
            results.append(ring.send(slow.fileno(), bytes(1000), dst))
            assert ring.send(sender.fileno(), b"ok%d" % i, receiver.addr) is True
            ring.flush()
        st = ring.stats()
        held = ring.fd_stats(slow.fileno())
        # Its datagrams wait in the tbf queue, slots and all (a few pass in tbf's burst).
        assert 12 <= held["inFlight"] <= 16
        assert held["capDrops"] == results.count(False)
        assert 200 - 16 - 20 <= held["capDrops"] <= 200 - 16
        assert held["eagainDrops"] == 0
        assert st["capDrops"] == held["capDrops"] and st["exhaustionDrops"] == 0
        assert ring.fd_stats(sender.fileno())["capDrops"] == 0
        assert receiver.recv_n(200) == [b"ok%d" % i for i in range(200)]
        # The held slots come back as the link drains them; close waits for them.
        ring.close()
        assert ring.stats()["leakedSlots"] == 0
    finally:
        ring.close()
        slow.close()


def test_many_congested_fds_never_take_the_last_slots(slow_link, receiver, sender):
    # No static cap here (fd_cap = slots): only the free-slot share protects the ring.
    # Eight congested sockets would each fill the ring; together they must leave room.
    ring = SendRing(slots=64, mode="zerocopy", fd_cap=64, drain_timeout=5.0)
    socks = slow_sockets(slow_link, 8)
    dst = (slow_link.peer_ip, slow_link.port)
    try:
        for i in range(40):
            for s in socks:
                ring.send(s.fileno(), bytes(1000), dst)
            assert ring.send(sender.fileno(), b"ok%d" % i, receiver.addr) is True
            ring.flush()
        st = ring.stats()
        assert st["exhaustionDrops"] == 0 and st["capDrops"] > 0
        assert st["slotsFree"] > 0
        held = [ring.fd_stats(s.fileno())["inFlight"] for s in socks]
        assert sum(held) == st["slotsInFlight"] - ring.fd_stats(sender.fileno())["inFlight"]
        assert max(held) <= 32
        assert receiver.recv_n(40) == [b"ok%d" % i for i in range(40)]
    finally:
        ring.close()
        for s in socks:
            s.close()


def test_without_the_share_one_slot_per_fd_still_meets_the_exhaustion_policy(slow_link):
    # More congested fds than slots, one datagram each: the ring runs out, and the policy
    # (drop, count, return False) applies; nothing blocks, nothing grows.
    ring = SendRing(slots=64, mode="zerocopy", drain_timeout=5.0)
    socks = slow_sockets(slow_link, 80)
    dst = (slow_link.peer_ip, slow_link.port)
    try:
        results = [ring.send(s.fileno(), bytes(1000), dst) for s in socks]
        ring.flush()
        st = ring.stats()
        # (a few datagrams pass in tbf's burst and give their slots back)
        assert 0 < results.count(False) == st["exhaustionDrops"] <= 80 - 64
        assert st["slotsInFlight"] + st["slotsFree"] == 64 and st["capDrops"] == 0
    finally:
        ring.close()
        for s in socks:
            s.close()
