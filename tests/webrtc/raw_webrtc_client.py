"""A minimal full-ICE (controlling) + DTLS + SRTP client built from relay's own engines and
aioice's STUN messages, over UDP or ICE-TCP (RFC 4571): for what aiortc can't do (aioice
has no ICE-TCP) and for sending exactly the bad packets a test needs.
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

from aioice import stun

from relay.rtp.packet import build_rtp
from relay.transport.dtls import DtlsCertificate, DtlsTransport
from relay.transport.srtp_session import SrtpSession
from relay.transport.tcp_framing import FrameDecoder, encode_frame

CLIENT_UFRAG = "rawc"


def binding_request(ice: dict, *, password: str | None = None, use_candidate: bool = True,
                    transaction_id: bytes | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST,
                           transaction_id=transaction_id or os.urandom(12))
    message.attributes["USERNAME"] = f"{ice['usernameFragment']}:{CLIENT_UFRAG}"
    message.attributes["PRIORITY"] = 0x6E0001FF
    message.attributes["ICE-CONTROLLING"] = struct.unpack("!Q", os.urandom(8))[0]
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity((password or ice["password"]).encode())
    return bytes(message)


class RawWebRtcClient:
    def __init__(self, certificate: DtlsCertificate) -> None:
        self.certificate = certificate
        self.dtls = DtlsTransport(certificate, self._send, on_state_change=self._on_dtls)
        self.stun_responses: list[stun.Message] = []
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.srtp_send: SrtpSession | None = None
        self.srtp_recv: SrtpSession | None = None
        self._event = asyncio.Event()
        self._udp: Any = None
        self._udp_remote: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self.chunk_size: int | None = None  # TCP: write frames in pieces this big

    # -- connection -------------------------------------------------------------------------

    async def open(self, candidate: dict) -> None:
        loop = asyncio.get_running_loop()
        if candidate["protocol"] == "udp":
            client = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    client._on_packet(data)

            self._udp, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0))
            self._udp_remote = (candidate["address"], candidate["port"])
        else:
            reader, self._writer = await asyncio.open_connection(candidate["address"],
                                                                 candidate["port"])
            self._reader_task = asyncio.create_task(self._read_tcp(reader))

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            for frame in decoder.feed(chunk):
                self._on_packet(frame)

    def send_raw(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self._udp_remote)
            return
        assert self._writer is not None
        frame = encode_frame(data)
        step = self.chunk_size or len(frame)
        for i in range(0, len(frame), step):  # partial frames on the wire, on purpose
            self._writer.write(frame[i:i + step])

    _send = send_raw

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    def close(self) -> None:
        self.dtls.close()
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()

    # -- ICE / DTLS ---------------------------------------------------------------------------

    async def ice_check(self, ice: dict, **kwargs: Any) -> stun.Message:
        tid = os.urandom(12)
        self.send_raw(binding_request(ice, transaction_id=tid, **kwargs))
        await self.wait_for(lambda: any(r.transaction_id == tid for r in self.stun_responses))
        return next(r for r in self.stun_responses if r.transaction_id == tid)

    async def dtls_connect(self, relay_dtls_parameters: dict) -> None:
        """We are the DTLS client (relay was told our role is "client")."""
        self.dtls.connect({"role": "server",
                           "fingerprints": relay_dtls_parameters["fingerprints"]})
        await self.wait_for(lambda: self.dtls.state in ("connected", "failed", "closed"))

    @property
    def dtls_parameters(self) -> dict:
        return {"role": "client", "fingerprints": self.dtls.dtls_parameters["fingerprints"]}

    def _on_dtls(self, state: str) -> None:
        if state == "connected":
            suite = self.dtls.srtp_crypto_suite
            self.srtp_send = SrtpSession(suite, self.dtls.local_srtp_key, outbound=True)
            self.srtp_recv = SrtpSession(suite, self.dtls.remote_srtp_key, outbound=False)
        self._event.set()

    # -- media --------------------------------------------------------------------------------

    def send_rtp(self, *, ssrc: int, seq: int, payload_type: int = 0, mid: tuple[int, str] | None = None,
                 payload: bytes = b"\xff" * 160) -> None:
        extensions = {mid[0]: mid[1].encode()} if mid else None
        packet = build_rtp(payload_type=payload_type, sequence_number=seq,
                           timestamp=seq * 160, ssrc=ssrc, payload=payload,
                           extensions=extensions)
        assert self.srtp_send is not None
        protected = self.srtp_send.protect_rtp(packet, len(packet))
        assert protected is not None
        self.send_raw(bytes(protected))

    def send_packet(self, packet: bytes) -> None:
        """SRTP-protect and send a ready-made RTP packet."""
        assert self.srtp_send is not None
        protected = self.srtp_send.protect_rtp(packet, len(packet))
        assert protected is not None
        self.send_raw(bytes(protected))

    def _on_packet(self, data: bytes) -> None:
        first = data[0] if data else 255
        if first < 4:
            try:
                self.stun_responses.append(stun.parse_message(data))
            except ValueError:
                pass
        elif 20 <= first < 64:
            self.dtls.feed(data)
        elif 128 <= first < 192 and self.srtp_recv is not None:
            buf = bytearray(data)
            from relay.transport.srtp_session import buffer_pointer

            rtcp = 192 <= data[1] <= 223
            n = (self.srtp_recv.unprotect_rtcp if rtcp else self.srtp_recv.unprotect_rtp)(
                buffer_pointer(buf), len(buf))
            if n > 0:
                (self.rtcp if rtcp else self.rtp).append(bytes(buf[:n]))
        self._event.set()

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async def waiter() -> None:
            while not predicate():
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(waiter(), timeout)
