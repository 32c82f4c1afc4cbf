"""SendRing on real loopback sockets, in every mode."""

import asyncio
import errno
import socket
import time

import pytest

from relay.uring import SendRing, SendRingClosed

MODES = ["zerocopy", "copy", "socket"]


def wait_all_free(ring: SendRing, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        ring.poll()
        st = ring.stats()
        if st["slotsFree"] == st["slotsTotal"] or time.monotonic() > deadline:
            return st
        time.sleep(0.001)


def payload(i: int, size: int) -> bytes:
    head = i.to_bytes(4, "big")
    return head + bytes((i + k) & 0xFF for k in range(size - 4))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [200, 1200, 1500])
def test_every_mode_delivers_exact_bytes_past_the_ring_size(mode, size, receiver, sender):
    # As root registration succeeds, so every mode is reachable and must be the one asked for.
    ring = SendRing(mode=mode)
    assert ring.mode == mode
    assert ring.zero_copy_enabled == (mode == "zerocopy")
    total, batch = 4096 + 904, 50
    try:
        for start in range(0, total, batch):
            sent = [payload(i, size) for i in range(start, start + batch)]
            for data in sent:
                assert ring.send(sender.fileno(), data, receiver.addr) is True
            assert ring.flush() == batch
            assert receiver.recv_n(batch) == sent
        st = wait_all_free(ring)
        assert st["slotsFree"] == st["slotsTotal"] == 4096
        assert st["slotsInFlight"] == 0
        assert st["sendsQueued"] == total
        assert st["sqesSubmitted"] == total
        assert st["cqeErrors"] == 0
        assert st["exhaustionDrops"] == 0
        assert st["sqesPerSubmit"] == batch
        if mode == "zerocopy":
            assert st["zcNotifications"] == total
            # Loopback always copies: the kernel says so on every notification.
            assert st["zcCopied"] == total
        else:
            assert st["zcNotifications"] == 0
    finally:
        ring.close()


@pytest.mark.parametrize("mode", MODES)
def test_send_many_delivers_in_order_with_per_datagram_addresses(mode, sender):
    rx = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in rx:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
    ring = SendRing(mode=mode)
    try:
        datagrams = [payload(i, 100 + i) for i in range(30)]
        addrs = [rx[i % 3].getsockname() for i in range(30)]
        assert ring.send_many(sender.fileno(), datagrams, addrs) == 30
        ring.flush()
        for k in range(3):
            assert [rx[k].recv(2000) for _ in range(10)] == datagrams[k::3]
        # One address for the whole batch, and bytearray datagrams.
        assert ring.send_many(sender.fileno(), [bytearray(b"ab"), b"cd"], rx[0].getsockname()) == 2
        ring.flush()
        assert [rx[0].recv(10) for _ in range(2)] == [b"ab", b"cd"]
        with pytest.raises(ValueError):
            ring.send_many(sender.fileno(), [b"ok", bytes(1501)], rx[0].getsockname())
        assert ring.stats()["sendsQueued"] == 32  # the bad batch queued nothing
        assert wait_all_free(ring)["slotsInFlight"] == 0
    finally:
        ring.close()
        for s in rx:
            s.close()


@pytest.mark.parametrize("mode", MODES)
def test_bytearray_and_memoryview_data(mode, receiver, sender):
    ring = SendRing(mode=mode)
    try:
        buf = bytearray(b"0123456789")
        ring.send(sender.fileno(), buf, receiver.addr)
        ring.send(sender.fileno(), memoryview(buf)[2:5], receiver.addr)
        ring.flush()
        assert receiver.recv_n(2) == [b"0123456789", b"234"]
    finally:
        ring.close()


def test_zero_copy_slot_is_released_only_by_its_notification(receiver, sender):
    ring = SendRing(mode="zerocopy")
    assert ring.zero_copy_enabled
    n = 16
    try:
        for i in range(n):
            ring.send(sender.fileno(), payload(i, 300), receiver.addr)
        assert ring.flush(reap=False) == n
        assert ring.stats()["slotsInFlight"] == n
        # Every send posts a result CQE and then a notification CQE: 2n in all.
        deadline = time.monotonic() + 5
        while ring.completions_ready() < 2 * n and time.monotonic() < deadline:
            time.sleep(0.001)
        assert ring.completions_ready() == 2 * n
        # Reap one CQE at a time: a slot is free again only once its notification was seen.
        for reaped in range(1, 2 * n + 1):
            assert ring.poll(max_completions=1) == 1
            st = ring.stats()
            assert st["slotsFree"] == st["slotsTotal"] - n + st["zcNotifications"]
            assert st["completions"] == reaped
        assert st["zcNotifications"] == n and st["slotsInFlight"] == 0
        assert len(receiver.recv_n(n)) == n
    finally:
        ring.close()


@pytest.mark.parametrize("mode", ["zerocopy", "copy"])
def test_event_loop_reaps_completions_without_polling(mode, receiver, sender):
    async def main():
        ring = SendRing(mode=mode)
        ring.attach()
        try:
            # Fill a socket that nobody reads so some sends complete asynchronously later,
            # and the zero-copy notifications always do.
            for i in range(200):
                ring.send(sender.fileno(), payload(i, 1000), receiver.addr)
            ring.flush(reap=False)
            deadline = time.monotonic() + 5
            while ring.stats()["slotsInFlight"] and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # no poll() here: only the eventfd reader reaps
            st = ring.stats()
            assert st["slotsInFlight"] == 0
            assert st["completions"] == (400 if mode == "zerocopy" else 200)
        finally:
            ring.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["copy", "socket"])
def test_a_full_socket_fails_fast_and_costs_only_its_own_packets(mode, receiver, sender):
    # A datagram socketpair nobody reads: once its queue is full, a send would block. With
    # MSG_DONTWAIT it completes at once with EAGAIN, counted for that fd, and its slot comes
    # straight back, so another socket's sends in the same batches all go out.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setblocking(False)
    ring = SendRing(slots=64, slot_size=1500, mode=mode, drain_timeout=1.0)
    try:
        healthy = []
        for i in range(500):
            assert ring.send(a.fileno(), bytes(1000), None) is True
            if i % 5 == 0:
                healthy.append(payload(i, 200))
                assert ring.send(sender.fileno(), healthy[-1], receiver.addr) is True
            if i % 10 == 9:
                ring.flush()
        st = wait_all_free(ring)
        assert st["slotsInFlight"] == 0 and st["slotsFree"] == 64  # nothing parked
        assert st["exhaustionDrops"] == 0 and st["capDrops"] == 0
        full = ring.fd_stats(a.fileno())
        assert full["eagainDrops"] > 0 and full["capDrops"] == 0 and full["inFlight"] == 0
        assert st["eagainDrops"] == full["eagainDrops"]
        assert st["cqeErrorsByErrno"] == {"EAGAIN": full["eagainDrops"]}
        assert ring.fd_stats(sender.fileno()) == {"eagainDrops": 0, "capDrops": 0,
                                                  "sendErrors": 0, "inFlight": 0,
                                                  "copySends": False}
        assert st["fdDrops"] == {str(a.fileno()): full}
        assert receiver.recv_n(len(healthy)) == healthy
        delivered = 0
        try:
            while True:
                b.recv(2000)
                delivered += 1
        except BlockingIOError:
            pass
        # Nothing vanished: every datagram was delivered or dropped-and-counted.
        assert delivered + full["eagainDrops"] == 500
        ring.forget_fd(a.fileno())  # the socket is closing: its counters go
        assert ring.fd_stats(a.fileno())["eagainDrops"] == 0
        assert ring.stats()["fdDrops"] == {}
        ring.close()
        assert ring.stats()["leakedSlots"] == 0
    finally:
        ring.close()
        a.close()
        b.close()


def test_fd_table_stays_bounded_and_counts_evictions(receiver):
    # Sends on 300 fd numbers that are not open: each fails (EBADF), counted for its fd.
    # The table holds 2 x slots fds; past that, idle fds are swept and the loss counted.
    ring = SendRing(slots=32, mode="copy")
    try:
        fds = range(20000, 20300)
        for fd in fds:
            assert ring.send(fd, b"x", receiver.addr) is True
            ring.flush()
        st = wait_all_free(ring)
        assert st["fdTableSize"] == 64
        assert 0 < st["fdTableEntries"] <= 64
        assert st["fdTableEvictions"] >= 300 - 64
        assert st["cqeErrorsByErrno"] == {"EBADF": 300}
        assert ring.fd_stats(fds[-1])["sendErrors"] == 1  # the newest are kept
        assert len(st["fdDrops"]) <= 16
    finally:
        ring.close()


@pytest.mark.parametrize("mode", MODES)
def test_bad_input_raises_clearly_and_queues_nothing(mode, receiver, sender):
    ring = SendRing(slot_size=1500, mode=mode)
    try:
        with pytest.raises(ValueError, match="exceeds slot_size"):
            ring.send(sender.fileno(), bytes(1501), receiver.addr)
        with pytest.raises(ValueError, match="bad socket fd"):
            ring.send(-1, b"x", receiver.addr)
        with pytest.raises(ValueError):
            ring.send(sender.fileno(), b"x", ("not-an-ip", 1))
        with pytest.raises(ValueError):
            ring.send(sender.fileno(), b"x", ("127.0.0.1", 70000))
        assert ring.stats()["sendsQueued"] == 0
        # A closed fd is only known when the kernel tries: counted by errno, not raised.
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead_fd = dead.fileno()
        dead.close()
        assert ring.send(dead_fd, b"x", receiver.addr) is True
        ring.flush()
        st = wait_all_free(ring)
        assert st["cqeErrorsByErrno"] == {"EBADF": 1}
        assert st["slotsFree"] == st["slotsTotal"]
    finally:
        ring.close()


@pytest.mark.parametrize("mode", MODES)
def test_close_is_idempotent_and_send_after_close_raises(mode, receiver, sender):
    ring = SendRing(mode=mode)
    ring.send(sender.fileno(), b"last", receiver.addr)
    ring.close()  # drains: the queued datagram still goes out
    assert receiver.recv_n(1) == [b"last"]
    ring.close()
    assert ring.closed
    assert ring.stats()["closed"] is True
    with pytest.raises(SendRingClosed):
        ring.send(sender.fileno(), b"x", receiver.addr)
    with pytest.raises(SendRingClosed):
        ring.send_many(sender.fileno(), [b"x"], receiver.addr)
    assert ring.flush() == 0 and ring.poll() == 0


def test_mode_from_environment_and_invalid_modes(monkeypatch):
    monkeypatch.setenv("RELAY_SEND_MODE", "socket")
    with SendRing() as ring:
        assert ring.mode == "socket" and ring.requested_mode == "socket"
    monkeypatch.setenv("RELAY_SEND_MODE", "zerocopi")
    with pytest.raises(ValueError, match="send mode"):
        SendRing()
    monkeypatch.delenv("RELAY_SEND_MODE")
    with pytest.raises(ValueError):
        SendRing(slots=0)
    with pytest.raises(ValueError):
        SendRing(slot_size=100000)


def test_stats_report_the_decision():
    with SendRing() as ring:
        st = ring.stats()
    assert st["mode"] == "zerocopy"
    assert st["requestedMode"] == "auto"
    assert st["zeroCopyEnabled"] is True
    assert st["registrationErrno"] == 0
    assert st["fallbacks"] == 0
    for key in ("slotsTotal", "slotsFree", "slotsInFlight", "sendsQueued", "submits",
                "sqesPerSubmit", "zcNotifications", "zcCopied", "cqeErrorsByErrno",
                "exhaustionDrops", "fallbackReasons"):
        assert key in st
    with SendRing(mode="copy") as ring:
        assert ring.registration_errno is None  # copy forced: registration not attempted
        assert ring.stats()["zeroCopyEnabled"] is False


def test_errno_enum_is_sane():
    assert errno.ENOMEM == 12


def test_socket_mode_sends_one_sendmmsg_per_socket_for_interleaved_fan_out(receiver):
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    ring = SendRing(mode="socket")
    try:
        sent = []
        for i in range(30):  # fd order 0,1,2,0,1,2…: a fan-out's interleaving
            data = payload(i, 64)
            ring.send(senders[i % 3].fileno(), data, receiver.addr)
            sent.append(data)
        assert ring.flush() == 30
        st = ring.stats()
        assert st["socketSendCalls"] == 3
        assert st["slotsFree"] == st["slotsTotal"]
        got = receiver.recv_n(30)
        assert sorted(got) == sorted(sent)
        # Each socket's datagrams keep their queued order.
        for k in range(3):
            mine = [d for d in got if int.from_bytes(d[:4], "big") % 3 == k]
            assert mine == sent[k::3]
    finally:
        ring.close()
        for s in senders:
            s.close()
