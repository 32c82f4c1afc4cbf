"""DTLS-SRTP (RFC 5763/5764) for one WebRTC transport, over pyOpenSSL memory BIOs.

Sans-I/O: `feed(datagram)` takes the DTLS datagrams the transport received from its ICE
selected tuple, and every datagram DTLS wants to send goes to the `send` callback given at
construction. Retransmissions: the driver calls `handle_timeout()` when `get_timeout()`
seconds have passed (OpenSSL's own DTLS timers: 1 s doubling, measured on the real clock).

Roles, as mediasoup's WebRtcTransport resolves them in `connect()`:
    remote "client" -> we are "server"
    remote "server" -> we are "client"
    remote "auto"   -> we are "client" (we are ICE-lite, so ICE-controlled; the controlling
                       peer — the browser — then acts as DTLS server, as RFC 5763 §5 lets
                       the answerer choose and mediasoup does)
Our own `dtls_parameters` announce role "auto" until `connect()` resolves it.

Only DTLS 1.2 is negotiated (what browsers and mediasoup speak); it keeps every record
self-delimiting, which we rely on to cut OpenSSL's memory-BIO output into datagrams no
larger than the MTU.

The remote certificate is pinned by fingerprint: every fingerprint given to `connect()`
whose algorithm we support must match (checked in the handshake's verify callback, so a
mismatch aborts the handshake with an alert, and again after it); a mismatch is state
"failed" and no keys are exported.
"""

from __future__ import annotations

import binascii
import datetime
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

logger = logging.getLogger(__name__)

DTLS1_2_VERSION = 0xFEFD  # not exported by pyOpenSSL
DTLS_RECORD_HEADER = 13  # type(1) version(2) epoch(2) sequence(6) length(2)
DEFAULT_MTU = 1200  # leaves room for IP/UDP (and TURN) headers on any real path
HANDSHAKE_TIMEOUT = 60.0
_MAX_EARLY_DATAGRAMS = 8  # datagrams kept while waiting for start()

STATES = ("new", "connecting", "connected", "failed", "closed")
ROLES = ("auto", "client", "server")

FINGERPRINT_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {
    "sha-1": hashes.SHA1(),
    "sha-224": hashes.SHA224(),
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
# What we announce for our own certificate (sha-1/224 are accepted, not offered).
LOCAL_FINGERPRINT_ALGORITHMS = ("sha-256", "sha-384", "sha-512")

_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"
)


@dataclass(frozen=True)
class SrtpProfile:
    crypto_suite: str  # mediasoup's / pylibsrtp-user-facing name
    openssl_name: bytes  # RFC 5764 / RFC 7714 use_srtp profile name
    libsrtp_profile: int  # pylibsrtp.Policy.SRTP_PROFILE_*
    key_length: int
    salt_length: int


# Our order of preference (we send it, and as DTLS server we choose by it).
SRTP_PROFILES_PREFERRED = (
    SrtpProfile("AEAD_AES_256_GCM", b"SRTP_AEAD_AES_256_GCM",
                pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12),
    SrtpProfile("AEAD_AES_128_GCM", b"SRTP_AEAD_AES_128_GCM",
                pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    SrtpProfile("AES_CM_128_HMAC_SHA1_80", b"SRTP_AES128_CM_SHA1_80",
                pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
)


def _available_profiles() -> tuple[SrtpProfile, ...]:
    # Never negotiate a profile the linked libsrtp cannot run (GCM is a build option).
    available = []
    for profile in SRTP_PROFILES_PREFERRED:
        try:
            pylibsrtp.Policy(srtp_profile=profile.libsrtp_profile)
        except pylibsrtp.Error:
            continue
        available.append(profile)
    return tuple(available)


SRTP_PROFILES = _available_profiles()
_PROFILE_BY_OPENSSL_NAME = {p.openssl_name: p for p in SRTP_PROFILES}


def format_fingerprint(digest: bytes) -> str:
    """Uppercase colon-separated hex, as in SDP's a=fingerprint."""
    return ":".join(f"{b:02X}" for b in digest)


def certificate_fingerprint(cert: x509.Certificate, algorithm: str) -> str:
    return format_fingerprint(cert.fingerprint(FINGERPRINT_ALGORITHMS[algorithm]))


class DtlsCertificate:
    """A certificate and its private key, shared by every transport of a worker."""

    def __init__(self, cert: x509.Certificate, key: Any) -> None:
        self.cert = cert
        self.key = key
        self.fingerprints: list[dict[str, str]] = [
            {"algorithm": a, "value": certificate_fingerprint(cert, a)}
            for a in LOCAL_FINGERPRINT_ALGORITHMS
        ]
        self._context: SSL.Context | None = None

    @classmethod
    def generate(cls, valid_days: int = 365) -> DtlsCertificate:
        """A fresh self-signed ECDSA P-256 certificate (the peer pins it by fingerprint)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                binascii.hexlify(os.urandom(8)).decode())]
        )
        now = datetime.datetime.now(tz=datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_files(cls, certificate_file: str, private_key_file: str) -> DtlsCertificate:
        with open(certificate_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(private_key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return cls(cert, key)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def ssl_context(self) -> SSL.Context:
        """One context per certificate: cheap per-transport connections share it."""
        if self._context is None:
            ctx = SSL.Context(SSL.DTLS_METHOD)
            ctx.set_max_proto_version(DTLS1_2_VERSION)
            ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
            # Self-signed peers: OpenSSL's chain check is meaningless, the fingerprint
            # check in _verify_peer is the authentication.
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_peer)
            ctx.use_certificate(self.cert)
            ctx.use_privatekey(self.key)
            ctx.check_privatekey()
            ctx.set_cipher_list(_CIPHERS)
            ctx.set_tlsext_use_srtp(b":".join(p.openssl_name for p in SRTP_PROFILES))
            self._context = ctx
        return self._context


_worker_certificate: DtlsCertificate | None = None


def worker_certificate(
    certificate_file: str | None = None, private_key_file: str | None = None
) -> DtlsCertificate:
    """The worker's certificate: loaded from files or generated on first use, then reused."""
    global _worker_certificate
    if bool(certificate_file) != bool(private_key_file):
        raise ValueError("give both the certificate file and the private key file, or neither")
    if _worker_certificate is None:
        if certificate_file and private_key_file:
            _worker_certificate = DtlsCertificate.from_files(certificate_file, private_key_file)
        else:
            _worker_certificate = DtlsCertificate.generate()
    return _worker_certificate


def _verify_peer(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    if depth != 0:
        return True  # only the peer's own certificate is pinned
    transport = conn.get_app_data()
    try:
        return transport is not None and transport._fingerprint_matches(cert.to_cryptography())
    except Exception:  # an exception here would be re-raised out of do_handshake
        return False


@dataclass
class DtlsStats:
    datagrams_received: int = 0
    datagrams_sent: int = 0
    dropped: int = 0  # arrived while closed/failed, or too many before start()
    errors: int = 0  # records OpenSSL rejected after the handshake
    application_data_dropped: int = 0  # we carry no SCTP
    retransmission_timeouts: int = 0


class DtlsTransport:
    def __init__(
        self,
        certificate: DtlsCertificate,
        send: Callable[[bytes], None],
        *,
        mtu: int = DEFAULT_MTU,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[str], None] | None = None,
    ) -> None:
        self._certificate = certificate
        self._send = send
        self._mtu = mtu
        self._handshake_timeout = handshake_timeout
        self._clock = clock
        self.on_state_change = on_state_change
        self._state = "new"
        self._role = "auto"
        self._remote_fingerprints: list[tuple[str, str]] | None = None
        self._ssl: SSL.Connection | None = None
        self._handshake_done = False
        self._started_at = 0.0
        self._early: list[bytes] = []
        self.failure_reason: str | None = None
        self.srtp_crypto_suite: str | None = None
        self.local_srtp_key: bytes | None = None
        self.remote_srtp_key: bytes | None = None
        self.remote_cert: str | None = None
        self.stats = DtlsStats()

    # -- parameters and state --------------------------------------------------------

    @property
    def dtls_parameters(self) -> dict[str, Any]:
        """Our parameters for the peer: {"role", "fingerprints": [{"algorithm", "value"}]}."""
        return {
            "role": self._role,
            "fingerprints": [dict(f) for f in self._certificate.fingerprints],
        }

    @property
    def state(self) -> str:
        return self._state

    @property
    def role(self) -> str:
        return self._role

    # -- control ---------------------------------------------------------------------

    def set_remote_parameters(self, dtls_parameters: dict[str, Any]) -> str:
        """Validate the peer's parameters, resolve our role and return it."""
        if self._remote_fingerprints is not None:
            raise RuntimeError("remote DTLS parameters already set")
        if not isinstance(dtls_parameters, dict):
            raise TypeError("dtls_parameters must be a dict")
        remote_role = dtls_parameters.get("role", "auto")
        if remote_role not in ROLES:
            raise ValueError(f"invalid dtls_parameters.role {remote_role!r}")
        fingerprints = dtls_parameters.get("fingerprints")
        if not isinstance(fingerprints, list) or not fingerprints:
            raise TypeError("dtls_parameters.fingerprints must be a non-empty list")
        pinned = []
        for f in fingerprints:
            if not isinstance(f, dict) or not isinstance(f.get("algorithm"), str) \
                    or not isinstance(f.get("value"), str):
                raise TypeError("each fingerprint must be {'algorithm': str, 'value': str}")
            algorithm = f["algorithm"].lower()
            if algorithm in FINGERPRINT_ALGORITHMS:
                pinned.append((algorithm, f["value"].upper()))
        if not pinned:
            raise ValueError("no fingerprint with a supported algorithm "
                             f"({', '.join(FINGERPRINT_ALGORITHMS)})")
        self._remote_fingerprints = pinned
        self._role = "server" if remote_role == "client" else "client"
        return self._role

    def start(self) -> None:
        """Begin the handshake (the transport calls this once ICE is connected)."""
        if self._remote_fingerprints is None:
            raise RuntimeError("set_remote_parameters() first")
        if self._state != "new":
            return
        ssl = SSL.Connection(self._certificate.ssl_context(), None)
        ssl.set_app_data(self)
        ssl.set_ciphertext_mtu(self._mtu)
        if self._role == "server":
            ssl.set_accept_state()
        else:
            ssl.set_connect_state()
        self._ssl = ssl
        self._started_at = self._clock()
        self._set_state("connecting")
        self._advance_handshake()
        early, self._early = self._early, []
        for datagram in early:
            self.feed(datagram)

    def connect(self, dtls_parameters: dict[str, Any]) -> str:
        """set_remote_parameters() and start(); returns our role."""
        role = self.set_remote_parameters(dtls_parameters)
        self.start()
        return role

    def close(self) -> None:
        """Send close_notify (if a handshake was under way or done) and stop."""
        if self._state in ("closed",):
            return
        if self._ssl is not None and self._state in ("connecting", "connected"):
            try:
                self._ssl.shutdown()
            except SSL.Error:
                pass
            self._flush()
        self._early.clear()
        self._set_state("closed")

    # -- input and timers ------------------------------------------------------------

    def feed(self, datagram: bytes) -> None:
        """One DTLS datagram from the peer."""
        if self._state == "new":
            if len(self._early) < _MAX_EARLY_DATAGRAMS:
                self._early.append(bytes(datagram))
            else:
                self.stats.dropped += 1
            return
        if self._state in ("failed", "closed") or self._ssl is None:
            self.stats.dropped += 1
            return
        self.stats.datagrams_received += 1
        try:
            self._ssl.bio_write(datagram)
        except SSL.Error:
            self.stats.errors += 1
            return
        if not self._handshake_done:
            self._advance_handshake()
            if self._state != "connected":
                return
        self._read_records()

    def get_timeout(self) -> float | None:
        """Seconds until `handle_timeout()` must run, or None when no timer is active."""
        if self._ssl is None or self._state not in ("connecting", "connected"):
            return None
        timeout = self._ssl.DTLSv1_get_timeout()
        if self._state == "connecting":
            left = max(0.0, self._started_at + self._handshake_timeout - self._clock())
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def handle_timeout(self) -> None:
        if self._ssl is None or self._state not in ("connecting", "connected"):
            return
        if self._state == "connecting" and \
                self._clock() - self._started_at >= self._handshake_timeout:
            self._fail("handshake timed out")
            return
        try:
            if self._ssl.DTLSv1_handle_timeout():
                self.stats.retransmission_timeouts += 1
        except SSL.Error as exc:  # OpenSSL gave up retransmitting
            self._fail(f"retransmissions exhausted: {exc}")
            return
        self._flush()

    # -- internals -------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        assert self._ssl is not None
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._flush()  # the alert telling the peer why
            self._fail(self.failure_reason or f"handshake failed: {exc}")
            return
        self._flush()
        self._handshake_done = True
        self._on_handshake_done()

    def _on_handshake_done(self) -> None:
        assert self._ssl is not None
        peer = self._ssl.get_peer_certificate(as_cryptography=True)
        if peer is None or not self._fingerprint_matches(peer):
            self._fail("remote certificate fingerprint mismatch")
            return
        profile = _PROFILE_BY_OPENSSL_NAME.get(self._ssl.get_selected_srtp_profile())
        if profile is None:
            self._fail("no SRTP profile negotiated")
            return
        k, s = profile.key_length, profile.salt_length
        # RFC 5764 §4.2: client key | server key | client salt | server salt
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (k + s))
        client = material[0:k] + material[2 * k:2 * k + s]
        server = material[k:2 * k] + material[2 * k + s:2 * k + 2 * s]
        if self._role == "client":
            self.local_srtp_key, self.remote_srtp_key = client, server
        else:
            self.local_srtp_key, self.remote_srtp_key = server, client
        self.srtp_crypto_suite = profile.crypto_suite
        self.remote_cert = peer.public_bytes(serialization.Encoding.PEM).decode()
        self._set_state("connected")

    def _read_records(self) -> None:
        """After the handshake: alerts (close_notify), retransmitted flights, app data."""
        assert self._ssl is not None
        while True:
            try:
                data = self._ssl.recv(16384)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                logger.debug("DTLS close_notify from the peer")
                self._flush()
                self._set_state("closed")
                return
            except SSL.Error as exc:
                self.stats.errors += 1
                logger.debug("DTLS record rejected: %s", exc)
                break
            if not data:
                break
            self.stats.application_data_dropped += 1
        self._flush()

    def _fingerprint_matches(self, cert: x509.Certificate) -> bool:
        if not self._remote_fingerprints:
            return False
        for algorithm, value in self._remote_fingerprints:
            if certificate_fingerprint(cert, algorithm) != value:
                self.failure_reason = f"remote certificate {algorithm} fingerprint mismatch"
                return False
        return True

    def _flush(self) -> None:
        """Send what OpenSSL wrote, cut at record boundaries into datagrams ≤ MTU."""
        assert self._ssl is not None
        chunks = []
        while True:
            try:
                chunks.append(self._ssl.bio_read(65536))
            except SSL.Error:  # WantReadError: nothing (more) pending
                break
        if not chunks:
            return
        data = b"".join(chunks)
        datagram_start = offset = 0
        while offset < len(data):
            if len(data) - offset < DTLS_RECORD_HEADER:
                offset = len(data)  # cannot happen with DTLS 1.2; send as is
                break
            size = DTLS_RECORD_HEADER + int.from_bytes(data[offset + 11:offset + 13], "big")
            if offset + size - datagram_start > self._mtu and offset > datagram_start:
                self._emit(data[datagram_start:offset])
                datagram_start = offset
            offset += size
        if datagram_start < len(data):
            self._emit(data[datagram_start:])

    def _emit(self, datagram: bytes) -> None:
        self.stats.datagrams_sent += 1
        self._send(datagram)

    def _fail(self, reason: str) -> None:
        self.failure_reason = reason
        logger.debug("DTLS failed: %s", reason)
        self._set_state("failed")

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        logger.debug("DTLS state %s -> %s", self._state, state)
        self._state = state
        if self.on_state_change is not None:
            self.on_state_change(state)
