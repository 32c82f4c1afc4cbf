"""send_mode "auto" chooses per socket by what the kernel reports: on loopback every
zero-copy notification says IORING_NOTIF_USAGE_ZC_COPIED, so each socket switches to copy
sends after one window; an explicit "zerocopy" never switches; no slot comes back early."""

import logging
import socket
import time

from relay.uring._ring import lib

from relay.uring import SendRing
from relay.worker.handlers import send_ring_summary

WINDOW = lib.RC_AUTO_WINDOW


def payload(i: int, size: int = 200) -> bytes:
    return i.to_bytes(4, "big") + bytes((i + k) & 0xFF for k in range(size - 4))


def settle(ring: SendRing, timeout: float = 5.0) -> dict:
    """Reap until every slot is back."""
    deadline = time.monotonic() + timeout
    while True:
        ring.poll()
        st = ring.stats()
        if st["slotsInFlight"] == 0 or time.monotonic() > deadline:
            return st
        time.sleep(0.001)


def send_batches(ring, fd, receiver, batches: int, size: int = 40, start: int = 0) -> int:
    i = start
    for _ in range(batches):
        sent = [payload(i + k) for k in range(size)]
        for data in sent:
            assert ring.send(fd, data, receiver.addr) is True
        ring.flush()
        assert receiver.recv_n(size) == sent
        settle(ring)
        i += size
    return i


def test_auto_on_loopback_ends_in_copy_sends_and_says_why(receiver, sender, caplog):
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ring = SendRing()  # auto; as root registration succeeds: zero-copy, with usage reports
    try:
        assert ring.mode == "zerocopy" and ring.zero_copy_enabled and ring.zc_usage_reporting
        assert ring.stats()["autoCopy"] is True
        with caplog.at_level(logging.INFO, logger="relay.uring"):
            n = send_batches(ring, sender.fileno(), receiver, 3)
            st = ring.stats()
            # The first window was copied by the kernel every time: this socket switched.
            assert ring.fd_stats(sender.fileno())["copySends"] is True
            assert st["autoCopyFds"] == 1 and st["autoSwitches"] == 1
            zc_sends = st["zcSends"]
            assert WINDOW <= zc_sends < n and st["copySends"] == n - zc_sends
            # Every zero-copy send, also those in flight at the switch, got its notification.
            assert st["zcNotifications"] == st["zcCopied"] == zc_sends
            reason = st["autoSwitchReason"]
            for needle in (f"copied {WINDOW} of {WINDOW} zero-copy sends",
                           f"socket fd {sender.fileno()}", "IORING_NOTIF_USAGE_ZC_COPIED",
                           "copy"):
                assert needle in reason, needle
            # From now on: copy sends only, one CQE each, exact bytes.
            before = ring.stats()
            send_batches(ring, sender.fileno(), receiver, 2, start=n)
            after = ring.stats()
            assert after["zcSends"] == zc_sends and after["copySends"] - before["copySends"] == 80
            assert after["completions"] - before["completions"] == 80
            assert after["zcNotifications"] == zc_sends
            # A second socket learns on its own; the switch is logged once.
            send_batches(ring, other.fileno(), receiver, 2, start=1000)
            st = ring.stats()
            assert st["autoCopyFds"] == 2 and st["autoSwitches"] == 2
            assert ring.fd_stats(other.fileno())["copySends"] is True
        logged = [r.getMessage() for r in caplog.records if "auto:" in r.getMessage()]
        assert logged == [f"send ring: {reason}"]
        # The worker's dump carries it (what worker.dump() returns as sendRing).
        summary = send_ring_summary(ring)
        assert summary["mode"] == "zerocopy" and summary["zeroCopyEnabled"] is True
        assert summary["autoSwitchReason"] == reason and summary["autoCopyFds"] == 2
        assert summary["slotsFree"] == summary["slotsTotal"]
        # A closed socket's number learns afresh.
        ring.forget_fd(other.fileno())
        assert ring.stats()["autoCopyFds"] == 1
        assert ring.fd_stats(other.fileno())["copySends"] is False
    finally:
        ring.close()
        other.close()
    assert ring.stats()["autoSwitchReason"] == reason  # kept in the final stats


def test_explicit_zerocopy_never_switches(receiver, sender):
    ring = SendRing(mode="zerocopy")
    try:
        n = send_batches(ring, sender.fileno(), receiver, 4)
        st = ring.stats()
        assert st["autoCopy"] is False
        assert st["zcSends"] == st["zcNotifications"] == st["zcCopied"] == n
        assert st["copySends"] == 0 and st["autoSwitches"] == 0 and st["autoCopyFds"] == 0
        assert st["autoSwitchReason"] is None
        assert ring.fd_stats(sender.fileno())["copySends"] is False
    finally:
        ring.close()


def test_copy_mode_reports_no_auto_switching(receiver, sender):
    with SendRing(mode="copy") as ring:
        n = send_batches(ring, sender.fileno(), receiver, 1)
        st = ring.stats()
        assert st["autoCopy"] is False and st["copySends"] == n and st["zcSends"] == 0


def test_no_slot_is_released_before_the_kernel_is_done_across_the_switch(receiver, sender):
    ring = SendRing()
    fd = sender.fileno()
    zc = WINDOW + 16  # zero-copy sends in flight when the window decides
    try:
        sent = [payload(i) for i in range(zc)]
        for data in sent:
            ring.send(fd, data, receiver.addr)
        assert ring.flush(reap=False) == zc
        deadline = time.monotonic() + 5
        while ring.completions_ready() < 2 * zc and time.monotonic() < deadline:
            time.sleep(0.001)
        assert ring.completions_ready() == 2 * zc
        copies = 0
        for _ in range(2 * zc):
            assert ring.poll(max_completions=1) == 1
            st = ring.stats()
            # A zero-copy slot comes back only with its notification.
            assert st["slotsInFlight"] >= zc - st["zcNotifications"]
            if st["autoCopyFds"] and copies == 0:
                # Switched with zero-copy sends still in flight: new sends are copies.
                assert st["zcNotifications"] == WINDOW
                more = [payload(1000 + i) for i in range(8)]
                for data in more:
                    ring.send(fd, data, receiver.addr)
                ring.flush(reap=False)
                sent += more
                copies = len(more)
        st = settle(ring)
        assert copies == 8
        assert st["zcSends"] == st["zcNotifications"] == zc and st["copySends"] == copies
        assert st["completions"] == 2 * zc + copies
        assert st["slotsFree"] == st["slotsTotal"] and st["slotsInFlight"] == 0
        assert sorted(receiver.recv_n(len(sent))) == sorted(sent)
    finally:
        ring.close()


def test_failed_zero_copy_sends_do_not_count_as_copied():
    """The kernel reports a send that used no buffer (it failed) as copied too; only real
    sends count. AF_UNIX has no zero-copy: every send fails (ENOTSUP), nothing switches."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = SendRing()
    try:
        for _ in range(3):
            for _ in range(WINDOW):
                ring.send(a.fileno(), b"x" * 100, None)
            ring.flush()
            st = settle(ring)
        assert st["zcSends"] == st["zcNotifications"] == st["zcCopied"] == 3 * WINDOW
        assert st["cqeErrors"] == 3 * WINDOW
        assert st["autoSwitches"] == 0 and ring.fd_stats(a.fileno())["copySends"] is False
    finally:
        ring.close()
        a.close()
        b.close()
