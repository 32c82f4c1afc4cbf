"""SRTP/SRTCP for one direction of a transport, with SDES-style keys (pylibsrtp's libsrtp).

The packet path calls libsrtp directly on preallocated buffers (`ffi.from_buffer` pointers
made once) instead of `pylibsrtp.Session.protect()`, which copies in and out of its own
buffer and builds a `bytes` per packet. Failures (authentication, replay, a packet too long)
are counted per reason and returned as -1, never raised into the packet path.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections import Counter

from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

from relay.uring import fanout_core

# name -> (libsrtp profile, master key + salt length)
CRYPTO_SUITES: dict[str, tuple[int, int]] = {
    "AEAD_AES_256_GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32 + 12),
    "AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    "AES_CM_128_HMAC_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
    "AES_CM_128_HMAC_SHA1_32": (Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16 + 14),
}
DEFAULT_CRYPTO_SUITE = "AES_CM_128_HMAC_SHA1_80"
# Room libsrtp may append: auth tag (16) + SRTCP index (4); no MKI is used.
MAX_TRAILER = 16 + 4
BUFFER_SIZE = 2048


class SrtpError(ValueError):
    """Bad crypto suite or key (control path only)."""


def key_length(crypto_suite: str) -> int:
    try:
        return CRYPTO_SUITES[crypto_suite][1]
    except KeyError:
        raise SrtpError(
            f"unsupported SRTP crypto suite {crypto_suite!r} (supported: {', '.join(CRYPTO_SUITES)})"
        ) from None


def generate_key(crypto_suite: str) -> bytes:
    """A fresh random master key + salt for `crypto_suite`."""
    return os.urandom(key_length(crypto_suite))


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(key_base64: str, crypto_suite: str) -> bytes:
    """Decode a keyBase64 and check its length against the suite."""
    if not isinstance(key_base64, str):
        raise SrtpError("keyBase64 must be a string")
    try:
        key = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError):
        raise SrtpError("keyBase64 is not valid base64") from None
    expected = key_length(crypto_suite)
    if len(key) != expected:
        raise SrtpError(f"{crypto_suite} needs a {expected}-byte key+salt, got {len(key)}")
    return key


def buffer_pointer(buf: bytearray):  # -> cffi "char *"
    """A libsrtp-usable pointer to `buf` (keep `buf` alive and never resize it)."""
    return ffi.from_buffer("char[]", buf)


class SrtpSession:
    """Protects (outbound) or unprotects (inbound) RTP and RTCP with one master key."""

    def __init__(self, crypto_suite: str, key: bytes, *, outbound: bool) -> None:
        profile, expected = CRYPTO_SUITES.get(crypto_suite, (None, 0))
        if profile is None:
            key_length(crypto_suite)  # raises with the list of suites
        if len(key) != expected:
            raise SrtpError(f"{crypto_suite} needs a {expected}-byte key+salt, got {len(key)}")
        policy = Policy(
            key=bytes(key),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile,
        )
        # Retransmissions reuse sequence numbers on the way out; harmless to allow.
        policy.allow_repeat_tx = outbound
        self.crypto_suite = crypto_suite
        self.outbound = outbound
        self._session = Session(policy=policy)
        # pylibsrtp keeps its srtp_t in `_srtp` (a cffi "srtp_t *"); we need it to call libsrtp
        # on our own buffers.
        self._srtp = self._session._srtp[0]
        self._len = ffi.new("int *")
        self._out = bytearray(BUFFER_SIZE)
        self._out_ptr = buffer_pointer(self._out)
        self._out_view = memoryview(self._out)
        self.failures: Counter[str] = Counter()
        self.packets = 0
        # The C fan-out core protects with this session's srtp_t through `core` (which counts
        # there), and the receive core unprotects with `core.ctx`; this object keeps the
        # session alive while either points at it.
        self.core = fanout_core.new_srtp(self._srtp)

    # -- in place, on a caller's buffer (inbound) --------------------------------------------

    def unprotect_rtp(self, ptr, length: int) -> int:
        """Unprotect the SRTP packet at `ptr` in place; new length, or -1 (counted)."""
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_unprotect(self._srtp, ptr, len_p)
        if rc:
            self.failures[_reason(rc)] += 1
            return -1
        self.packets += 1
        return len_p[0]

    def unprotect_rtcp(self, ptr, length: int) -> int:
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_unprotect_rtcp(self._srtp, ptr, len_p)
        if rc:
            self.failures["rtcp " + _reason(rc)] += 1
            return -1
        self.packets += 1
        return len_p[0]

    # -- into this session's own buffer (outbound) -------------------------------------------

    def protect_rtp(self, src: bytearray | memoryview | bytes, length: int) -> memoryview | None:
        """Copy `src[:length]` into the session buffer and protect it; a view of the result
        (valid until the next call), or None (counted). Pass a memoryview on the hot path:
        slicing it copies nothing."""
        if length > BUFFER_SIZE - MAX_TRAILER:
            self.failures["too long"] += 1
            return None
        self._out[:length] = src[:length]
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_protect(self._srtp, self._out_ptr, len_p)
        if rc:
            self.failures[_reason(rc)] += 1
            return None
        self.packets += 1
        return self._out_view[: len_p[0]]

    def protect_rtcp(self, src: bytearray | memoryview | bytes, length: int) -> memoryview | None:
        if length > BUFFER_SIZE - MAX_TRAILER:
            self.failures["rtcp too long"] += 1
            return None
        self._out[:length] = src[:length]
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_protect_rtcp(self._srtp, self._out_ptr, len_p)
        if rc:
            self.failures["rtcp " + _reason(rc)] += 1
            return None
        self.packets += 1
        return self._out_view[: len_p[0]]

    def stats(self) -> dict:
        failures = dict(self.failures)
        if self.core.failures:
            reason = "fan-out core: " + _reason(self.core.last_error)
            failures[reason] = failures.get(reason, 0) + self.core.failures
        return {"cryptoSuite": self.crypto_suite, "packets": self.packets + self.core.packets,
                "failures": failures}


_REASONS = {
    2: "bad parameter",
    7: "authentication failure",
    9: "replay (bad index)",
    10: "replay (too old)",
}


def failure_reason(rc: int) -> str:
    """The name of libsrtp error `rc`, as the failure counters use it."""
    return _reason(rc)


def _reason(rc: int) -> str:
    return _REASONS.get(rc, f"libsrtp error {rc}")
