"""flush_soon(): every socket drained in one event-loop turn shares one submit."""

import asyncio
import socket
import time

import pytest
import uvloop

from relay.uring import SendRing
from relay.uring.send_ring import SUBMIT_BATCH

SOCKETS = 6
PER_SOCKET = 5  # datagrams waiting on each socket when the loop looks
assert SOCKETS * PER_SOCKET < SUBMIT_BATCH  # else flush_soon() submits at once


def test_sockets_drained_in_one_turn_share_one_submit(receiver):
    """Six inbound sockets, each forwarding what it reads through the ring and calling
    flush_soon() at the end of its drain (as transports do): datagrams that are waiting on
    all six when the loop polls go out with one submit, in every ring mode."""

    async def main(mode: str) -> None:
        loop = asyncio.get_running_loop()
        ring = SendRing(mode=mode)
        ring.attach(loop)
        inbound = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        drains = []

        def on_readable(sock: socket.socket) -> None:
            n = 0
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                ring.send(out.fileno(), data, receiver.addr)
                n += 1
            drains.append(n)
            ring.flush_soon()

        try:
            for s in inbound:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
                loop.add_reader(s.fileno(), on_readable, s)
            for rnd in range(3):
                before = ring.stats()
                drains.clear()
                # The loop is busy (this coroutine runs) while every socket fills up.
                sent = []
                for k, s in enumerate(inbound):
                    for i in range(PER_SOCKET):
                        data = f"{rnd}:{k}:{i}".encode()
                        peer.sendto(data, s.getsockname())
                        sent.append(data)
                time.sleep(0.05)
                deadline = time.monotonic() + 5
                while sum(drains) < len(sent) and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.01)  # the scheduled flush has run
                after = ring.stats()
                assert drains == [PER_SOCKET] * SOCKETS  # six drains in one turn
                assert after["sendsQueued"] - before["sendsQueued"] == len(sent)
                assert after["sqesSubmitted"] - before["sqesSubmitted"] == len(sent)
                if mode == "socket":
                    assert after["socketSendCalls"] - before["socketSendCalls"] == 1
                else:
                    assert after["submits"] - before["submits"] == 1
                assert sorted(receiver.recv_n(len(sent))) == sorted(sent)
        finally:
            for s in inbound:
                loop.remove_reader(s.fileno())
                s.close()
            ring.detach()
            ring.close()
            out.close()
            peer.close()

    for mode in ("copy", "zerocopy", "socket"):
        uvloop.run(main(mode))


@pytest.mark.parametrize("mode", ["copy", "socket"])
def test_flush_soon_flushes_at_once_without_a_loop_or_with_a_full_batch(
        mode, receiver, sender):
    ring = SendRing(mode=mode)
    try:
        ring.send(sender.fileno(), b"now", receiver.addr)
        ring.flush_soon()  # not attached: nothing would run a scheduled flush
        assert receiver.recv_n(1) == [b"now"]

        async def main() -> None:
            ring.attach()
            ring.send(sender.fileno(), b"later", receiver.addr)
            ring.flush_soon()
            ring.flush_soon()  # already scheduled: still one flush
            assert ring.stats()["slotsQueued"] == 1
            ring.detach()  # what was scheduled goes now
            assert ring.stats()["slotsQueued"] == 0
            # A full batch does not wait for the end of the turn.
            ring.attach()
            for _ in range(SUBMIT_BATCH):
                ring.send(sender.fileno(), b"batch", receiver.addr)
            ring.flush_soon()
            assert ring.stats()["slotsQueued"] == 0
            ring.detach()

        asyncio.run(main())
        assert receiver.recv_n(1 + SUBMIT_BATCH) == [b"later"] + [b"batch"] * SUBMIT_BATCH
    finally:
        ring.close()
