"""forget_fd: a closed socket's per-fd entry goes, safely with its sends queued or in flight."""

import socket
import time

import pytest

from relay.uring import SendRing

MODES = ["zerocopy", "copy", "socket"]


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _drain(ring: SendRing) -> dict:
    for _ in range(5000):
        ring.poll()
        st = ring.stats()
        if st["slotsFree"] == st["slotsTotal"]:
            return st
        time.sleep(0.001)
    return ring.stats()


@pytest.mark.parametrize("mode", MODES)
def test_sends_queued_at_close_leave_from_the_closed_socket_not_its_successor(mode, receiver):
    """forget_fd submits what is queued before the socket closes: had they been submitted
    after, the kernel would have resolved the number to the new socket (or failed EBADF)."""
    ring = SendRing(mode=mode, slots=64)
    old = _udp()
    old_port, fd = old.getsockname()[1], old.fileno()
    try:
        for i in range(20):
            assert ring.send(fd, b"old%02d" % i, receiver.addr)
        ring.forget_fd(fd)
        old.close()
        new = _udp()  # the lowest free number: the one just closed
        assert new.fileno() == fd
        for i in range(5):
            assert ring.send(new.fileno(), b"new%02d" % i, receiver.addr)
        ring.flush()
        got = [receiver.sock.recvfrom(100) for _ in range(25)]
        assert [d for d, _ in got] == [b"old%02d" % i for i in range(20)] + \
            [b"new%02d" % i for i in range(5)]
        assert [a[1] for _, a in got] == [old_port] * 20 + [new.getsockname()[1]] * 5
        st = _drain(ring)
        assert st["cqeErrors"] == 0 and st["slotsFree"] == 64
        # the new socket's entry is live (in the uring modes, where entries track slots)
        ring.forget_fd(new.fileno())
        new.close()
        assert _drain(ring)["fdTableEntries"] == 0
    finally:
        ring.close()
        assert ring.stats()["leakedSlots"] == 0


@pytest.mark.parametrize("mode", ["zerocopy", "copy"])
def test_an_entry_forgotten_with_slots_in_flight_goes_when_they_come_back(mode, receiver):
    ring = SendRing(mode=mode, slots=64)
    sock = _udp()
    fd = sock.fileno()
    try:
        for _ in range(30):
            ring.send(fd, b"x" * 100, receiver.addr)
        ring.flush(reap=False)
        assert ring.fd_stats(fd)["inFlight"] == 30  # nothing reaped yet
        ring.forget_fd(fd)
        sock.close()  # the kernel holds its own reference until the sends complete
        st = ring.stats()
        assert st["fdTableEntries"] == 1  # kept: its slots release through it
        st = _drain(ring)
        assert st["slotsFree"] == 64 and st["cqeErrors"] == 0
        assert st["fdTableEntries"] == 0 and st["autoCopyFds"] == 0
        assert len(receiver.recv_n(30)) == 30
    finally:
        ring.close()
        assert ring.stats()["leakedSlots"] == 0


def test_a_number_reused_while_the_old_sends_are_in_flight_keeps_its_new_entry(receiver):
    ring = SendRing(mode="zerocopy", slots=64)
    old = _udp()
    fd = old.fileno()
    try:
        for _ in range(10):
            ring.send(fd, b"o" * 50, receiver.addr)
        ring.flush(reap=False)
        ring.forget_fd(fd)
        old.close()
        new = _udp()
        assert new.fileno() == fd
        for _ in range(3):
            ring.send(fd, b"n" * 50, receiver.addr)  # while the old 10 are still held
        ring.flush(reap=False)
        st = _drain(ring)
        assert st["slotsFree"] == 64 and st["fdTableEntries"] == 1  # the new socket's
        assert ring.fd_stats(fd)["inFlight"] == 0
        assert len(receiver.recv_n(13)) == 13
        ring.forget_fd(fd)
        new.close()
        assert ring.stats()["fdTableEntries"] == 0
    finally:
        ring.close()


@pytest.mark.parametrize("mode", MODES)
def test_sockets_opened_and_closed_many_times_leave_no_entries(mode, receiver):
    """More sockets than the table holds (2 x 64 slots), each forgotten at close: nothing is
    left and nothing had to be evicted."""
    ring = SendRing(mode=mode, slots=64)
    try:
        for i in range(400):
            sock = _udp()
            ring.send(sock.fileno(), b"%d" % i, receiver.addr)
            if i % 3 == 0:
                ring.flush()  # the others close with their send still queued
            ring.forget_fd(sock.fileno())
            sock.close()
            receiver.recv_n(1)
        st = _drain(ring)
        assert st["fdTableEntries"] == 0 and st["fdTableEvictions"] == 0
        assert st["cqeErrors"] == 0 and st["slotsFree"] == 64
    finally:
        ring.close()
