import asyncio
import hashlib
import random
import time

import pylibsrtp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from relay.transport import dtls as dtls_module
from relay.transport.dtls import DtlsCertificate, DtlsTransport, worker_certificate

PROFILES = {
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
}
RTP = bytes.fromhex("8060000100000001deadbeef") + b"payload" * 10


@pytest.fixture(scope="module")
def certs() -> tuple[DtlsCertificate, DtlsCertificate]:
    return DtlsCertificate.generate(), DtlsCertificate.generate()


def params(transport: DtlsTransport, role: str) -> dict:
    return dict(transport.dtls_parameters, role=role)


def srtp_roundtrip(sender: DtlsTransport, receiver: DtlsTransport) -> None:
    """What `sender` protects with its local key, `receiver` opens with its remote key."""
    profile = PROFILES[sender.srtp_crypto_suite]
    tx = pylibsrtp.Session(pylibsrtp.Policy(
        key=sender.local_srtp_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=profile))
    rx = pylibsrtp.Session(pylibsrtp.Policy(
        key=receiver.remote_srtp_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=profile))
    assert rx.unprotect(tx.protect(RTP)) == RTP


class MemoryPair:
    """Two transports whose outputs are queued for delivery by the test (sans I/O)."""

    def __init__(self, certs, **kwargs) -> None:
        self.to_a: list[bytes] = []
        self.to_b: list[bytes] = []
        self.a = DtlsTransport(certs[0], self.to_b.append, **kwargs)
        self.b = DtlsTransport(certs[1], self.to_a.append, **kwargs)

    def pump(self) -> None:
        for _ in range(20):
            if not self.to_a and not self.to_b:
                return
            while self.to_a:
                self.a.feed(self.to_a.pop(0))
            while self.to_b:
                self.b.feed(self.to_b.pop(0))


# -- parameters and certificate ---------------------------------------------------------


def test_local_parameters_and_fingerprints(certs) -> None:
    transport = DtlsTransport(certs[0], lambda d: None)
    p = transport.dtls_parameters
    assert p["role"] == "auto"
    assert [f["algorithm"] for f in p["fingerprints"]] == ["sha-256", "sha-384", "sha-512"]
    der = certs[0].cert.public_bytes(serialization.Encoding.DER)
    for f in p["fingerprints"]:
        digest = hashlib.new(f["algorithm"].replace("-", ""), der).hexdigest().upper()
        assert f["value"] == ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    assert isinstance(certs[0].key, ec.EllipticCurvePrivateKey)
    assert certs[0].key.curve.name == "secp256r1"


@pytest.mark.parametrize("remote,local", [
    ("client", "server"), ("server", "client"), ("auto", "client"), (None, "client"),
])
def test_role_resolution_as_mediasoup(certs, remote, local) -> None:
    transport = DtlsTransport(certs[0], lambda d: None)
    p = dict(DtlsTransport(certs[1], lambda d: None).dtls_parameters)
    if remote is None:
        del p["role"]
    else:
        p["role"] = remote
    assert transport.set_remote_parameters(p) == local
    assert transport.role == local == transport.dtls_parameters["role"]


def test_invalid_remote_parameters(certs) -> None:
    transport = DtlsTransport(certs[0], lambda d: None)
    fingerprint = {"algorithm": "sha-256", "value": "AB"}
    with pytest.raises(ValueError):
        transport.set_remote_parameters({"role": "boss", "fingerprints": [fingerprint]})
    with pytest.raises(TypeError):
        transport.set_remote_parameters({"role": "auto", "fingerprints": []})
    with pytest.raises(TypeError):
        transport.set_remote_parameters({"role": "auto", "fingerprints": [{"algorithm": 1}]})
    with pytest.raises(ValueError):
        transport.set_remote_parameters(
            {"fingerprints": [{"algorithm": "md5", "value": "AB"}]})
    with pytest.raises(RuntimeError):
        transport.start()
    assert transport.state == "new"


def test_worker_certificate_once_and_from_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(dtls_module, "_worker_certificate", None)
    first = worker_certificate()
    assert worker_certificate() is first
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_text(first.cert_pem)
    key_file.write_bytes(first.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    loaded = DtlsCertificate.from_files(str(cert_file), str(key_file))
    assert loaded.fingerprints == first.fingerprints
    monkeypatch.setattr(dtls_module, "_worker_certificate", None)
    assert worker_certificate(str(cert_file), str(key_file)).fingerprints == first.fingerprints
    with pytest.raises(ValueError):
        worker_certificate(str(cert_file), None)


# -- handshake in memory ------------------------------------------------------------------


def test_memory_handshake_keys_and_certificates(certs) -> None:
    pair = MemoryPair(certs)
    states: list[str] = []
    pair.a.on_state_change = states.append
    assert pair.a.set_remote_parameters(params(pair.b, "server")) == "client"
    assert pair.b.set_remote_parameters(params(pair.a, "client")) == "server"
    pair.b.start()
    pair.a.start()
    pair.pump()
    assert (pair.a.state, pair.b.state) == ("connected", "connected")
    assert states == ["connecting", "connected"]
    assert pair.a.srtp_crypto_suite == pair.b.srtp_crypto_suite == "AEAD_AES_256_GCM"
    assert len(pair.a.local_srtp_key) == 32 + 12
    assert pair.a.local_srtp_key == pair.b.remote_srtp_key
    assert pair.a.remote_srtp_key == pair.b.local_srtp_key
    assert pair.a.local_srtp_key != pair.a.remote_srtp_key
    assert x509.load_pem_x509_certificate(pair.a.remote_cert.encode()) == certs[1].cert
    assert pair.b.remote_cert == certs[0].cert_pem
    srtp_roundtrip(pair.a, pair.b)
    srtp_roundtrip(pair.b, pair.a)


def test_datagrams_before_start_are_kept(certs) -> None:
    pair = MemoryPair(certs)
    pair.a.connect(params(pair.b, "server"))  # client: ClientHello goes out now
    pair.b.set_remote_parameters(params(pair.a, "client"))
    pair.b.feed(pair.to_b.pop(0))  # arrives before the server is started
    assert pair.b.state == "new"
    pair.b.start()
    pair.pump()
    assert (pair.a.state, pair.b.state) == ("connected", "connected")


def test_retransmission_after_a_lost_flight(certs) -> None:
    pair = MemoryPair(certs)
    pair.b.connect(params(pair.a, "client"))
    pair.a.connect(params(pair.b, "server"))
    assert pair.to_b, "ClientHello sent"
    pair.to_b.clear()  # lost
    timeout = pair.a.get_timeout()
    assert timeout is not None and 0 < timeout <= 1.0  # OpenSSL's initial DTLS timer
    time.sleep(timeout + 0.01)  # OpenSSL's timer runs on the real clock
    pair.a.handle_timeout()
    assert pair.a.stats.retransmission_timeouts == 1
    assert pair.to_b, "ClientHello retransmitted"
    pair.pump()
    assert (pair.a.state, pair.b.state) == ("connected", "connected")
    assert pair.a.get_timeout() is None


def test_handshake_gives_up_after_its_timeout(certs) -> None:
    now = [100.0]
    sent: list[bytes] = []
    client = DtlsTransport(certs[0], sent.append, clock=lambda: now[0], handshake_timeout=60.0)
    client.connect(params(DtlsTransport(certs[1], lambda d: None), "server"))
    assert client.state == "connecting" and sent
    now[0] += 60.0
    assert client.get_timeout() == 0.0
    client.handle_timeout()
    assert client.state == "failed" and client.failure_reason == "handshake timed out"
    assert client.local_srtp_key is None


@pytest.mark.parametrize("pinned_wrong_by", ["server", "client"])
def test_fingerprint_mismatch_fails_without_keys(certs, pinned_wrong_by) -> None:
    pair = MemoryPair(certs)
    stranger = DtlsTransport(DtlsCertificate.generate(), lambda d: None)
    client_sees = stranger if pinned_wrong_by == "client" else pair.b
    server_sees = stranger if pinned_wrong_by == "server" else pair.a
    pair.a.set_remote_parameters(params(client_sees, "server"))
    pair.b.set_remote_parameters(params(server_sees, "client"))
    pair.b.start()
    pair.a.start()
    pair.pump()
    wrong = pair.b if pinned_wrong_by == "server" else pair.a
    assert wrong.state == "failed"
    assert "fingerprint mismatch" in wrong.failure_reason
    # the other side gets the alert and fails too; nobody has keys
    assert (pair.a.state, pair.b.state) == ("failed", "failed")
    for t in (pair.a, pair.b):
        assert t.local_srtp_key is None and t.remote_srtp_key is None
        assert t.srtp_crypto_suite is None


def test_garbage_is_dropped_and_harms_nothing(certs) -> None:
    rng = random.Random(5764)
    pair = MemoryPair(certs)
    pair.a.set_remote_parameters(params(pair.b, "server"))
    pair.b.set_remote_parameters(params(pair.a, "client"))
    pair.b.start()
    pair.a.start()
    for _ in range(50):  # DTLS-looking garbage in the middle of the handshake
        pair.b.feed(bytes([rng.randint(20, 63)]) + rng.randbytes(rng.randint(0, 80)))
    pair.pump()
    assert (pair.a.state, pair.b.state) == ("connected", "connected")
    for _ in range(200):
        pair.a.feed(bytes([rng.randint(20, 63)]) + rng.randbytes(rng.randint(0, 80)))
        pair.a.feed(b"\x17\xfe\xfd" + rng.randbytes(rng.randint(0, 100)))
    assert pair.a.state == "connected"
    pair.pump()
    srtp_roundtrip(pair.a, pair.b)


def test_close_sends_close_notify(certs) -> None:
    pair = MemoryPair(certs)
    pair.a.connect(params(pair.b, "server"))
    pair.b.connect(params(pair.a, "client"))
    pair.pump()
    pair.b.close()
    assert pair.b.state == "closed" and pair.to_a
    pair.pump()
    assert pair.a.state == "closed"
    pair.a.feed(b"\x16\xfe\xfd")
    assert pair.a.stats.dropped == 1


# -- over real UDP sockets ---------------------------------------------------------------


class UdpDtlsPeer(asyncio.DatagramProtocol):
    """DtlsTransport on a loopback UDP socket, talking to one fixed peer address."""

    def __init__(self, certificate: DtlsCertificate) -> None:
        self.dtls = DtlsTransport(certificate, self._send, on_state_change=self._changed)
        self.peer: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.settled = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if addr == self.peer:
            self.dtls.feed(data)
            self._arm()

    def start(self, remote: dict) -> None:
        self.dtls.connect(remote)
        self._arm()

    def _send(self, datagram: bytes) -> None:
        self.transport.sendto(datagram, self.peer)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        timeout = self.dtls.get_timeout()
        self._timer = None if timeout is None else \
            asyncio.get_running_loop().call_later(timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self.dtls.handle_timeout()
        self._arm()

    def _changed(self, state: str) -> None:
        if state in ("connected", "failed", "closed"):
            self.settled.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport.close()


async def udp_pair(certs) -> tuple[UdpDtlsPeer, UdpDtlsPeer]:
    loop = asyncio.get_running_loop()
    peers = []
    for cert in certs:
        _, peer = await loop.create_datagram_endpoint(
            lambda cert=cert: UdpDtlsPeer(cert), local_addr=("127.0.0.1", 0))
        peers.append(peer)
    a, b = peers
    a.peer = b.transport.get_extra_info("sockname")
    b.peer = a.transport.get_extra_info("sockname")
    return a, b


@pytest.mark.parametrize("a_role", ["client", "server"])
def test_udp_handshake_both_roles(certs, a_role: str) -> None:
    async def run() -> None:
        a, b = await udp_pair(certs)
        try:
            b_role = "server" if a_role == "client" else "client"
            b.start(params(a.dtls, a_role))
            a.start(params(b.dtls, b_role))
            await asyncio.wait_for(asyncio.gather(a.settled.wait(), b.settled.wait()), 10)
            assert (a.dtls.role, b.dtls.role) == (a_role, b_role)
            assert (a.dtls.state, b.dtls.state) == ("connected", "connected")
            srtp_roundtrip(a.dtls, b.dtls)
            srtp_roundtrip(b.dtls, a.dtls)
            b.settled.clear()
            a.dtls.close()
            await asyncio.wait_for(b.settled.wait(), 10)
            assert b.dtls.state == "closed"
        finally:
            a.close()
            b.close()

    asyncio.run(run())


def test_udp_fingerprint_mismatch(certs) -> None:
    async def run() -> None:
        a, b = await udp_pair(certs)
        try:
            stranger = DtlsTransport(DtlsCertificate.generate(), lambda d: None)
            b.start(params(stranger, "client"))  # b (server) pins someone else
            a.start(params(b.dtls, "server"))
            await asyncio.wait_for(asyncio.gather(a.settled.wait(), b.settled.wait()), 10)
            assert (a.dtls.state, b.dtls.state) == ("failed", "failed")
            assert "fingerprint mismatch" in b.dtls.failure_reason
            assert b.dtls.remote_srtp_key is None and a.dtls.local_srtp_key is None
        finally:
            a.close()
            b.close()

    asyncio.run(run())
