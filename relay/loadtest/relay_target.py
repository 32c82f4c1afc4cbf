"""The system under test: a relay worker (or several, --workers), spawned and wired through the public controller
API (routers, plain transports with optional SRTP or WebRTC transports, produce, consume).

With WebRTC every send and receive transport is a synthetic peer (webrtc_peer.py) on its
own socket: the handshakes run concurrently once everything is produced and consumed, the
DTLS-exported keys go to the C generator and sinks, and a consent check goes out from each
peer every `consent_interval` seconds until the target closes."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import relay
import relay.controller.worker as worker_spawn
from relay.rtp.transport_cc import TRANSPORT_CC_URI

from .proc_stats import ProcessSample, sample_process
from .scenario import (
    ROUTER_CODECS,
    TRANSPORT_CC_EXT_ID,
    Scenario,
    consumer_rtp_capabilities,
    negotiated_transport_cc,
    producer_rtp_parameters,
)
from .traffic import Traffic
from .webrtc_peer import (
    CONSENT_INTERVAL,
    HANDSHAKE_TIMEOUT,
    ConsentKeeper,
    HandshakeError,
    OfferingCertificate,
    WebRtcPeer,
    connect_peers,
)

WEBRTC_LISTEN_INFOS = [{"protocol": "udp", "ip": "127.0.0.1"}]


# Counters of a transport's getStats "receiveFeedback" summed over the send transports
# (transportCc.* under their own names), compared before and after each step.
FEEDBACK_COUNTERS = ("feedbackPacketsSent", "rembPacketsSent")
TRANSPORT_CC_COUNTERS = ("packets", "duplicates", "refused", "evicted")


def _key_of(parameters: dict) -> tuple[str, bytes]:
    return parameters["cryptoSuite"], base64.b64decode(parameters["keyBase64"])


async def _pipe_room(routers: list[Any], sinks: int, producer_ids: dict[int, str],
                     enable_srtp: bool) -> None:
    """--workers: sink i of a room goes on worker i mod N; the routers of the other workers
    that get a sink receive the room's producers through the pipe transport pair to the
    first router (plain and WebRTC alike)."""
    for edge in routers[1:sinks]:
        for producer_id in producer_ids.values():
            await routers[0].pipe_to_router(producer_id=producer_id, router=edge,
                                            enable_srtp=enable_srtp)


@contextlib.contextmanager
def spawning_from(tree: str | None) -> Iterator[None]:
    """Workers created inside run from checkout ``tree`` (None: this one). create_worker
    puts its own package root first on the worker's PYTHONPATH, so that root is swapped
    while it spawns (targets start one at a time; nothing else spawns meanwhile)."""
    if tree is None:
        yield
        return
    saved = worker_spawn._PACKAGE_ROOT
    worker_spawn._PACKAGE_ROOT = tree
    try:
        yield
    finally:
        worker_spawn._PACKAGE_ROOT = saved


def mapped_ring_module(pid: int) -> str | None:
    """The send ring's compiled module the process has mapped (which checkout it runs)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                if "/relay/uring/_ring" in path and path.endswith(".so"):
                    return path
    except OSError:
        pass
    return None


class RelayTarget:
    """One worker in one send mode, with the scenario built on it. ``quality``: whether its
    producers and consumers negotiate NACK and PLI/FIR (see --quality); ``transport_cc``:
    whether its producers negotiate transport-cc and the generator numbers every packet (see
    --transport-cc); ``transport_cc_extension``: without it, the generator still numbers every
    packet and the producers declare the extension, not the feedback; ``label`` names it in the report (the send mode unless several variants
    share one)."""

    kind = "relay"

    def __init__(self, send_mode: str, port_range: tuple[int, int], *,
                 transport: str = "plain", consent_interval: float = CONSENT_INTERVAL,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, quality: bool = True,
                 transport_cc: bool = False, transport_cc_extension: bool = False,
                 label: str | None = None, workers: int = 1, tree: str | None = None) -> None:
        self.send_mode = send_mode
        self.tree = tree  # --compare-tree: the checkout its workers run from (None: this)
        # --rss-per-consumer: awaited once the producers exist, before any consumer
        self.before_consumers: Callable[[], Awaitable[None]] | None = None
        # --workers: each room's producers on the first worker, its sinks spread over all of
        # them, each other worker's router fed through a pipe transport (pipe_to_router)
        self.worker_count = workers
        self.workers: list[relay.Worker] = []
        self.label = label or send_mode
        self.quality = quality
        # What the worker actually negotiated, counted after the build (see _check_quality).
        self.quality_check: dict[str, Any] = {}
        self.transport_cc = transport_cc
        self.transport_cc_extension = transport_cc_extension and not transport_cc
        self.transport_cc_check: dict[str, Any] = {}  # likewise (see _check_transport_cc)
        self._send_transports: list[Any] = []
        self._producers: list[Any] = []
        self._consumers: list[Any] = []
        self.port_range = port_range
        self.transport = transport
        self.consent_interval = consent_interval
        self.handshake_timeout = handshake_timeout
        self.worker: relay.Worker | None = None
        self.pinned: list[int] | None = None
        self.initial_send_ring: dict = {}
        # WebRTC: the peers' set-up figures and consent counts (updated in place while the
        # run goes on, so the report holds the final counts); None for plain transports.
        self.webrtc: dict[str, Any] | None = None
        self._consent: ConsentKeeper | None = None

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker else None

    async def start(self, cpus: set[int] | None) -> None:
        share = (self.port_range[1] - self.port_range[0] + 1) // self.worker_count
        for index in range(self.worker_count):
            low = self.port_range[0] + index * share
            with spawning_from(self.tree):
                self.workers.append(await relay.create_worker(
                    log_level="error", rtc_min_port=low, rtc_max_port=low + share - 1,
                    send_mode=self.send_mode))
        self.worker = self.workers[0]
        if cpus:  # every worker on the workers' cores: worker CPU is then comparable
            try:
                for worker in self.workers:
                    os.sched_setaffinity(worker.pid, cpus)
                self.pinned = sorted(cpus)
            except OSError:
                self.pinned = None
        self.initial_send_ring = (await self.worker.dump())["sendRing"]

    def tree_info(self) -> dict[str, Any]:
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return {"path": self.tree or here, "compared": self.tree is not None,
                "ringModule": mapped_ring_module(self.pid) if self.pid else None}

    async def build(self, scenario: Scenario, traffic: Traffic, srtp_suite: str | None) -> None:
        if self.transport_cc or self.transport_cc_extension:
            traffic.enable_transport_cc(TRANSPORT_CC_EXT_ID)
        if self.transport == "webrtc":
            await self._build_webrtc(scenario, traffic, srtp_suite or "AES_CM_128_HMAC_SHA1_80")
        else:
            await self._build_plain(scenario, traffic, srtp_suite)
        await self._check_quality()
        await self._check_transport_cc(traffic)

    async def _check_transport_cc(self, traffic: Traffic) -> None:
        """Count what the worker negotiated, so a run cannot claim transport-cc was on (or
        off) when it was not: producers with the extension and the feedback type, send
        transports whose feedback is transport-cc (each step adds what they recorded and
        sent, see receive_feedback)."""
        types = []
        for transport in self._send_transports:
            (stats,) = await transport.get_stats()
            types.append((stats.get("receiveFeedback") or {}).get("type"))
        self.transport_cc_check = {
            "requested": "on" if self.transport_cc else "off",
            "producersNegotiated": sum(1 for p in self._producers
                                       if negotiated_transport_cc(p.rtp_parameters)),
            "producers": len(self._producers),
            "sendTransportsWithTransportCc": types.count("transport-cc"),
            "sendTransports": len(self._send_transports),
            # consumers whose RTP parameters carry the extension: the worker numbers what
            # they send and records it in its transport's send history
            "consumersNumbered": sum(1 for c in self._consumers if any(
                ext.get("uri") == TRANSPORT_CC_URI
                for ext in c.rtp_parameters.get("headerExtensions", []))),
            "consumers": len(self._consumers),
            "generatorNumbersPackets": traffic.transport_cc}

    async def receive_feedback(self) -> dict[str, Any]:
        """The send transports' uplink feedback counters, summed (getStats
        "receiveFeedback"), with the RTP packets they received."""
        totals: dict[str, Any] = {"types": [], "rtpPacketsReceived": 0,
                                  # what the worker's C receive core took whole vs handed
                                  # to Python (absent on a tree without it)
                                  "receiveCorePacketsTaken": 0, "receiveCoreHandedToPython": 0}
        for key in FEEDBACK_COUNTERS:
            totals[key] = 0
        for key in TRANSPORT_CC_COUNTERS:
            totals["transportCc" + key.capitalize()] = 0
        for transport in self._send_transports:
            (stats,) = await transport.get_stats()
            feedback = stats.get("receiveFeedback") or {}
            totals["rtpPacketsReceived"] += stats.get("rtpPacketsReceived", 0)
            core = stats.get("receiveCore") or {}
            totals["receiveCorePacketsTaken"] += core.get("packetsTaken", 0)
            totals["receiveCoreHandedToPython"] += core.get("handedToPython", 0)
            if feedback.get("type") not in totals["types"]:
                totals["types"].append(feedback.get("type"))
            for key in FEEDBACK_COUNTERS:
                totals[key] += feedback.get(key) or 0
            tcc = feedback.get("transportCc") or {}
            for key in TRANSPORT_CC_COUNTERS:
                totals["transportCc" + key.capitalize()] += tcc.get(key) or 0
        return totals

    async def _check_quality(self) -> None:
        """Count what the worker negotiated, so a run cannot claim NACK was on (or off)
        when it was not: consumers with NACK, producers with a retransmission store."""
        def nack(consumer: Any) -> bool:
            return any(fb.get("type") == "nack" and not fb.get("parameter")
                       for codec in consumer.rtp_parameters["codecs"]
                       for fb in codec.get("rtcpFeedback", []))

        stores = 0
        for producer in self._producers:
            stats = await producer.get_stats()
            stores += sum(1 for s in stats if s.get("retransmissionStore") is not None)
        self.quality_check = {
            "requested": "on" if self.quality else "off",
            "consumersWithNack": sum(1 for c in self._consumers if nack(c)),
            "consumers": len(self._consumers),
            "producerStreamsWithRetransmissionStore": stores,
            "producers": len(self._producers)}

    async def _produce(self, transport: Any, kind: str, streams: list[int],
                       producer_ids: dict[int, str]) -> None:
        """One producer per stream on a send transport (plain or WebRTC alike)."""
        self._send_transports.append(transport)
        for stream in streams:
            producer = await transport.produce(
                kind=kind, rtp_parameters=producer_rtp_parameters(
                    kind, stream, self.quality, self.transport_cc, self.transport_cc_extension))
            self._producers.append(producer)
            producer_ids[stream] = producer.id

    async def _consume(self, transport: Any, router: Any, streams: list[int],
                       producer_ids: dict[int, str]) -> None:
        """A consumer of each stream on a sink's receive transport."""
        capabilities = consumer_rtp_capabilities(router.rtp_capabilities, self.quality)
        for stream in streams:
            self._consumers.append(await transport.consume(
                producer_id=producer_ids[stream], rtp_capabilities=capabilities,
                enable_rtx=self.quality))  # mediasoup's knob: NACK for audio too

    async def _build_plain(self, scenario: Scenario, traffic: Traffic,
                           srtp_suite: str | None) -> None:
        assert self.worker is not None
        enable = srtp_suite is not None
        suite = srtp_suite or "AES_CM_128_HMAC_SHA1_80"
        for room in scenario.rooms:
            routers = [await worker.create_router(media_codecs=ROUTER_CODECS)
                       for worker in self.workers]
            router = routers[0]
            producer_ids: dict[int, str] = {}
            for group in room.send_groups:
                transport = await router.create_plain_transport(
                    listen_ip="127.0.0.1", comedia=True, enable_srtp=enable,
                    srtp_crypto_suite=suite)
                if enable:
                    await transport.connect(srtp_parameters={
                        "cryptoSuite": suite,
                        "keyBase64": base64.b64encode(traffic.generator_key).decode()})
                await self._produce(transport, scenario.kind, group, producer_ids)
                for stream in group:
                    traffic.set_destination(stream, ("127.0.0.1", transport.tuple["localPort"]))
            if self.before_consumers is not None:
                await self.before_consumers()
            await _pipe_room(routers, len(room.sinks), producer_ids, enable)
            for index, sink in enumerate(room.sinks):
                sink_router = routers[index % len(routers)]
                transport = await sink_router.create_plain_transport(
                    listen_ip="127.0.0.1", enable_srtp=enable, srtp_crypto_suite=suite)
                ip, port = traffic.sink_address(sink)
                await transport.connect(ip=ip, port=port, srtp_parameters={
                    "cryptoSuite": suite,
                    "keyBase64": base64.b64encode(os.urandom(len(traffic.generator_key)))
                    .decode()} if enable else None)
                if enable:
                    traffic.set_sink_key(sink, *_key_of(transport.srtp_parameters))
                await self._consume(transport, sink_router, scenario.streams_of_sink(sink),
                                    producer_ids)

    async def _build_webrtc(self, scenario: Scenario, traffic: Traffic, suite: str) -> None:
        assert self.worker is not None
        certificate = OfferingCertificate.for_suite(suite)
        senders = traffic.open_group_senders()
        jobs: list[tuple[WebRtcPeer, dict]] = []
        keyed: list[tuple[WebRtcPeer, str, int]] = []  # (peer, "send" | "sink", index)

        async def peer_for(router: Any, name: str, sock: Any) -> tuple[Any, WebRtcPeer]:
            transport = await router.create_webrtc_transport(listen_infos=WEBRTC_LISTEN_INFOS)
            candidate = next(c for c in transport.ice_candidates if c["protocol"] == "udp")
            peer = WebRtcPeer(name, sock, certificate, transport.ice_parameters, candidate)
            await transport.connect(dtls_parameters=peer.dtls_parameters)
            jobs.append((peer, transport.dtls_parameters))
            return transport, peer

        group_index = 0
        for room_index, room in enumerate(scenario.rooms):
            routers = [await worker.create_router(media_codecs=ROUTER_CODECS)
                       for worker in self.workers]
            router = routers[0]
            producer_ids: dict[int, str] = {}
            for group in room.send_groups:
                streams = f"stream {group[0]}" if len(group) == 1 else \
                    f"streams {group[0]}..{group[-1]}"
                transport, peer = await peer_for(
                    router, f"room {room_index} producer transport {group_index} ({streams})",
                    senders[group_index])
                keyed.append((peer, "send", group_index))
                await self._produce(transport, scenario.kind, group, producer_ids)
                for stream in group:
                    traffic.set_destination(stream, peer.remote)
                group_index += 1
            # as with plain transports; the pipes between workers of one host stay unencrypted
            await _pipe_room(routers, len(room.sinks), producer_ids, False)
            for index, sink in enumerate(room.sinks):
                sink_router = routers[index % len(routers)]
                transport, peer = await peer_for(
                    sink_router, f"room {room_index} consumer transport {sink}",
                    traffic.sinks[sink])
                keyed.append((peer, "sink", sink))
                await self._consume(transport, sink_router, scenario.streams_of_sink(sink),
                                    producer_ids)
        summary = await connect_peers(jobs, timeout=self.handshake_timeout)
        for peer, role, index in keyed:
            if not (peer.crypto_suite and peer.local_srtp_key and peer.remote_srtp_key):
                raise HandshakeError(f"{peer.name}: DTLS connected without SRTP keys")
            if role == "send":
                traffic.set_sender_key(index, peer.crypto_suite, peer.local_srtp_key)
            else:
                traffic.set_sink_key(index, peer.crypto_suite, peer.remote_srtp_key)
        peers = [peer for peer, _ in jobs]
        self.webrtc = {**summary, "offeredSuite": suite,
                       "consentIntervalSeconds": self.consent_interval,
                       "consentChecksSent": 0, "consentSendErrors": 0}
        self._consent = ConsentKeeper(peers, self.consent_interval, on_round=self._on_consent)
        self._consent.start()

    def _on_consent(self, rounds: int) -> None:
        assert self.webrtc is not None and self._consent is not None
        self.webrtc["consentChecksSent"] = self._consent.checks_sent
        self.webrtc["consentSendErrors"] = self._consent.send_errors

    async def send_ring(self) -> dict:
        assert self.worker is not None
        return (await self.worker.dump())["sendRing"]

    def sample(self) -> ProcessSample | None:
        """The workers' CPU time, RSS and run-queue wait, summed over all of them."""
        samples = [sample_process(w.pid) for w in self.workers]
        if not samples or any(s is None for s in samples):
            return None
        waits = [s.runqueue_wait_seconds for s in samples]
        return ProcessSample(
            max(s.wall for s in samples), sum(s.cpu_seconds for s in samples),
            sum(s.rss_bytes for s in samples),
            None if any(w is None for w in waits) else sum(waits))

    async def close(self) -> Any:
        if self._consent is not None:
            await self._consent.stop()
            self._on_consent(self._consent.rounds)
            self._consent = None
        for worker in self.workers:
            if not worker.closed:
                worker.close()
        codes = [await worker.wait_closed() for worker in self.workers]
        return next((code for code in codes if code), codes[0] if codes else None)
