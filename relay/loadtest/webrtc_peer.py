"""Synthetic WebRTC peers for relay-loadtest: the ICE + DTLS set-up a browser would do for one
WebRTC transport, and nothing of the media stack (no decoding, no RTCP).

One `WebRtcPeer` per transport, on its own UDP socket (the harness's sink or sender socket):
  1. ICE, as the controlling agent: a Binding request with USERNAME "remote:local",
     PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY (the transport's ICE
     password) and FINGERPRINT (aioice's STUN messages, as relay/transport/ice_lite.py uses
     them), retransmitted until the authenticated success response arrives;
  2. DTLS as the client (relay is told our role is "client", so it is the server), with
     relay's own sans-I/O engine (relay/transport/dtls.py); the peer offers exactly the
     SRTP profile asked for, so the run measures that suite and no other;
  3. the SRTP keys exported from the handshake (RFC 5764 split, done by dtls.py): the peer
     protects with `local_srtp_key`, and what the worker sends it decrypts with
     `remote_srtp_key`. The C generator and sinks take them from here.

`connect_peers()` runs every handshake concurrently (bounded, so a large scenario does not
make the worker retransmit its flights), each with its own deadline; one that fails or
times out is a `HandshakeError` naming the peer and the stage. After it, Python reads the
sockets no more (the C core owns them) and only writes to them: `ConsentKeeper` sends an
ICE consent check from every peer every few seconds (RFC 7675; relay drops a tuple after
30 s without one). The answers are counted by the C sinks as STUN, never as media.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

from aioice import stun

from relay.transport.dtls import SRTP_PROFILES, DtlsCertificate, DtlsTransport, SrtpProfile
from relay.transport.ice_lite import random_ice_string

CONSENT_INTERVAL = 5.0  # RFC 7675 asks for 4-6 s; relay's consent timeout is 30 s
HANDSHAKE_TIMEOUT = 10.0  # per peer, from its first Binding request
MAX_CONCURRENT_HANDSHAKES = 32
STUN_RTO = 0.1  # first retransmission of a Binding request, doubling up to STUN_RTO_MAX
STUN_RTO_MAX = 1.6
PEER_UFRAG_LENGTH = 8
# RFC 8445 §5.1.2.1 for a host candidate: type pref 126, local pref 65535, component 1.
PEER_PRIORITY = (126 << 24) + (65535 << 8) + 255
RECV_SIZE = 2048


class HandshakeError(RuntimeError):
    """A peer's ICE or DTLS set-up failed or timed out; the message names the peer."""


def dtls_profile(crypto_suite: str) -> SrtpProfile:
    """The DTLS-SRTP profile of a crypto suite, if relay's DTLS engine can negotiate it."""
    for profile in SRTP_PROFILES:
        if profile.crypto_suite == crypto_suite:
            return profile
    raise ValueError(f"{crypto_suite} cannot be negotiated over DTLS-SRTP here (relay's "
                     f"DTLS offers {', '.join(p.crypto_suite for p in SRTP_PROFILES)})")


class OfferingCertificate(DtlsCertificate):
    """A DTLS certificate whose context offers exactly one SRTP profile (relay's engine
    offers all it supports, and the worker, as DTLS server, would pick its favourite)."""

    def __init__(self, cert: Any, key: Any, crypto_suite: str) -> None:
        super().__init__(cert, key)
        self.profile = dtls_profile(crypto_suite)
        self._restricted: Any = None  # the context already narrowed to self.profile

    @classmethod
    def for_suite(cls, crypto_suite: str) -> OfferingCertificate:
        base = DtlsCertificate.generate()
        return cls(base.cert, base.key, crypto_suite)

    def ssl_context(self) -> Any:
        ctx = super().ssl_context()
        if ctx is not self._restricted:  # once per context (the base class caches it)
            ctx.set_tlsext_use_srtp(self.profile.openssl_name)
            self._restricted = ctx
        return ctx


def _ms_summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


class WebRtcPeer:
    """The client side of one WebRTC transport on `sock` (bound, owned by the caller)."""

    def __init__(self, name: str, sock: socket.socket, certificate: DtlsCertificate,
                 ice_parameters: dict, candidate: dict) -> None:
        self.name = name
        self.sock = sock
        self.remote = (candidate["address"], candidate["port"])
        self.remote_ufrag = ice_parameters["usernameFragment"]
        self.password = ice_parameters["password"].encode()
        self.local_ufrag = random_ice_string(PEER_UFRAG_LENGTH)
        self.tie_breaker = struct.unpack("!Q", os.urandom(8))[0]
        self.dtls = DtlsTransport(certificate, self._send, on_state_change=self._on_dtls)
        self.ice_ms: float | None = None
        self.dtls_ms: float | None = None
        self.consent_checks_sent = 0
        self._stun: dict[bytes, asyncio.Future[stun.Message]] = {}
        self._dtls_event = asyncio.Event()

    @property
    def dtls_parameters(self) -> dict:
        """What `transport.connect(dtls_parameters=...)` takes: we are the DTLS client."""
        return {"role": "client", "fingerprints": self.dtls.dtls_parameters["fingerprints"]}

    @property
    def crypto_suite(self) -> str | None:
        return self.dtls.srtp_crypto_suite

    @property
    def local_srtp_key(self) -> bytes | None:
        """What this peer protects its media with (the worker's inbound key)."""
        return self.dtls.local_srtp_key

    @property
    def remote_srtp_key(self) -> bytes | None:
        """What the worker protects the media it sends this peer with."""
        return self.dtls.remote_srtp_key

    # -- STUN ---------------------------------------------------------------------------

    def binding_request(self, transaction_id: bytes, *, use_candidate: bool) -> bytes:
        message = stun.Message(message_method=stun.Method.BINDING,
                               message_class=stun.Class.REQUEST,
                               transaction_id=transaction_id)
        message.attributes["USERNAME"] = f"{self.remote_ufrag}:{self.local_ufrag}"
        message.attributes["PRIORITY"] = PEER_PRIORITY
        message.attributes["ICE-CONTROLLING"] = self.tie_breaker
        if use_candidate:
            message.attributes["USE-CANDIDATE"] = None
        message.add_message_integrity(self.password)  # and FINGERPRINT
        return bytes(message)

    def send_consent_check(self) -> None:
        """One consent-freshness check (RFC 7675); its answer goes to the C sinks."""
        self._send(self.binding_request(os.urandom(12), use_candidate=False))
        self.consent_checks_sent += 1

    async def _ice_check(self) -> None:
        tid = os.urandom(12)
        request = self.binding_request(tid, use_candidate=True)
        future: asyncio.Future[stun.Message] = asyncio.get_running_loop().create_future()
        self._stun[tid] = future
        rto = STUN_RTO
        try:
            while True:
                self._send(request)
                try:
                    response = await asyncio.wait_for(asyncio.shield(future), rto)
                    break
                except TimeoutError:
                    rto = min(rto * 2, STUN_RTO_MAX)
        finally:
            self._stun.pop(tid, None)
        if response.message_class != stun.Class.RESPONSE:
            code = response.attributes.get("ERROR-CODE")
            raise HandshakeError(f"{self.name}: ICE check answered with an error {code}")
        if not response.check_message_integrity(self.password):
            raise HandshakeError(f"{self.name}: ICE response failed MESSAGE-INTEGRITY")

    # -- DTLS ---------------------------------------------------------------------------

    async def _dtls_handshake(self, relay_dtls_parameters: dict) -> None:
        self.dtls.connect({"role": "server",
                           "fingerprints": relay_dtls_parameters["fingerprints"]})
        while self.dtls.state == "connecting":
            self._dtls_event.clear()
            timeout = self.dtls.get_timeout()
            try:
                await asyncio.wait_for(self._dtls_event.wait(), timeout)
            except TimeoutError:
                self.dtls.handle_timeout()  # OpenSSL's retransmission timer
        if self.dtls.state != "connected":
            raise HandshakeError(f"{self.name}: DTLS {self.dtls.state}: "
                                 f"{self.dtls.failure_reason or 'closed by the worker'}")

    def _on_dtls(self, state: str) -> None:
        self._dtls_event.set()

    # -- I/O ----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self.sock.sendto(data, self.remote)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable: the check retransmits
                return
            if not data:
                continue
            first = data[0]
            if first < 4:
                try:
                    message = stun.parse_message(data)
                except ValueError:
                    continue
                future = self._stun.get(message.transaction_id)
                if future is not None and not future.done():
                    future.set_result(message)
            elif 20 <= first < 64:
                self.dtls.feed(data)
                self._dtls_event.set()
            # RTP/RTCP before the C core takes over: nothing is being measured yet

    async def handshake(self, relay_dtls_parameters: dict,
                        timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """ICE then DTLS, within `timeout` seconds; HandshakeError otherwise."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._on_readable)
        stage = "ICE"
        try:
            async with asyncio.timeout(timeout):
                started = time.perf_counter()
                await self._ice_check()
                ice_done = time.perf_counter()
                self.ice_ms = (ice_done - started) * 1000
                stage = "DTLS"
                await self._dtls_handshake(relay_dtls_parameters)
                self.dtls_ms = (time.perf_counter() - ice_done) * 1000
        except TimeoutError:
            raise HandshakeError(f"{self.name}: {stage} did not complete within {timeout:g} s "
                                 f"(worker at {self.remote[0]}:{self.remote[1]})") from None
        finally:
            loop.remove_reader(self.sock.fileno())


async def connect_peers(jobs: list[tuple[WebRtcPeer, dict]], *,
                        timeout: float = HANDSHAKE_TIMEOUT,
                        concurrency: int = MAX_CONCURRENT_HANDSHAKES) -> dict[str, Any]:
    """Every (peer, relay's dtls_parameters) handshake, concurrently; returns the summary
    for the report, or raises HandshakeError naming the first peer that failed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(peer: WebRtcPeer, parameters: dict) -> None:
        async with gate:
            await peer.handshake(parameters, timeout)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(p, d) for p, d in jobs), return_exceptions=True)
    wall = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        detail = str(first) if isinstance(first, HandshakeError) else \
            f"{type(first).__name__}: {first}"
        raise HandshakeError(f"{len(failures)} of {len(jobs)} WebRTC peer handshake(s) "
                             f"failed; first: {detail}")
    peers = [p for p, _ in jobs]
    suites = sorted({p.crypto_suite for p in peers if p.crypto_suite})
    return {
        "peers": len(peers),
        "cryptoSuite": suites[0] if len(suites) == 1 else suites,
        "setupMs": _ms_summary([p.ice_ms + p.dtls_ms for p in peers
                                if p.ice_ms is not None and p.dtls_ms is not None]),
        "iceMs": _ms_summary([p.ice_ms for p in peers if p.ice_ms is not None]),
        "dtlsMs": _ms_summary([p.dtls_ms for p in peers if p.dtls_ms is not None]),
        "wallSeconds": round(wall, 3),
        "concurrency": min(concurrency, len(jobs)),
    }


class ConsentKeeper:
    """Sends a consent check from every peer each `interval` seconds, on the event loop (the
    load steps yield to it every few tens of milliseconds)."""

    def __init__(self, peers: list[WebRtcPeer], interval: float = CONSENT_INTERVAL,
                 on_round: Callable[[int], None] | None = None) -> None:
        self.peers = peers
        self.interval = interval
        self.on_round = on_round
        self.rounds = 0
        self.send_errors = 0
        self._task: asyncio.Task | None = None

    @property
    def checks_sent(self) -> int:
        return sum(p.consent_checks_sent for p in self.peers)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            # On a fixed schedule: a step yields to the loop only every few tens of ms, and
            # that lag must not add up round after round.
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + self.interval, loop.time())
            for peer in self.peers:
                try:
                    peer.send_consent_check()
                except OSError:  # a full send buffer at a peak rate: the next round retries
                    self.send_errors += 1
            self.rounds += 1
            if self.on_round is not None:
                self.on_round(self.rounds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
