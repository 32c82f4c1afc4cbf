"""The sockets a WebRTC transport (or a WebRtcServer shared by many) receives on.

`UdpSocket`: a non-blocking UDP socket drained on each readable event into ONE preallocated
buffer (with a libsrtp pointer to it, so SRTP is unprotected in place); every datagram goes to
`handler(udp, n, addr)`, which returns the media sends it queued; the drain ends with
`ring.flush_soon()` (one submit per event-loop turn for all sockets), as the plain transport does.
`udp.now` is the datagram's arrival time as the kernel stamped it (`StampedReader`), not the
time the worker got round to reading it (see `LATE_READ`).

`TcpListener` / `TcpConnection`: ICE-TCP, passive (RFC 6544), RFC 4571 framing. Reads are
taken in whatever chunks TCP gives (`FrameDecoder`); writes are plain socket writes (copies,
never the zero-copy ring: a TCP buffer is held until the peer ACKs it). The consumers' media
is framed by the C fan-out core into the connection's `media_buffer` (rewrite, SRTP and the
length prefix in one C call per inbound packet for all consumers) and written with one send
per event-loop turn (`media_queued`; at once from half its buffer: `StreamBuffer`). What the kernel
does not take at once waits in a per-connection buffer bounded by `MAX_PENDING_BYTES`; past
it, packets are dropped and counted (`sendBufferFull`; a media batch that does not fit is
dropped whole and counted once, its packets already counted as sent by the consumers), so
our memory never depends on a client's delay. A framing error closes the connection.

A connection is "claimed" once it passes an ICE check for a transport (the transport sets
`claimed`); until then it is a stranger's, and strangers must not be able to keep legit
clients out of the listener's `MAX_TCP_CONNECTIONS` slots. So an unclaimed connection:
  - is closed if it is not claimed within `FIRST_CHECK_TIMEOUT` of its accept (one timer per
    listener sweeps them oldest first: the unclaimed are kept in accept order);
  - may deliver at most `MAX_UNCLAIMED_FRAMES` frames (each costs a STUN parse and an HMAC);
  - is evicted, oldest first, when the listener is full and a new connection arrives (claimed
    connections are never evicted: when every slot is claimed the newcomer is refused);
  - counts against its source's `MAX_UNCLAIMED_PER_ADDRESS` (an IPv4 address or an IPv6 /64):
    past it, that source's own oldest unclaimed connection makes room for its newest.
Each of these is counted in `TcpListener.stats()`.
"""

from __future__ import annotations

import errno
import itertools
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from relay.transport.base import MAX_PACKETS_PER_DRAIN, MAX_SENDS_PER_DRAIN, RECV_BUFFER_SIZE
from relay.transport.srtp_session import buffer_pointer
from relay.transport.tcp_framing import FrameDecoder, FramingError, encode_frame
from relay.uring.fanout_core import StreamBuffer
from relay.uring.receive_core import StampedReader, recv_stamped

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext

logger = logging.getLogger(__name__)

# Largest frame we take on ICE-TCP: a full-MTU SRTP packet or DTLS flight fragment fits.
MAX_TCP_FRAME = 4096
MAX_PENDING_BYTES = 256 * 1024
TCP_READ_SIZE = 65536
MAX_TCP_CONNECTIONS = 256  # per listener
# An ICE-TCP client (the active side, RFC 6544) sends its Binding request as soon as its
# connect completes, so a legit check reaches us one RTT after the accept; 2 s is far above
# any RTT media survives, and it is how long a silent stranger holds a slot at most.
FIRST_CHECK_TIMEOUT = 2.0
# Before its check passes a legit client sends one request, or two after a 487 Role
# Conflict; whatever else an unclaimed connection sends buys it nothing.
MAX_UNCLAIMED_FRAMES = 4
# Unclaimed connections are short-lived (connect, one check): even a large NAT seldom has
# more than a few at once, and one source can't take more than 1/16 of the slots.
MAX_UNCLAIMED_PER_ADDRESS = 16
TCP_BACKLOG = 64
# Arrival times go into transport-cc feedback, whose sender reads their growth as queueing on
# its path. A worker that waits its turn for the CPU (seen in the 3-browser meeting test on 2
# cores: reads up to 87 ms late while the worker itself was idle) would report that wait as
# congestion if it stamped datagrams when it read them (as mediasoup stamps uv_now), and every
# publisher's estimate fell at once (4.3 -> 1.2 Mbit/s). So each datagram keeps the time the
# kernel received it, as libwebrtc stamps its own packets from the socket. Datagrams read
# LATE_READ or more after that are counted (`lateReads` in the stats: a worker short of CPU).
LATE_READ = 0.001  # s

# What TcpListener.stats() counts (always present, 0 until it happens).
TCP_LISTENER_COUNTS = ("accepted", "claimed", "closedNoValidCheck", "closedTooManyFrames",
                       "evictedOldest", "evictedPerAddress", "refusedAllClaimed")


class UdpSocket:
    """A UDP socket registered with the loop; datagrams go to `handler(self, n, addr)`."""

    def __init__(self, ctx: WorkerContext, sock: socket.socket, announced: str | None,
                 handler: Callable[[UdpSocket, int, Any], int]) -> None:
        self._ctx = ctx
        self.sock = sock
        self.fd = sock.fileno()
        self.ip, self.port = sock.getsockname()[:2]
        self.announced = announced
        self.handler = handler
        self.buf = bytearray(RECV_BUFFER_SIZE)
        self.now = 0.0  # monotonic arrival time of the current datagram (see LATE_READ)
        self.late_reads = 0  # datagrams read LATE_READ or more after they arrived
        self.view = memoryview(self.buf)
        self._reader = StampedReader(sock, self.buf)
        self.ptr = buffer_pointer(self.buf)
        self.errors: Counter[str] = Counter()
        ctx.loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        reader = self._reader
        args = reader.args
        key = reader.key
        arrival = reader.arrival
        sources = reader.sources
        handler = self.handler
        sends = 0
        late = time.monotonic() - LATE_READ
        try:
            for _ in range(MAX_PACKETS_PER_DRAIN):
                n = recv_stamped(*args)
                if n < 0:
                    if n != -errno.EAGAIN:  # e.g. ECONNREFUSED after an ICMP error: count
                        self.errors[f"recv {-n}"] += 1
                    break
                self.now = arrival[0]
                if self.now <= late:
                    self.late_reads += 1
                sends += handler(self, n, sources.get(key[0]) or reader.source(key[0]))
                if sends >= MAX_SENDS_PER_DRAIN:
                    break
        except Exception:  # a bug must cost one packet, not the socket
            logger.exception("UDP datagram handling failed")
            self.errors["internalError"] += 1
        self._ctx.ring.flush_soon()  # one submit per loop turn for all sockets

    def stats(self) -> dict[str, Any]:
        """Its address, the datagrams read `LATE_READ` or more after they arrived (the
        worker was waiting for the CPU) and the socket errors counted."""
        return {"ip": self.ip, "port": self.port, "lateReads": self.late_reads,
                "errors": dict(self.errors)}

    def sendto(self, data: bytes | memoryview, addr: Any) -> bool:
        """A control-path copy send (STUN, DTLS, RTCP)."""
        try:
            self.sock.sendto(data, addr)
            return True
        except OSError as exc:
            self.errors[f"send {exc.errno}"] += 1
            return False

    def close(self) -> None:
        if self.fd < 0:
            return
        self._ctx.loop.remove_reader(self.fd)
        self._ctx.ring.forget_fd(self.fd)  # its per-fd entry goes (send_ring.py)
        self.sock.close()
        if self._ctx.ports is not None:
            self._ctx.ports.release(self.port)
        self.fd = -1


class TcpConnection:
    """One accepted ICE-TCP connection: frames in to `on_frame(self, frame)`, frames out."""

    def __init__(self, ctx: WorkerContext, sock: socket.socket, addr: Any,
                 listener: TcpListener) -> None:
        self._ctx = ctx
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.tuple = (addr[0], addr[1], "tcp")
        self.listener = listener
        self.local_ip, self.local_port = listener.ip, listener.port
        self.announced = listener.announced
        # Who the frames go to: the listener's owner until a transport claims the connection.
        self.on_frame: Callable[[TcpConnection, bytearray], None] = listener.on_frame
        self.on_close: list[Callable[[TcpConnection], None]] = []
        self.closed = False
        self._claimed = False
        self.accepted_at = ctx.loop.time()
        self.source = address_key(addr[0])
        self.unclaimed_frames = 0
        self._decoder = FrameDecoder(MAX_TCP_FRAME)
        self._pending = bytearray()
        self._writing = False
        self._media: StreamBuffer | None = None  # made when a consumer first sends here
        self.dropped: Counter[str] = Counter()
        ctx.loop.add_reader(self.fd, self._on_readable)

    @property
    def claimed(self) -> bool:
        """True once the connection passed an ICE check (set by that transport)."""
        return self._claimed

    @claimed.setter
    def claimed(self, value: bool) -> None:
        if value and not self._claimed and not self.closed:
            self._claimed = True
            self.listener.on_claimed(self)

    def _on_readable(self) -> None:
        try:
            chunk = self.sock.recv(TCP_READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close(f"recv error {exc.errno}")
            return
        if not chunk:
            self.close("closed by the peer")
            return
        try:
            frames = self._decoder.feed(chunk)
        except FramingError as exc:
            self.close(f"framing error: {exc}")
            return
        for frame in frames:
            if self.closed:
                break
            if not self._claimed:
                self.unclaimed_frames += 1
                if self.unclaimed_frames > MAX_UNCLAIMED_FRAMES:
                    self.listener.counts["closedTooManyFrames"] += 1
                    self.close("too many frames without a valid ICE check")
                    break
            try:
                self.on_frame(self, bytearray(frame))
            except Exception:  # a bug must cost one packet, not the connection
                logger.exception("ICE-TCP frame handling failed")
                self.dropped["internalError"] += 1
        self._ctx.ring.flush_soon()  # media fanned out to UDP consumers

    @property
    def media_buffer(self) -> StreamBuffer:
        """Where the C fan-out core frames this connection's media (see the module doc)."""
        if self._media is None:
            self._media = StreamBuffer(send=self._write_media, loop=self._ctx.loop)
        return self._media

    def media_queued(self) -> None:
        """The core framed media into `media_buffer`: one write per loop turn."""
        if self._media is not None:
            self._media.queued()

    def flush_media(self) -> None:
        """Write what the core framed (before any other frame, which keeps the order)."""
        if self._media is not None:
            self._media.send_now()

    def _write_media(self, media: StreamBuffer) -> None:
        if not self.closed:
            self._write(media.view())

    def send(self, data: bytes | bytearray | memoryview) -> bool:
        """Frame `data` and write it (a copy); False if dropped (buffer full or closed)."""
        if self.closed:
            return False
        self.flush_media()  # media the core framed earlier goes first
        return self._write(encode_frame(data))

    def _write(self, frame: bytes | memoryview) -> bool:
        """Write framed bytes, or keep them (bounded) for when the socket is writable."""
        if self._pending:
            if len(self._pending) + len(frame) > MAX_PENDING_BYTES:
                self.dropped["sendBufferFull"] += 1
                return False
            self._pending += frame
            return True
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.close(f"send error {exc.errno}")
            return False
        if sent < len(frame):
            self._pending += frame[sent:]
            if not self._writing:
                self._writing = True
                self._ctx.loop.add_writer(self.fd, self._on_writable)
        return True

    def media_send(self, fd: int, data: memoryview, addr: Any) -> bool:
        """The consumers' send when this connection is the selected tuple (ring signature)."""
        return self.send(data)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close(f"send error {exc.errno}")
            return
        del self._pending[:sent]
        if not self._pending:
            self._writing = False
            self._ctx.loop.remove_writer(self.fd)

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        logger.debug("ICE-TCP connection %s closed: %s", self.addr, reason)
        loop = self._ctx.loop
        loop.remove_reader(self.fd)
        if self._writing:
            loop.remove_writer(self.fd)
        self._pending.clear()
        self.sock.close()
        self.listener.forget(self)
        for callback in self.on_close:
            callback(self)


class TcpListener:
    """A passive ICE-TCP port; new connections' frames go to `on_frame` until claimed."""

    def __init__(self, ctx: WorkerContext, ip: str, port: int | None, announced: str | None,
                 on_frame: Callable[[TcpConnection, bytearray], None]) -> None:
        self._ctx = ctx
        sock = _listen_tcp(ctx, ip, port)
        self.sock = sock
        self.fd = sock.fileno()
        self.ip, self.port = sock.getsockname()[:2]
        self.announced = announced
        self.on_frame = on_frame
        self.connections: set[TcpConnection] = set()
        # Unclaimed connections in accept order (oldest first), overall and per source; the
        # dicts are ordered sets with O(1) removal.
        self._unclaimed: dict[TcpConnection, None] = {}
        self._unclaimed_by_source: dict[Hashable, dict[TcpConnection, None]] = {}
        self._deadline_timer: Any = None
        self.counts: Counter[str] = Counter(dict.fromkeys(TCP_LISTENER_COUNTS, 0))
        ctx.loop.add_reader(self.fd, self._on_acceptable)

    def _on_acceptable(self) -> None:
        for _ in range(16):
            try:
                conn_sock, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: the connection waits in the backlog
                self.counts[f"acceptError {exc.errno}"] += 1
                return
            if not self._make_room(address_key(addr[0])):
                self.counts["refusedAllClaimed"] += 1
                conn_sock.close()
                continue
            conn_sock.setblocking(False)
            conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = TcpConnection(self._ctx, conn_sock, addr, self)
            self.counts["accepted"] += 1
            self.connections.add(conn)
            self._unclaimed[conn] = None
            self._unclaimed_by_source.setdefault(conn.source, {})[conn] = None
            if self._deadline_timer is None:
                self._arm_deadline_timer()

    def _make_room(self, source: Hashable) -> bool:
        """Evict what a new connection from `source` displaces; False if every slot is
        claimed (the newcomer must go)."""
        same_source = self._unclaimed_by_source.get(source)
        if same_source is not None and len(same_source) >= MAX_UNCLAIMED_PER_ADDRESS:
            self.counts["evictedPerAddress"] += 1
            next(iter(same_source)).close("its source's newer connection took its place")
        if len(self.connections) < MAX_TCP_CONNECTIONS:
            return True
        if not self._unclaimed:
            return False
        self.counts["evictedOldest"] += 1
        next(iter(self._unclaimed)).close("oldest unclaimed, evicted: listener full")
        return True

    def on_claimed(self, conn: TcpConnection) -> None:
        self.counts["claimed"] += 1
        self._forget_unclaimed(conn)

    def forget(self, conn: TcpConnection) -> None:
        """`conn` closed."""
        self.connections.discard(conn)
        self._forget_unclaimed(conn)

    def _forget_unclaimed(self, conn: TcpConnection) -> None:
        if conn in self._unclaimed:
            del self._unclaimed[conn]
            same_source = self._unclaimed_by_source[conn.source]
            del same_source[conn]
            if not same_source:
                del self._unclaimed_by_source[conn.source]

    def _arm_deadline_timer(self) -> None:
        oldest = next(iter(self._unclaimed), None)
        if oldest is None:
            self._deadline_timer = None
            return
        self._deadline_timer = self._ctx.loop.call_at(oldest.accepted_at + FIRST_CHECK_TIMEOUT,
                                                      self._on_deadline)

    def _on_deadline(self) -> None:
        cutoff = self._ctx.loop.time() - FIRST_CHECK_TIMEOUT
        while self._unclaimed:
            oldest = next(iter(self._unclaimed))
            if oldest.accepted_at > cutoff:
                break
            self.counts["closedNoValidCheck"] += 1
            oldest.close("no valid ICE check in time")
        self._arm_deadline_timer()

    def stats(self) -> dict[str, Any]:
        """Slots in use and what was done to strangers (for dumps)."""
        return {"ip": self.ip, "port": self.port, "connections": len(self.connections),
                "unclaimed": len(self._unclaimed), **self.counts}

    def close(self) -> None:
        if self.fd < 0:
            return
        self._ctx.loop.remove_reader(self.fd)
        self.sock.close()
        self.fd = -1
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        for conn in list(self.connections):
            conn.close("listener closed")


def address_key(ip: str) -> Hashable:
    """What the per-address limit counts by: an IPv4 address (also when IPv4-mapped) or an
    IPv6 /64, since one IPv6 client usually holds a whole /64."""
    if ":" not in ip:
        return ip
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])
    except OSError:
        return ip
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:8]


def _listen_tcp(ctx: WorkerContext, ip: str, port: int | None) -> socket.socket:
    """A listening TCP socket on `port`, or on a free port of the worker's RTC range."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    if port:
        candidates: Any = [port]
    elif ctx.ports is not None:
        low, high = ctx.ports.min_port, ctx.ports.max_port
        start = random.randint(low, high)
        candidates = itertools.chain(range(start, high + 1), range(low, start))
    else:
        candidates = [0]
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Lets a restarted worker take its port back while old connections linger in
            # TIME_WAIT; Linux still refuses a second listener on the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, candidate))
            sock.listen(TCP_BACKLOG)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES) or port:
                raise
    raise OSError(errno.EADDRINUSE, f"no free TCP port on {ip} in the worker's range")


def open_udp(ctx: WorkerContext, ip: str, port: int | None, announced: str | None,
             handler: Callable[[UdpSocket, int, Any], int]) -> UdpSocket:
    if ctx.ports is None:
        from worker_proto.errors import UnsupportedError

        raise UnsupportedError("this worker has no UDP port allocator")
    sock = ctx.ports.allocate(ip, port)
    try:
        return UdpSocket(ctx, sock, announced, handler)
    except BaseException:
        port_number = sock.getsockname()[1]
        sock.close()
        ctx.ports.release(port_number)
        raise


def open_endpoint(ctx: WorkerContext, info: dict, on_udp: Callable[[UdpSocket, int, Any], int],
                  on_tcp_frame: Callable[[TcpConnection, bytearray], None]) -> Any:
    """The UdpSocket or TcpListener of one parsed listen info ({protocol, ip, port,
    announcedAddress}), for a WebRTC transport or a WebRtcServer."""
    if info["protocol"] == "udp":
        return open_udp(ctx, info["ip"], info["port"], info["announcedAddress"], on_udp)
    return TcpListener(ctx, info["ip"], info["port"], info["announcedAddress"], on_tcp_frame)
