"""relay.transport.srtp_session against pylibsrtp's own Session as the peer."""

from __future__ import annotations

import base64

import pytest
from pylibsrtp import Policy, Session

from relay.rtp.packet import build_pli, build_rtp
from relay.transport.srtp_session import (
    CRYPTO_SUITES,
    SrtpError,
    SrtpSession,
    buffer_pointer,
    decode_key,
    encode_key,
    generate_key,
)

KEY_LENGTHS = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30,
               "AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44}


@pytest.mark.parametrize("suite", list(CRYPTO_SUITES))
def test_keys(suite):
    key = generate_key(suite)
    assert len(key) == KEY_LENGTHS[suite]
    assert decode_key(encode_key(key), suite) == key
    assert encode_key(key) == base64.b64encode(key).decode()
    with pytest.raises(SrtpError):
        decode_key(encode_key(key[:-1]), suite)
    with pytest.raises(SrtpError):
        decode_key("!!not base64!!", suite)
    with pytest.raises(SrtpError):
        decode_key(None, suite)


def test_unknown_suite():
    with pytest.raises(SrtpError, match="AEAD_AES_256_GCM"):
        generate_key("NULL")
    with pytest.raises(SrtpError):
        SrtpSession("NULL", b"x" * 30, outbound=True)
    with pytest.raises(SrtpError):
        SrtpSession("AEAD_AES_128_GCM", b"x" * 30, outbound=True)


@pytest.mark.parametrize("suite", list(CRYPTO_SUITES))
def test_round_trip_with_pylibsrtp(suite):
    key = generate_key(suite)
    profile = CRYPTO_SUITES[suite][0]
    ours_out = SrtpSession(suite, key, outbound=True)
    theirs_in = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    packet = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"z" * 100)
    protected = bytes(ours_out.protect_rtp(packet, len(packet)))
    assert protected != packet
    assert theirs_in.unprotect(protected) == packet
    pli = build_pli(1, 3)
    assert theirs_in.unprotect_rtcp(bytes(ours_out.protect_rtcp(pli, len(pli)))) == pli

    theirs_out = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    ours_in = SrtpSession(suite, key, outbound=False)
    buf = bytearray(2048)
    ptr = buffer_pointer(buf)
    wire = theirs_out.protect(packet)
    buf[: len(wire)] = wire
    n = ours_in.unprotect_rtp(ptr, len(wire))
    assert bytes(buf[:n]) == packet
    # a replay and a tampered packet fail, counted, not raised
    buf[: len(wire)] = wire
    assert ours_in.unprotect_rtp(ptr, len(wire)) == -1
    tampered = bytearray(theirs_out.protect(build_rtp(payload_type=96, sequence_number=2,
                                                      timestamp=2, ssrc=3, payload=b"z" * 100)))
    tampered[20] ^= 1
    buf[: len(tampered)] = tampered
    assert ours_in.unprotect_rtp(ptr, len(tampered)) == -1
    buf[:5] = b"\x80\x60\x00\x01\x00"
    assert ours_in.unprotect_rtp(ptr, 5) == -1  # too short to be SRTP
    rtcp = theirs_out.protect_rtcp(pli)
    buf[: len(rtcp)] = rtcp
    n = ours_in.unprotect_rtcp(ptr, len(rtcp))
    assert bytes(buf[:n]) == pli
    assert ours_in.unprotect_rtcp(ptr, 3) == -1
    assert sum(ours_in.failures.values()) == 4
    assert ours_in.stats()["packets"] == 2
    assert ours_out.protect_rtp(b"\x80" * 2040, 2040) is None  # too long: counted
    assert ours_out.failures["too long"] == 1
