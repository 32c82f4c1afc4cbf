"""Test driver: ICE-lite + DTLS on one real UDP socket, wired the way
relay/transport/webrtc_transport.py is meant to wire them:

  datagram -> demux by first byte -> STUN: IceLiteAgent, answer to the source tuple
                                  -> anything else from a tuple that has not passed an
                                     ICE check: dropped and counted
                                  -> DTLS: DtlsTransport.feed; RTP/RTCP: kept in `media`
  DTLS output -> the ICE selected tuple; DTLS starts once ICE is connected and the remote
  DTLS parameters are known (mediasoup's MayRunDtlsTransport); timers on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from relay.transport.dtls import DtlsCertificate, DtlsTransport
from relay.transport.ice_lite import IceLiteAgent, IceTuple


class LiteUdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, certificate: DtlsCertificate) -> None:
        self.ice = IceLiteAgent(
            clock=time.monotonic,
            on_state_change=self._on_ice_state,
            on_selected_tuple_change=self._on_selected_tuple,
        )
        self.dtls = DtlsTransport(certificate, self._send_dtls,
                                  on_state_change=self._on_dtls_state)
        self.transport: asyncio.DatagramTransport | None = None
        self.ice_states: list[str] = []
        self.dtls_states: list[str] = []
        self.selected_tuples: list[IceTuple | None] = []
        self.media: list[bytes] = []
        self.media_event = asyncio.Event()
        self.dropped_unvalidated = 0
        self.dropped_unknown = 0
        self._dtls_remote_set = False
        self._dtls_timer: asyncio.TimerHandle | None = None
        self._consent_timer: asyncio.TimerHandle | None = None
        self._state_changed = asyncio.Event()

    @classmethod
    async def open(cls, certificate: DtlsCertificate) -> LiteUdpEndpoint:
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: cls(certificate), local_addr=("127.0.0.1", 0)
        )
        return endpoint

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def connect(self, dtls_parameters: dict[str, Any]) -> str:
        role = self.dtls.set_remote_parameters(dtls_parameters)
        self._dtls_remote_set = True
        self._maybe_start_dtls()
        return role

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async def waiter() -> None:
            while not predicate():
                self._state_changed.clear()
                await self._state_changed.wait()

        await asyncio.wait_for(waiter(), timeout)

    def close(self) -> None:
        self.dtls.close()
        self.ice.close()
        for timer in (self._dtls_timer, self._consent_timer):
            if timer is not None:
                timer.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        tuple_: IceTuple = (addr[0], addr[1], "udp")
        first = data[0] if data else 255  # RFC 7983 demux by first byte
        if first < 4:  # STUN
            response = self.ice.handle_stun(data, tuple_)
            if response is not None and self.transport is not None:
                self.transport.sendto(response, addr)
            self._arm_consent_timer()
        elif not self.ice.is_validated(tuple_):
            self.dropped_unvalidated += 1
        elif 20 <= first < 64:  # DTLS
            self.dtls.feed(data)
            self._arm_dtls_timer()
        elif 128 <= first < 192:  # RTP / RTCP
            self.media.append(data)
            self.media_event.set()
        else:
            self.dropped_unknown += 1

    # -- wiring ----------------------------------------------------------------------

    def _send_dtls(self, datagram: bytes) -> None:
        selected = self.ice.selected_tuple
        if selected is not None and self.transport is not None:
            self.transport.sendto(datagram, selected[:2])

    def _maybe_start_dtls(self) -> None:
        if self._dtls_remote_set and self.dtls.state == "new" and \
                self.ice.state in ("connected", "completed"):
            self.dtls.start()
            self._arm_dtls_timer()

    def _arm_dtls_timer(self) -> None:
        if self._dtls_timer is not None:
            self._dtls_timer.cancel()
            self._dtls_timer = None
        timeout = self.dtls.get_timeout()
        if timeout is not None:
            self._dtls_timer = asyncio.get_running_loop().call_later(timeout, self._on_dtls_timer)

    def _on_dtls_timer(self) -> None:
        self._dtls_timer = None
        self.dtls.handle_timeout()
        self._arm_dtls_timer()

    def _arm_consent_timer(self) -> None:
        if self._consent_timer is not None:
            self._consent_timer.cancel()
            self._consent_timer = None
        deadline = self.ice.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._consent_timer = asyncio.get_running_loop().call_later(
                delay, self._on_consent_timer
            )

    def _on_consent_timer(self) -> None:
        self._consent_timer = None
        self.ice.poll()
        self._arm_consent_timer()

    def _on_ice_state(self, state: str) -> None:
        self.ice_states.append(state)
        # After the STUN response that connected ICE has gone out, not before it.
        asyncio.get_running_loop().call_soon(self._maybe_start_dtls)
        self._state_changed.set()

    def _on_selected_tuple(self, tuple_: IceTuple | None) -> None:
        self.selected_tuples.append(tuple_)
        self._state_changed.set()

    def _on_dtls_state(self, state: str) -> None:
        self.dtls_states.append(state)
        self._state_changed.set()
