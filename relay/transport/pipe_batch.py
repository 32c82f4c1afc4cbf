"""Batching on a pipe transport: several RTP packets in one UDP datagram between two relays.

A pipe between workers carries every packet of every piped producer, and each datagram
costs both workers the kernel's whole datagram path (send, softirq, receive) and a turn of
each one's loop: ~13 us a piped packet on this project's 2-core test machine, where the
forwarding it enables costs ~6 us a send (docs/performance.md, "The harness's display
thread, and latency at half rate"; what batching saved: "Batched pipe datagrams"). Packets the fan-out core sends to a pipe in one loop turn are therefore framed
into a `StreamBuffer` (the RFC 4571 framing ICE-TCP uses: a 2-byte length before each
packet, each SRTP-protected on its own) and sent at the end of the turn, or at once when
the buffer is half full, cut into datagrams of at most `BATCH_DATAGRAM_BYTES`
(`fc_stream_send` in relay/uring/fanout_core.c). Nothing waits for a later turn, so
batching adds no delay beyond the turn the packets arrived in.

On the wire a batched datagram is those frames as they are: its first byte is the high
byte of a length under 2048, below 0x80, which tells it from an RTP or RTCP packet (version
2: 0x80-0xBF). A packet alone in its turn goes bare, as an unbatched pipe sends it. The
receiver takes each frame as a datagram of its own (in C, `take_frames` in
relay/uring/receive_core.c; in Python, `split_frames` below).

It is relay's own format, not mediasoup's: a transport accepts batched datagrams when it
was created with `enableBatching` (and says so in its description, `batching: true`), and
sends them only when its `connect` was told the remote accepts them (`batching: true`).
A mediasoup peer never says so and gets one packet per datagram.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from relay.uring.fanout_core import StreamBuffer, ffi, lib

if TYPE_CHECKING:
    from relay.uring.send_ring import SendRing

# A batched datagram's payload at most: what libwebrtc allows its own RTP packets, so a
# path that carries a browser's media carries these unfragmented (with tunnels' overhead).
BATCH_DATAGRAM_BYTES = 1200


def is_batched(first_byte: int) -> bool:
    """A pipe datagram whose first byte is this is a run of frames, not one packet."""
    return first_byte < 0x80


def split_frames(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    """The packets of a batched datagram, in order. Raises ValueError at a frame that is
    empty or cut short, or is a batch itself (after yielding the ones before it)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        if pos + 2 > end:
            raise ValueError("a frame's length is cut short")
        n = (view[pos] << 8) | view[pos + 1]
        if n == 0 or pos + 2 + n > end:
            raise ValueError("a frame is empty or longer than the datagram")
        frame = view[pos + 2:pos + 2 + n]
        pos += 2 + n
        if is_batched(frame[0]):
            raise ValueError("a batch inside a batch")
        yield frame


class PipeBatcher:
    """The send side of one pipe transport's batching: the buffer the fan-out core frames its
    lanes' packets into, and its sending once per loop turn (the interface a consumer's
    `media_stream` has, as an ICE-TCP connection: `media_buffer`, `media_queued`,
    `media_send`)."""

    def __init__(self, ring: SendRing, loop: Any, fd: int, remote: tuple[str, int]) -> None:
        self._ring = ring
        self._fd = fd
        self._remote = remote
        self._dst = ring.address(remote)
        self.media_buffer = StreamBuffer(send=self._send, loop=loop)
        self.closed = False
        self._batched = ffi.new("unsigned long long *")
        self._dropped = ffi.new("unsigned long long *")
        self.datagrams_sent = 0

    @property
    def packets_batched(self) -> int:
        """Packets that went in datagrams of two or more."""
        return self._batched[0]

    @property
    def packets_dropped(self) -> int:
        """Packets of datagrams the ring refused (full, or the socket's share used)."""
        return self._dropped[0]

    def media_queued(self) -> None:
        """The core framed packets into `media_buffer`: one send per loop turn."""
        self.media_buffer.queued()

    def flush_media(self) -> None:
        """Send what the core framed now."""
        self.media_buffer.send_now()

    def _send(self, buffer: StreamBuffer) -> None:
        """Queue the framed packets on the ring, in datagrams, and have the ring submit."""
        ring = self._ring.core
        if self.closed or ring == ffi.NULL:
            return
        self.datagrams_sent += lib.fc_stream_send(ring, buffer.c, self._fd, self._dst,
                                                  BATCH_DATAGRAM_BYTES, self._batched,
                                                  self._dropped)
        # (after the turn's submit when another socket's drain scheduled that one first)
        self._ring.flush_soon()

    def media_send(self, fd: int, data: bytes | bytearray | memoryview,
                   addr: tuple[str, int] | None) -> bool:
        """A packet the Python path sends on the pipe (its fan-out, retransmissions): after
        what the core framed, which keeps the pipe's order."""
        self.media_buffer.send_now()
        return self._ring.send(fd, data, addr)

    def close(self) -> None:
        self.closed = True
        self.media_buffer.clear()

    def stats(self) -> dict[str, int]:
        return {"datagramsSent": self.datagrams_sent, "packetsBatched": self.packets_batched,
                "packetsDropped": self.packets_dropped}
