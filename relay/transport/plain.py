"""Worker-side plain RTP transport: UDP sockets, comedia or explicit connect, rtcp-mux or a
separate RTCP port, optional SRTP with SDES-style keys.

Inbound (hot): the socket is non-blocking and registered with `loop.add_reader`; each readable
event drains it with `recvfrom_into` on one preallocated buffer until EAGAIN (or a budget, so a
flood can't starve the loop or overfill the send ring), hands every valid RTP packet to its
producer (which fans it out into the send ring) and ends with `ring.flush_soon()`: ONE submit
per event-loop turn for every socket drained in it.
Per packet: RTP/RTCP demux (RFC 5761) → source check → SRTP unprotect in place → header
validation → producer by SSRC (an unknown SSRC is bound by MID/RID header extensions or to
the producer without a signalled SSRC: `relay.transport.rtp_listener`). Anything else is
dropped and counted by reason.

Like mediasoup, packets are only taken from the remote tuple once it is known (connect() or,
with comedia, the first valid RTP packet); without one, nothing is received or sent.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import (
    is_rtcp,
    iter_rtcp,
)
from relay.transport.base import (
    MAX_PACKETS_PER_DRAIN,
    RECV_BUFFER_SIZE,
    Transport,
)
from relay.transport.srtp_session import (
    CRYPTO_SUITES,
    DEFAULT_CRYPTO_SUITE,
    SrtpError,
    SrtpSession,
    buffer_pointer,
    decode_key,
    encode_key,
    generate_key,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnsupportedError,
)
from worker_proto.methods import TransportEvent
from worker_proto.validation import optional_bool, optional_int, require_dict, require_str

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext
    from relay.worker.router import Router

logger = logging.getLogger(__name__)


class PlainTransport(Transport):
    """One plain RTP transport of a router (handler id = its transportId)."""

    kind_name = "plain transport"

    def __init__(self, transport_id: str, router: Router, data: dict, ctx: WorkerContext) -> None:
        listen = data.get("listenIp")
        announced_ip = None
        if isinstance(listen, dict):  # mediasoup's {ip, announcedIp} form
            announced_ip = listen.get("announcedIp")
            if announced_ip is not None and not isinstance(announced_ip, str):
                raise ArgumentError("listenIp.announcedIp must be a string")
            listen_ip = require_str(listen, "ip", name="listenIp.ip")
        else:
            listen_ip = require_str(data, "listenIp")
        port = optional_int(data, "port", 1, 65535)
        self.rtcp_mux = optional_bool(data, "rtcpMux", True)
        self.comedia = optional_bool(data, "comedia", False)
        enable_srtp = optional_bool(data, "enableSrtp", False)
        suite = data.get("srtpCryptoSuite")
        if suite is None:
            suite = DEFAULT_CRYPTO_SUITE
        if enable_srtp and suite not in CRYPTO_SUITES:
            raise UnsupportedError(
                f"unsupported srtpCryptoSuite {suite!r} (supported: {', '.join(CRYPTO_SUITES)})"
            )

        super().__init__(transport_id, router, ctx)
        self.local_ip = listen_ip
        self.announced_ip = announced_ip
        self.remote: tuple[str, int] | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        # The remotes in the exact form recvfrom() returns (IPv6 gives 4-tuples), so the
        # per-packet source check is one tuple comparison.
        self._remote_match: tuple | None = None
        self._rtcp_remote_match: tuple | None = None
        self._ipv6 = ":" in listen_ip
        self.connected = False  # connect() called (comedia: the remote comes from packets)

        self.srtp_suite: str | None = suite if enable_srtp else None
        self.srtp_local_key: bytes | None = generate_key(suite) if enable_srtp else None
        self.srtp_send: SrtpSession | None = (
            SrtpSession(suite, self.srtp_local_key, outbound=True) if enable_srtp else None
        )

        self._rbuf = bytearray(RECV_BUFFER_SIZE)
        self._rview = memoryview(self._rbuf)
        self._rptr = buffer_pointer(self._rbuf)

        if ctx.ports is None:
            raise UnsupportedError("this worker has no UDP port allocator")
        self._sock = ctx.ports.allocate(listen_ip, port)
        self._rtcp_sock = None
        try:
            self.local_port = self._sock.getsockname()[1]
            self.fd = self._sock.fileno()
            if not self.rtcp_mux:
                self._rtcp_sock = ctx.ports.allocate(listen_ip, None)
            self.local_rtcp_port = self._rtcp_sock.getsockname()[1] if self._rtcp_sock else None
            self.rtcp_fd = self._rtcp_sock.fileno() if self._rtcp_sock else self.fd
            ctx.loop.add_reader(self.fd, self._on_rtp_readable)
            if self._rtcp_sock is not None:
                ctx.loop.add_reader(self.rtcp_fd, self._on_rtcp_readable)
        except BaseException:
            self._close_sockets()
            raise
        self._start_receive_core(self.fd)
        self._start()

    # -- requests ---------------------------------------------------------------------------

    def connect(self, data: dict) -> dict:
        if self.connected:
            raise InvalidStateError("connect() was already called")
        remote = rtcp_remote = None
        if not self.comedia:
            ip = require_str(data, "ip")
            port = optional_int(data, "port", 1, 65535)
            if port is None:
                raise ArgumentError("port is required (comedia is off)")
            ip = self._check_remote_ip(ip)
            remote = (ip, port)
            if self.rtcp_mux:
                rtcp_remote = remote
            else:
                rtcp_port = optional_int(data, "rtcpPort", 1, 65535)
                if rtcp_port is None:
                    raise ArgumentError("rtcpPort is required (rtcpMux is off)")
                rtcp_remote = (ip, rtcp_port)
        srtp_parameters = data.get("srtpParameters")
        response: dict[str, Any] = {}
        if self.srtp_send is None:
            if srtp_parameters is not None:
                raise ArgumentError("srtpParameters given but SRTP is not enabled on this transport")
        else:
            if srtp_parameters is None:
                raise ArgumentError("srtpParameters are required (SRTP is enabled)")
            require_dict(srtp_parameters, "srtpParameters")
            suite = require_str(srtp_parameters, "cryptoSuite", name="srtpParameters.cryptoSuite")
            if suite not in CRYPTO_SUITES:
                raise UnsupportedError(f"unsupported srtpParameters.cryptoSuite {suite!r}")
            try:
                remote_key = decode_key(srtp_parameters.get("keyBase64"), suite)
            except SrtpError as exc:
                raise ArgumentError(f"srtpParameters.keyBase64: {exc}") from None
            recv = SrtpSession(suite, remote_key, outbound=False)
            if suite != self.srtp_suite:
                # mediasoup: the local suite follows the remote's; a new local key goes with it.
                self.srtp_suite = suite
                self.srtp_local_key = generate_key(suite)
                self.srtp_send = SrtpSession(suite, self.srtp_local_key, outbound=True)
            self.srtp_recv = recv
            response["srtpParameters"] = self.srtp_parameters()
        self.connected = True
        if remote is not None:
            self._set_remote(remote)
            self._set_rtcp_remote(rtcp_remote)
        self._update_routes()  # the remote and/or the SRTP session changed
        response["tuple"] = self.tuple()
        response["rtcpTuple"] = self.rtcp_tuple()
        return response

    def route(self) -> tuple[int, tuple[str, int] | None, SrtpSession | None]:
        """Where a consumer of this transport sends: (fd, remote or None, SRTP session)."""
        return self.fd, self.remote, self.srtp_send

    def _check_remote_ip(self, ip: str) -> str:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise ArgumentError(f"ip must be an IP address, got {ip!r}") from None
        if (address.version == 6) != self._ipv6:
            raise ArgumentError(f"ip {ip} is not of the listen address family ({self.local_ip})")
        return str(address)

    def _set_remote(self, addr: tuple) -> None:
        self.remote = (addr[0], addr[1])
        self._remote_match = (addr[0], addr[1], 0, 0) if self._ipv6 and len(addr) == 2 else tuple(addr)

    def _set_rtcp_remote(self, addr: tuple | None) -> None:
        if addr is None:
            self.rtcp_remote = self._rtcp_remote_match = None
            return
        self.rtcp_remote = (addr[0], addr[1])
        self._rtcp_remote_match = (
            (addr[0], addr[1], 0, 0) if self._ipv6 and len(addr) == 2 else tuple(addr)
        )

    # -- inbound (hot) ------------------------------------------------------------------------

    def _on_rtp_readable(self) -> None:
        self._drain_udp(self._sock)

    def _on_datagram(self, n: int, addr: tuple, now: float) -> int:
        """One datagram in `self._rbuf[:n]` from `addr`; returns the sends queued."""
        buf = self._rbuf
        if n < 12:
            if n >= 2 and is_rtcp(buf[1]):
                self._on_rtcp(n, addr, self._remote_match)
            else:
                self.dropped["tooShort"] += 1
            return 0
        if 64 <= (buf[1] & 0x7F) <= 95:  # RTCP (RFC 5761)
            self._on_rtcp(n, addr, self._remote_match)
            return 0
        if addr != self._remote_match:
            if self.remote is not None or not self.comedia:
                self.dropped["notFromRemote"] += 1
                return 0
            learn = True
        else:
            learn = False
        srtp = self.srtp_recv
        if srtp is not None:
            n = srtp.unprotect_rtp(self._rptr, n)
            if n < 0:
                self.dropped["srtp"] += 1
                return 0
        elif self.srtp_send is not None:  # SRTP on, but no remote key yet
            self.dropped["srtpNotReady"] += 1
            return 0
        if not self._rtp_fits(buf, n):
            return 0
        if learn:
            self._learn_remote(addr)
        return self._route_rtp(buf, self._rview, n, now)

    def _learn_remote(self, addr: tuple[str, int]) -> None:
        """comedia: the first valid RTP packet tells where the remote is."""
        self._set_remote(addr)
        if self.rtcp_mux:
            self._set_rtcp_remote(addr)
        self._update_routes()
        self._ctx.notify(self.id, TransportEvent.TUPLE, {"tuple": self.tuple()})

    def _on_rtcp_readable(self) -> None:
        recv = self._rtcp_sock.recvfrom_into
        try:
            for _ in range(MAX_PACKETS_PER_DRAIN):
                n, addr = recv(self._rbuf)
                if addr != self._rtcp_remote_match:
                    if self.rtcp_remote is not None or not self.comedia:
                        self.dropped["rtcpNotFromRemote"] += 1
                        continue
                    if n < 8 or self._rbuf[0] >> 6 != 2:
                        self.dropped["rtcpMalformed"] += 1
                        continue
                    self._set_rtcp_remote(addr)
                    self._ctx.notify(
                        self.id, TransportEvent.RTCP_TUPLE, {"rtcpTuple": self.rtcp_tuple()}
                    )
                self._on_rtcp(n, addr, self._rtcp_remote_match)
        except BlockingIOError:
            pass
        except OSError as exc:
            self.dropped[f"rtcp recv {exc.errno}"] += 1
        except Exception:
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["internalError"] += 1
        self._ctx.ring.flush_soon()

    def _on_rtcp(self, n: int, addr: tuple[str, int], expected: tuple[str, int] | None) -> None:
        """Defensive: count it, unprotect it, forward key-frame requests; never raise."""
        if addr != expected:
            if expected is not None or not (self.comedia and self.rtcp_mux):
                self.dropped["rtcpNotFromRemote"] += 1
                return
            # comedia + rtcp-mux: a receive-only remote (it sends only RTCP) is learned from
            # its first RTCP packet that authenticates (when SRTP is on) and parses.
            learn = True
        else:
            learn = False
        try:
            if self.srtp_recv is not None:
                n = self.srtp_recv.unprotect_rtcp(self._rptr, n)
                if n < 0:
                    self.dropped["srtcp"] += 1
                    return
            elif self.srtp_send is not None:
                self.dropped["srtpNotReady"] += 1
                return
            if learn:
                if n < 8 or next(iter_rtcp(self._rbuf, n), None) is None:
                    self.dropped["rtcpMalformed"] += 1
                    return
                self._learn_remote(addr)
        except Exception:  # a bug here must not take the packet path down
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["rtcpError"] += 1
            return
        self._handle_rtcp(self._rview[:n])

    # -- outbound RTCP (control path) ---------------------------------------------------------

    def send_rtcp(self, packet: bytes) -> bool:
        return self._send_rtcp_by_ring(self.rtcp_fd, self.rtcp_remote, packet)

    # -- description --------------------------------------------------------------------------

    def tuple(self) -> dict:
        result: dict[str, Any] = {
            "localIp": self.announced_ip or self.local_ip,
            "localPort": self.local_port,
            "protocol": "udp",
        }
        if self.remote is not None:
            result["remoteIp"], result["remotePort"] = self.remote
        return result

    def rtcp_tuple(self) -> dict | None:
        if self.rtcp_mux:
            return None
        result: dict[str, Any] = {
            "localIp": self.announced_ip or self.local_ip,
            "localPort": self.local_rtcp_port,
            "protocol": "udp",
        }
        if self.rtcp_remote is not None:
            result["remoteIp"], result["remotePort"] = self.rtcp_remote
        return result

    def srtp_parameters(self) -> dict | None:
        if self.srtp_local_key is None:
            return None
        return {"cryptoSuite": self.srtp_suite, "keyBase64": encode_key(self.srtp_local_key)}

    def description(self) -> dict:
        """The createPlainTransport response."""
        return {
            "id": self.id,
            "tuple": self.tuple(),
            "rtcpTuple": self.rtcp_tuple(),
            "srtpParameters": self.srtp_parameters(),
        }

    def dump(self) -> dict:
        return {
            **super().dump(),
            "rtcpMux": self.rtcp_mux,
            "comedia": self.comedia,
            "connected": self.connected,
        }

    def get_stats(self) -> list[dict]:
        stats = {
            "type": "plain-rtp-transport",
            **self._common_stats(),
            "tuple": self.tuple(),
            "rtcpTuple": self.rtcp_tuple(),
            "rtcpMux": self.rtcp_mux,
            "comedia": self.comedia,
        }
        return self._srtp_stats(stats)

    # -- closing ------------------------------------------------------------------------------

    def _close_io(self) -> None:
        self._close_sockets()

    def _close_sockets(self) -> None:
        loop = self._ctx.loop
        for sock in (self._sock, self._rtcp_sock):
            if sock is None or sock.fileno() < 0:
                continue
            port = sock.getsockname()[1]
            loop.remove_reader(sock.fileno())
            self._ctx.ring.forget_fd(sock.fileno())  # its per-fd entry goes (send_ring.py)
            sock.close()
            self._ctx.ports.release(port)
