"""The system under test: a relay worker, spawned and wired through the public controller
API (routers, plain transports with optional SRTP, produce, consume)."""

from __future__ import annotations

import base64
import os
from typing import Any

import relay

from .proc_stats import ProcessSample, sample_process
from .scenario import ROUTER_CODECS, Scenario, producer_rtp_parameters
from .traffic import Traffic


def _key_of(parameters: dict) -> tuple[str, bytes]:
    return parameters["cryptoSuite"], base64.b64decode(parameters["keyBase64"])


class RelayTarget:
    """One worker in one send mode, with the scenario built on it."""

    kind = "relay"

    def __init__(self, send_mode: str, port_range: tuple[int, int]) -> None:
        self.send_mode = send_mode
        self.port_range = port_range
        self.worker: relay.Worker | None = None
        self.pinned: list[int] | None = None
        self.initial_send_ring: dict = {}

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker else None

    async def start(self, cpus: set[int] | None) -> None:
        self.worker = await relay.create_worker(
            log_level="error", rtc_min_port=self.port_range[0], rtc_max_port=self.port_range[1],
            send_mode=self.send_mode)
        if cpus:
            try:
                os.sched_setaffinity(self.worker.pid, cpus)
                self.pinned = sorted(cpus)
            except OSError:
                self.pinned = None
        self.initial_send_ring = (await self.worker.dump())["sendRing"]

    async def build(self, scenario: Scenario, traffic: Traffic, srtp_suite: str | None) -> None:
        assert self.worker is not None
        enable = srtp_suite is not None
        suite = srtp_suite or "AES_CM_128_HMAC_SHA1_80"
        for room in scenario.rooms:
            router = await self.worker.create_router(media_codecs=ROUTER_CODECS)
            producer_ids: dict[int, str] = {}
            for group in room.send_groups:
                transport = await router.create_plain_transport(
                    listen_ip="127.0.0.1", comedia=True, enable_srtp=enable,
                    srtp_crypto_suite=suite)
                if enable:
                    await transport.connect(srtp_parameters={
                        "cryptoSuite": suite,
                        "keyBase64": base64.b64encode(traffic.generator_key).decode()})
                for stream in group:
                    producer = await transport.produce(
                        kind=scenario.kind,
                        rtp_parameters=producer_rtp_parameters(scenario.kind, stream))
                    producer_ids[stream] = producer.id
                    traffic.set_destination(stream, ("127.0.0.1", transport.tuple["localPort"]))
            for sink in room.sinks:
                transport = await router.create_plain_transport(
                    listen_ip="127.0.0.1", enable_srtp=enable, srtp_crypto_suite=suite)
                ip, port = traffic.sink_address(sink)
                await transport.connect(ip=ip, port=port, srtp_parameters={
                    "cryptoSuite": suite,
                    "keyBase64": base64.b64encode(os.urandom(len(traffic.generator_key)))
                    .decode()} if enable else None)
                if enable:
                    traffic.set_sink_key(sink, *_key_of(transport.srtp_parameters))
                for stream in scenario.streams_of_sink(sink):
                    await transport.consume(producer_id=producer_ids[stream],
                                            rtp_capabilities=router.rtp_capabilities)

    async def send_ring(self) -> dict:
        assert self.worker is not None
        return (await self.worker.dump())["sendRing"]

    def sample(self) -> ProcessSample | None:
        return sample_process(self.pid) if self.pid else None

    async def close(self) -> Any:
        if self.worker is not None and not self.worker.closed:
            self.worker.close()
        if self.worker is not None:
            return await self.worker.wait_closed()
        return None
