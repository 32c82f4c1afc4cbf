"""Controller-side proxy of a worker Router."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker_proto.errors import ArgumentError, InvalidStateError, NotFoundError, RelayError
from worker_proto.methods import RouterMethod

from . import ortc
from .channel import Channel
from .channel_object import ChannelObject
from .consumer import Consumer
from .pipe_transport import PipeTransport, validate_listen_info
from .plain_transport import (
    SRTP_CRYPTO_SUITES,
    PlainTransport,
    validate_ip,
    validate_port,
)
from .producer import Producer
from .rtp_observer import ActiveSpeakerObserver, AudioLevelObserver, RtpObserver
from .webrtc_server import WebRtcServer
from .webrtc_transport import WebRtcTransport, validate_listen_infos

logger = logging.getLogger(__name__)


@dataclass
class PipeToRouterResult:
    """What `Router.pipe_to_router` made: the pipe consumer on this router and the producer
    re-created (same id) on the other router."""

    pipe_consumer: Consumer
    pipe_producer: Producer


class Router(ChannelObject):
    """Routes producers to consumers across its transports. Events: "workerclose"."""

    _KIND = "router"
    _CLOSE_METHOD = RouterMethod.CLOSE
    _DUMP_METHOD = RouterMethod.DUMP

    def __init__(self, channel: Channel, router_id: str, rtp_capabilities: dict, app_data: Any,
                 on_close: Callable[[Router], None]) -> None:
        super().__init__(channel, router_id, app_data, on_close)
        self._rtp_capabilities = rtp_capabilities
        self._transports: dict[str, PlainTransport | WebRtcTransport | PipeTransport] = {}
        self._producers: dict[str, Producer] = {}
        self._observers: dict[str, RtpObserver] = {}
        # the other router's id -> the pair of pipe transports to it ({router id: transport}),
        # shared by both routers and made once even when pipe_to_router calls race
        self._pipe_pairs: dict[str, asyncio.Future[dict[str, PipeTransport]]] = {}

    @property
    def rtp_capabilities(self) -> dict:
        """The router's RTP capabilities (mediasoup-client shape)."""
        return self._rtp_capabilities

    @property
    def transports(self) -> list[PlainTransport | WebRtcTransport | PipeTransport]:
        return list(self._transports.values())

    def _worker_closed(self) -> None:
        self._closed_elsewhere("workerclose")

    def _finish(self) -> None:
        for transport in list(self._transports.values()):
            transport._router_closed()
        for observer in list(self._observers.values()):
            observer._router_closed()
        self._producers.clear()
        self._on_close(self)

    async def create_plain_transport(
        self, *, listen_ip: str = "127.0.0.1", port: int | None = None, rtcp_mux: bool = True,
        comedia: bool = False, enable_srtp: bool = False,
        srtp_crypto_suite: str = "AES_CM_128_HMAC_SHA1_80", app_data: Any = None,
    ) -> PlainTransport:
        """A UDP transport for plain RTP; ``port=None`` takes one from the worker's range."""
        self._ensure_open()
        validate_ip(listen_ip, "listen_ip")
        validate_port(port, "port")
        for name, value in (("rtcp_mux", rtcp_mux), ("comedia", comedia),
                            ("enable_srtp", enable_srtp)):
            if not isinstance(value, bool):
                raise ArgumentError(f"{name} must be a bool")
        if srtp_crypto_suite not in SRTP_CRYPTO_SUITES:
            raise ArgumentError(f"srtp_crypto_suite must be one of {SRTP_CRYPTO_SUITES}")
        options = {"listenIp": listen_ip, "port": port, "rtcpMux": rtcp_mux, "comedia": comedia,
                   "enableSrtp": enable_srtp, "srtpCryptoSuite": srtp_crypto_suite}
        transport_id = str(uuid.uuid4())
        data = await self._channel.request(RouterMethod.CREATE_PLAIN_TRANSPORT, self._id,
                                           {"transportId": transport_id, **options})
        transport = PlainTransport(self._channel, self, transport_id,
                                   data if isinstance(data, dict) else {}, options, app_data,
                                   on_close=self._transport_closed)
        if self._closed:  # closed while the request was in flight
            transport._router_closed()
            raise InvalidStateError(f"router {self._id} closed")
        self._transports[transport_id] = transport
        return transport

    async def create_webrtc_transport(
        self, *, listen_infos: list[dict] | None = None, enable_udp: bool = True,
        enable_tcp: bool = False, prefer_udp: bool = False, prefer_tcp: bool = False,
        webrtc_server: WebRtcServer | None = None, app_data: Any = None,
        initial_available_outgoing_bitrate: int = 600_000, min_outgoing_bitrate: int = 0,
        max_outgoing_bitrate: int = 0,
    ) -> WebRtcTransport:
        """A WebRTC transport (ICE-lite, DTLS-SRTP) on its own ports (``listen_infos``:
        [{protocol: "udp"|"tcp", ip, announcedAddress?, port?}], the protocols kept by
        ``enable_udp`` / ``enable_tcp``) or on a WebRtcServer's shared ports. The bitrates
        (bits/s; 0: no bound) seed and bound the send-side bandwidth estimate toward the
        remote, as mediasoup's options of the same names."""
        self._ensure_open()
        for name, value in (("initial_available_outgoing_bitrate",
                             initial_available_outgoing_bitrate),
                            ("min_outgoing_bitrate", min_outgoing_bitrate),
                            ("max_outgoing_bitrate", max_outgoing_bitrate)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ArgumentError(f"{name} must be a non-negative integer")
        for name, value in (("enable_udp", enable_udp), ("enable_tcp", enable_tcp),
                            ("prefer_udp", prefer_udp), ("prefer_tcp", prefer_tcp)):
            if not isinstance(value, bool):
                raise ArgumentError(f"{name} must be a bool")
        if not enable_udp and not enable_tcp:
            raise ArgumentError("enable_udp and enable_tcp are both False")
        transport_id = str(uuid.uuid4())
        options: dict[str, Any] = {"transportId": transport_id, "enableUdp": enable_udp,
                                   "enableTcp": enable_tcp, "preferUdp": prefer_udp,
                                   "preferTcp": prefer_tcp,
                                   "initialAvailableOutgoingBitrate":
                                       initial_available_outgoing_bitrate,
                                   "minOutgoingBitrate": min_outgoing_bitrate,
                                   "maxOutgoingBitrate": max_outgoing_bitrate}
        if webrtc_server is not None:
            if listen_infos is not None:
                raise ArgumentError("give listen_infos or webrtc_server, not both")
            if not isinstance(webrtc_server, WebRtcServer):
                raise ArgumentError("webrtc_server must be a WebRtcServer")
            if webrtc_server.closed:
                raise InvalidStateError(f"WebRtcServer {webrtc_server.id} closed")
            options["webRtcServerId"] = webrtc_server.id
        elif listen_infos is None:
            raise ArgumentError("listen_infos or webrtc_server is required")
        else:
            options["listenInfos"] = validate_listen_infos(listen_infos)
        data = await self._channel.request(RouterMethod.CREATE_WEBRTC_TRANSPORT, self._id,
                                           options)
        transport = WebRtcTransport(self._channel, self, transport_id,
                                    data if isinstance(data, dict) else {}, app_data,
                                    on_close=self._transport_closed,
                                    webrtc_server=webrtc_server)
        if self._closed:
            transport._router_closed()
            raise InvalidStateError(f"router {self._id} closed")
        self._transports[transport_id] = transport
        if webrtc_server is not None:
            webrtc_server._add_transport(transport)
        return transport

    async def create_pipe_transport(
        self, *, listen_info: dict | None = None, enable_srtp: bool = False,
        enable_rtx: bool = False, enable_batching: bool = False, app_data: Any = None,
    ) -> PipeTransport:
        """A transport to another router (``listen_info``: {ip, port?, announcedAddress?},
        default 127.0.0.1 on a port from the worker's range): one UDP socket, RTP and RTCP
        muxed, no ICE or DTLS; SRTP (AEAD_AES_256_GCM) with ``enable_srtp``; NACK answered
        with RTX by its pipe consumers with ``enable_rtx``. With ``enable_batching`` it takes
        several packets per datagram (relay's own format: its ``batching`` is then True, to
        give the other side's ``connect``) and sends them so if the other side takes them."""
        self._ensure_open()
        info = validate_listen_info({"ip": "127.0.0.1"} if listen_info is None else listen_info)
        for name, value in (("enable_srtp", enable_srtp), ("enable_rtx", enable_rtx),
                            ("enable_batching", enable_batching)):
            if not isinstance(value, bool):
                raise ArgumentError(f"{name} must be a bool")
        transport_id = str(uuid.uuid4())
        data = await self._channel.request(RouterMethod.CREATE_PIPE_TRANSPORT, self._id, {
            "transportId": transport_id, "listenInfo": info, "enableSrtp": enable_srtp,
            "enableRtx": enable_rtx, "enableBatching": enable_batching})
        transport = PipeTransport(self._channel, self, transport_id,
                                  data if isinstance(data, dict) else {}, app_data,
                                  on_close=self._transport_closed)
        if self._closed:
            transport._router_closed()
            raise InvalidStateError(f"router {self._id} closed")
        self._transports[transport_id] = transport
        return transport

    async def pipe_to_router(
        self, *, producer_id: str, router: Router, listen_info: dict | None = None,
        enable_srtp: bool = False, enable_rtx: bool = False, enable_batching: bool = True,
    ) -> PipeToRouterResult:
        """Make this router's producer ``producer_id`` a producer of ``router`` too (same id;
        the routers may be in two workers of this controller): through the pair of pipe
        transports between the two routers (made and connected at the first call, reused
        after; closing either closes both), a pipe consumer here and a producer there.
        Pause, resume and close of the producer and of the pipe consumer follow it across
        (the far producer is paused while either is); key-frame requests of the other
        router's consumers come back. Both ends are relay routers, so the pipe batches
        packets (``enable_batching``, see `create_pipe_transport`) unless told not to.
        The options are the first call's for a pair of routers (it is made once)."""
        self._ensure_open()
        if not isinstance(router, Router):
            raise ArgumentError("router must be a Router")
        if router is self:
            raise ArgumentError("cannot pipe a producer to its own router")
        router._ensure_open()
        producer = self._producers.get(producer_id) if isinstance(producer_id, str) else None
        if producer is None:
            raise NotFoundError(f"producer {producer_id!r} not found")
        if producer_id in router._producers:
            raise InvalidStateError(f"producer {producer_id} is already in router {router.id}")
        if not isinstance(enable_batching, bool):
            raise ArgumentError("enable_batching must be a bool")
        pair = await self._pipe_pair(router, {
            "listen_info": listen_info, "enable_srtp": enable_srtp, "enable_rtx": enable_rtx,
            "enable_batching": enable_batching})
        local, remote = pair[self._id], pair[router.id]
        pipe_consumer: Consumer | None = None
        pipe_producer: Producer | None = None
        try:
            pipe_consumer = await local.consume(producer_id=producer_id)
            pipe_producer = await remote.produce(
                id=producer_id, kind=pipe_consumer.kind,
                rtp_parameters=pipe_consumer.rtp_parameters,
                paused=pipe_consumer.producer_paused, app_data=producer.app_data)
            if producer.closed:
                raise InvalidStateError("the producer closed while it was piped")
            if pipe_consumer.closed:
                raise InvalidStateError("the pipe consumer closed while it was piped")
        except BaseException:
            if pipe_consumer is not None:
                pipe_consumer.close()
            if pipe_producer is not None:
                pipe_producer.close()
            raise
        _follow(pipe_consumer, pipe_producer)
        return PipeToRouterResult(pipe_consumer, pipe_producer)

    async def _pipe_pair(self, router: Router, options: dict) -> dict[str, PipeTransport]:
        future = self._pipe_pairs.get(router.id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pipe_pairs[router.id] = future
            router._pipe_pairs[self._id] = future
            try:
                future.set_result(await self._connect_pipe_pair(router, options))
            except BaseException as exc:
                self._forget_pipe_pair(router, future)
                future.set_exception(exc)
                future.exception()  # retrieved: waiters get it, no "never retrieved" warning
                raise
        return await asyncio.shield(future)

    async def _connect_pipe_pair(self, router: Router, options: dict) -> dict[str, PipeTransport]:
        made = await asyncio.gather(self.create_pipe_transport(**options),
                                    router.create_pipe_transport(**options),
                                    return_exceptions=True)
        local, remote = made
        try:
            for result in made:
                if isinstance(result, BaseException):
                    raise result
            assert isinstance(local, PipeTransport) and isinstance(remote, PipeTransport)
            await asyncio.gather(
                local.connect(ip=remote.tuple["localAddress"], port=remote.tuple["localPort"],
                              srtp_parameters=remote.srtp_parameters,
                              batching=remote.batching),
                remote.connect(ip=local.tuple["localAddress"], port=local.tuple["localPort"],
                               srtp_parameters=local.srtp_parameters,
                               batching=local.batching))
        except BaseException:
            for transport in made:
                if isinstance(transport, PipeTransport):
                    transport.close()
            raise
        future = self._pipe_pairs[router.id]

        def closed(other: PipeTransport) -> Callable[[], None]:
            def on_close() -> None:
                self._forget_pipe_pair(router, future)
                other.close()
            return on_close

        local.on("@close", closed(remote))
        remote.on("@close", closed(local))
        return {self._id: local, router.id: remote}

    def _forget_pipe_pair(self, router: Router, future: asyncio.Future) -> None:
        if self._pipe_pairs.get(router.id) is future:
            del self._pipe_pairs[router.id]
        if router._pipe_pairs.get(self._id) is future:
            del router._pipe_pairs[self._id]

    async def create_audio_level_observer(self, *, max_entries: int = 1, threshold: int = -80,
                                          interval: int = 1000,
                                          app_data: Any = None) -> AudioLevelObserver:
        """Every ``interval`` ms, the loudest audio producers added to it ("volumes", at most
        ``max_entries``, at or above ``threshold`` dBov) or "silence"."""
        self._ensure_open()
        for name, value, low, high in (("max_entries", max_entries, 1, 10_000),
                                       ("threshold", threshold, -127, 0),
                                       ("interval", interval, 250, 100_000)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ArgumentError(f"{name} must be an integer in {low}..{high}")
        observer_id = str(uuid.uuid4())
        await self._channel.request(RouterMethod.CREATE_AUDIO_LEVEL_OBSERVER, self._id, {
            "rtpObserverId": observer_id, "maxEntries": max_entries, "threshold": threshold,
            "interval": interval})
        observer = AudioLevelObserver(self._channel, observer_id, self._get_producer, app_data,
                                      on_close=self._observer_closed)
        return self._add_observer(observer)

    async def create_active_speaker_observer(self, *, interval: int = 300,
                                             app_data: Any = None) -> ActiveSpeakerObserver:
        """The dominant speaker among the audio producers added to it ("dominantspeaker")."""
        self._ensure_open()
        if not isinstance(interval, int) or isinstance(interval, bool) or not 100 <= interval <= 100_000:
            raise ArgumentError("interval must be an integer in 100..100000")
        observer_id = str(uuid.uuid4())
        await self._channel.request(RouterMethod.CREATE_ACTIVE_SPEAKER_OBSERVER, self._id,
                                    {"rtpObserverId": observer_id, "interval": interval})
        observer = ActiveSpeakerObserver(self._channel, observer_id, self._get_producer, app_data,
                                         on_close=self._observer_closed)
        return self._add_observer(observer)

    def _add_observer(self, observer: Any) -> Any:
        if self._closed:
            observer._router_closed()
            raise InvalidStateError(f"router {self._id} closed")
        self._observers[observer.id] = observer
        return observer

    def _observer_closed(self, observer: RtpObserver) -> None:
        self._observers.pop(observer.id, None)

    def can_consume(self, *, producer_id: str, rtp_capabilities: dict) -> bool:
        """Whether a peer with ``rtp_capabilities`` can consume producer ``producer_id``."""
        producer = self._producers.get(producer_id)
        if producer is None:
            logger.error("can_consume: producer %r not found", producer_id)
            return False
        try:
            return ortc.can_consume(producer.consumable_rtp_parameters, rtp_capabilities)
        except RelayError as exc:
            logger.error("can_consume: %s", exc)
            return False

    def _transport_closed(self, transport: PlainTransport | WebRtcTransport | PipeTransport) -> None:
        self._transports.pop(transport.id, None)

    def _add_producer(self, producer: Producer) -> None:
        self._producers[producer.id] = producer

    def _remove_producer(self, producer: Producer) -> None:
        self._producers.pop(producer.id, None)

    def _get_producer(self, producer_id: str) -> Producer | None:
        return self._producers.get(producer_id)



def _follow(pipe_consumer: Consumer, pipe_producer: Producer) -> None:
    """The pipe producer is paused while the pipe consumer is, by its own pause or its
    producer's, and closing either end closes the other (mediasoup's observers). One task at
    a time brings the pipe producer to the latest wanted state, so quick pause/resume
    sequences cannot land out of order."""
    busy = False

    def wanted() -> bool:
        return pipe_consumer.paused or pipe_consumer.producer_paused

    async def settle() -> None:
        nonlocal busy
        try:
            while not pipe_producer.closed and pipe_producer.paused != wanted():
                await (pipe_producer.pause() if wanted() else pipe_producer.resume())
        finally:
            busy = False

    def changed() -> None:
        nonlocal busy
        if busy or pipe_producer.closed:
            return
        busy = True
        task = asyncio.ensure_future(settle())
        task.add_done_callback(_log_failure)

    for event in ("producerpause", "producerresume", "@pause", "@resume"):
        pipe_consumer.on(event, changed)
    pipe_consumer.on("@close", pipe_producer.close)
    pipe_producer.on("@close", pipe_consumer.close)
    changed()  # the pipe consumer may have been paused while the pipe producer was made


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("pipe producer did not follow its producer: %s", task.exception())
