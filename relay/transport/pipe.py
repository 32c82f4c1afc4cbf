"""Worker-side pipe transport: carries producers between two routers (in two workers, maybe
on two hosts), as mediasoup's PipeTransport does.

One UDP socket, RTP and RTCP multiplexed on it (RFC 5761), no ICE, no DTLS: both ends are
relay routers told each other's address by their controllers (`connect`). Optional SRTP with
AEAD_AES_256_GCM: each side makes a random key and hands it over in `srtpParameters`. Packets
are taken only from the connected remote; before `connect` nothing is received or sent.

With `enableBatching` on both ends (`router.pipe_to_router` does it), the packets the
fan-out core sends to the pipe in one loop turn go in as few datagrams as fit
(relay.transport.pipe_batch): relay's own format, so a mediasoup peer, which never says it
takes batches, still gets one packet per datagram.

What travels on it is decided by the router: pipe consumers (`relay.worker.pipe_consumer`)
send every encoding of a producer with fresh SSRCs, and the remote router re-creates the
producer with the same id on its own pipe transport. No bandwidth estimation runs here (the
pipe is a trunk between servers, not a subscriber's path), and no congestion feedback goes
to the sending router.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from relay.transport.base import (
    RECV_BUFFER_SIZE,
    Transport,
)
from relay.transport.pipe_batch import PipeBatcher, is_batched, split_frames
from relay.transport.srtp_session import (
    SrtpError,
    SrtpSession,
    buffer_pointer,
    decode_key,
    encode_key,
    generate_key,
)
from worker_proto.errors import ArgumentError, InvalidStateError, UnsupportedError
from worker_proto.validation import (
    optional_bool,
    optional_int,
    require_dict,
    require_int,
    require_str,
)

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext
    from relay.worker.router import Router


# The one suite pipe transports speak (as mediasoup): authenticated encryption, 256-bit key.
PIPE_SRTP_CRYPTO_SUITE = "AEAD_AES_256_GCM"


def _check_ip(value: str, name: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ArgumentError(f"{name} must be an IP address, got {value!r}") from None


class PipeTransport(Transport):
    """One pipe transport of a router (handler id = its transportId)."""

    kind_name = "pipe transport"

    def __init__(self, transport_id: str, router: Router, data: dict, ctx: WorkerContext) -> None:
        listen = require_dict(data.get("listenInfo"), "listenInfo")
        protocol = listen.get("protocol", "udp")
        if protocol != "udp":
            raise UnsupportedError(f"listenInfo.protocol must be \"udp\", got {protocol!r}")
        listen_ip = _check_ip(require_str(listen, "ip", name="listenInfo.ip"), "listenInfo.ip")
        announced = listen.get("announcedAddress")
        if announced is not None and (not isinstance(announced, str) or not announced
                                      or len(announced) > 255):
            raise ArgumentError("listenInfo.announcedAddress must be a non-empty string "
                                "of at most 255 characters or null")
        port = optional_int(listen, "port", 1, 65535, name="listenInfo.port")
        enable_srtp = optional_bool(data, "enableSrtp", False)
        self.enable_rtx = optional_bool(data, "enableRtx", False)
        # takes batched datagrams (and may send them, if the remote takes them: connect)
        self.receives_batches = optional_bool(data, "enableBatching", False)
        if ctx.ports is None:
            raise UnsupportedError("this worker has no UDP port allocator")

        super().__init__(transport_id, router, ctx)
        self.local_ip = listen_ip
        self.announced_address: str | None = announced
        self._ipv6 = ":" in listen_ip
        self.remote: tuple[str, int] | None = None
        self._remote_match: tuple | None = None  # as recvfrom() returns it (IPv6: 4-tuple)
        self.connected = False
        # sending batched (connect): consumers' `media_stream`, and `media_send`
        self.batcher: PipeBatcher | None = None
        self.media_send = ctx.ring.send
        self.batched_datagrams_received = 0
        self.batched_packets_received = 0
        self.srtp_local_key: bytes | None = (
            generate_key(PIPE_SRTP_CRYPTO_SUITE) if enable_srtp else None)
        if self.srtp_local_key is not None:
            self.srtp_send = SrtpSession(PIPE_SRTP_CRYPTO_SUITE, self.srtp_local_key,
                                         outbound=True)
        self._rbuf = bytearray(RECV_BUFFER_SIZE)
        self._rview = memoryview(self._rbuf)
        self._rptr = buffer_pointer(self._rbuf)
        self._sock = ctx.ports.allocate(listen_ip, port)
        try:
            self.local_port = self._sock.getsockname()[1]
            self.fd = self._sock.fileno()
            ctx.loop.add_reader(self.fd, self._on_readable)
        except BaseException:
            self._close_socket()
            raise
        self._start_receive_core(self.fd)
        self._start()

    # -- requests ---------------------------------------------------------------------------

    def connect(self, data: dict) -> dict:
        """{ip, port, srtpParameters, batching}: the other pipe transport's tuple, its key,
        and whether it takes batched datagrams (its description's `batching`)."""
        if self.connected:
            raise InvalidStateError("connect() was already called")
        ip = _check_ip(require_str(data, "ip"), "ip")
        if (":" in ip) != self._ipv6:
            raise ArgumentError(f"ip {ip} is not of the listen address family ({self.local_ip})")
        port = require_int(data, "port", 1, 65535)
        remote_batches = optional_bool(data, "batching", False)
        srtp_parameters = data.get("srtpParameters")
        recv: SrtpSession | None = None
        if self.srtp_send is None:
            if srtp_parameters is not None:
                raise ArgumentError("srtpParameters given but SRTP is not enabled on this "
                                    "pipe transport")
        else:
            if srtp_parameters is None:
                raise ArgumentError("srtpParameters are required (SRTP is enabled)")
            require_dict(srtp_parameters, "srtpParameters")
            suite = require_str(srtp_parameters, "cryptoSuite",
                                name="srtpParameters.cryptoSuite")
            if suite != PIPE_SRTP_CRYPTO_SUITE:
                raise UnsupportedError(f"srtpParameters.cryptoSuite must be "
                                       f"{PIPE_SRTP_CRYPTO_SUITE}, got {suite!r}")
            try:
                key = decode_key(srtp_parameters.get("keyBase64"), suite)
            except SrtpError as exc:
                raise ArgumentError(f"srtpParameters.keyBase64: {exc}") from None
            recv = SrtpSession(suite, key, outbound=False)
        self.srtp_recv = recv
        self.remote = (ip, port)
        self._remote_match = (ip, port, 0, 0) if self._ipv6 else (ip, port)
        self.connected = True
        if remote_batches and self.receives_batches:
            self.batcher = PipeBatcher(self._ctx.ring, self._ctx.loop, self.fd, self.remote)
            self.media_send = self.batcher.media_send
        self._update_routes()
        return {"tuple": self.tuple()}

    @property
    def media_stream(self) -> PipeBatcher | None:
        """Where the fan-out core frames its pipe consumers' packets (batching), or None."""
        return self.batcher

    @property
    def rtcp_remote(self) -> tuple[str, int] | None:
        """Where RTCP goes (muxed: the remote)."""
        return self.remote

    def route(self) -> tuple[int, tuple[str, int] | None, SrtpSession | None]:
        return self.fd, self.remote, self.srtp_send

    # -- inbound (hot) ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        self._drain_udp(self._sock)

    def _on_datagram(self, n: int, addr: tuple, now: float) -> int:
        """One datagram in `self._rbuf[:n]` from `addr`; returns the sends queued."""
        buf = self._rbuf
        if addr != self._remote_match:
            self.dropped["notFromRemote"] += 1
            return 0
        if n and self.receives_batches and is_batched(buf[0]):
            return self._on_batched(n, now)
        return self._on_packet(n, now)

    def _on_batched(self, n: int, now: float) -> int:
        """A batched datagram in `self._rbuf[:n]` (the Python path: the C receive core
        splits them itself): each frame in turn as a datagram of its own."""
        self.batched_datagrams_received += 1
        sends = 0
        buf = self._rbuf
        try:
            for frame in split_frames(bytes(buf[:n])):
                self.batched_packets_received += 1
                m = len(frame)
                buf[:m] = frame
                sends += self._on_packet(m, now)
        except ValueError:
            self.dropped["malformed"] += 1
        return sends

    def _on_packet(self, n: int, now: float) -> int:
        """One packet from the remote in `self._rbuf[:n]`; returns the sends queued."""
        buf = self._rbuf
        if n < 8:
            self.dropped["tooShort"] += 1
            return 0
        if 64 <= (buf[1] & 0x7F) <= 95:  # RTCP (RFC 5761)
            self._on_rtcp(n)
            return 0
        if n < 12:
            self.dropped["tooShort"] += 1
            return 0
        srtp = self.srtp_recv
        if srtp is not None:
            n = srtp.unprotect_rtp(self._rptr, n)
            if n < 0:
                self.dropped["srtp"] += 1
                return 0
        if not self._rtp_fits(buf, n):
            return 0
        return self._route_rtp(buf, self._rview, n, now)

    def _on_rtcp(self, n: int) -> None:
        if self.srtp_recv is not None:
            n = self.srtp_recv.unprotect_rtcp(self._rptr, n)
            if n < 0:
                self.dropped["srtcp"] += 1
                return
        self._handle_rtcp(self._rview[:n])

    # -- outbound RTCP (control path) ---------------------------------------------------------

    def send_rtcp(self, packet: bytes) -> bool:
        return self._send_rtcp_by_ring(self.fd, self.remote, packet)

    # -- description --------------------------------------------------------------------------

    def tuple(self) -> dict:
        result: dict[str, Any] = {
            "localAddress": self.announced_address or self.local_ip,
            "localIp": self.local_ip,
            "localPort": self.local_port,
            "protocol": "udp",
        }
        if self.remote is not None:
            result["remoteIp"], result["remotePort"] = self.remote
        return result

    def srtp_parameters(self) -> dict | None:
        if self.srtp_local_key is None:
            return None
        return {"cryptoSuite": PIPE_SRTP_CRYPTO_SUITE,
                "keyBase64": encode_key(self.srtp_local_key)}

    def description(self) -> dict:
        """The createPipeTransport response."""
        return {"id": self.id, "tuple": self.tuple(), "srtpParameters": self.srtp_parameters(),
                "rtx": self.enable_rtx, "batching": self.receives_batches}

    def dump(self) -> dict:
        dump = super().dump()
        # one entry per pipe consumer, not per encoding it forwards
        dump["consumerIds"] = list(dict.fromkeys(
            getattr(c, "pipe_consumer_id", c.id) for c in self.consumers.values()))
        return {**dump, "connected": self.connected}

    def get_stats(self) -> list[dict]:
        stats = {"type": "pipe-transport", **self._common_stats(), "tuple": self.tuple(),
                 "rtx": self.enable_rtx,
                 "batching": {"receives": self.receives_batches,
                              "sends": self.batcher is not None,
                              "datagramsReceived": self.batched_datagrams_received,
                              "packetsReceived": self.batched_packets_received,
                              **({"sent": self.batcher.stats()} if self.batcher else {})}}
        return self._srtp_stats(stats)

    # -- closing ------------------------------------------------------------------------------

    def _close_io(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self._close_socket()

    def _close_socket(self) -> None:
        sock = self._sock
        if sock.fileno() < 0:
            return
        port = sock.getsockname()[1]
        self._ctx.loop.remove_reader(sock.fileno())
        self._ctx.ring.forget_fd(sock.fileno())  # its per-fd entry goes (send_ring.py)
        sock.close()
        self._ctx.ports.release(port)
