"""Interop: aiortc's RTCIceTransport + RTCDtlsTransport (an independent ICE, DTLS and SRTP
implementation) against our ICE-lite agent and DTLS transport on a loopback UDP socket.

Media goes both ways through aiortc's public RTP API: an RTCRtpSender's SRTP packets must
open with a pylibsrtp session built from our `remote_srtp_key`, and PCMU packets we
protect with our `local_srtp_key` must come out of an RTCRtpReceiver as decoded audio
frames. That proves the key export and its split by role for each SRTP crypto suite.

How the test drives aiortc (see also test_ice_lite_aioice.py for the loopback part):
- gathering is made to use 127.0.0.1 by replacing `aioice.ice.get_host_addresses`;
- a bare RTCIceGatherer starts ICE-controlled; against our ICE-lite agent it receives our
  487 Role Conflict and switches to controlling by itself (RFC 8445 §7.3.1.1);
- to make aiortc the DTLS client we call its private `_set_role("client")` (an
  RTCPeerConnection does the same from the SDP), and to force one SRTP suite we narrow its
  private `_srtp_profiles`; a bare RTCRtpReceiver needs the `_track` RTCPeerConnection
  would give it: aiortc has no public knob for any of these.
"""

import asyncio
import fractions

import aioice.ice
import pylibsrtp
import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc import rtcdtlstransport as aiortc_dtls
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket
from lite_udp_endpoint import LiteUdpEndpoint

from relay.rtp.packet import is_rtcp
from relay.transport.dtls import DtlsCertificate
from relay.transport.ice_lite import host_candidate

SUITES = {
    "AEAD_AES_256_GCM": (aiortc_dtls.SRTP_AEAD_AES_256_GCM,
                         pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM),
    "AEAD_AES_128_GCM": (aiortc_dtls.SRTP_AEAD_AES_128_GCM,
                         pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
    "AES_CM_128_HMAC_SHA1_80": (aiortc_dtls.SRTP_AES128_CM_SHA1_80,
                                pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
}
PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
OUR_SSRC = 0x5EC0DE01


@pytest.fixture(autouse=True)
def loopback_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


async def connect(endpoint: LiteUdpEndpoint, aiortc_role: str, suite: str):
    gatherer = RTCIceGatherer(iceServers=[])  # no STUN server: nothing leaves loopback
    await gatherer.gather()
    ice = RTCIceTransport(gatherer)
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    dtls._srtp_profiles = [SUITES[suite][0]]
    if aiortc_role == "client":
        dtls._set_role("client")

    address, port = endpoint.address
    c = host_candidate(address, port, "udp")
    await ice.addRemoteCandidate(RTCIceCandidate(
        component=1, foundation=c["foundation"], ip=c["address"], port=c["port"],
        priority=c["priority"], protocol=c["protocol"], type=c["type"]))
    await ice.addRemoteCandidate(None)

    # What the signalling would carry: aiortc's fingerprints (role "auto", like a browser's
    # offer) to our connect(); our parameters to aiortc.
    our_role = endpoint.connect({
        "role": "client" if aiortc_role == "client" else "auto",
        "fingerprints": [{"algorithm": f.algorithm, "value": f.value}
                         for f in dtls.getLocalParameters().fingerprints],
    })
    ice_params = endpoint.ice.ice_parameters
    await asyncio.wait_for(ice.start(RTCIceParameters(
        usernameFragment=ice_params["usernameFragment"], password=ice_params["password"],
        iceLite=ice_params["iceLite"])), 10)
    ours = endpoint.dtls.dtls_parameters
    await asyncio.wait_for(dtls.start(RTCDtlsParameters(
        fingerprints=[RTCDtlsFingerprint(**f) for f in ours["fingerprints"]],
        role=ours["role"])), 10)
    await endpoint.wait_for(lambda: endpoint.dtls.state not in ("new", "connecting"))
    return ice, dtls, our_role


def pcmu_packet(seq: int) -> bytes:
    return RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160,
                     ssrc=OUR_SSRC, payload=b"\xff" * 160).serialize()


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("aiortc_role", ["server", "client"])
def test_aiortc_handshake_and_srtp_both_ways(certificate, aiortc_role: str, suite: str) -> None:
    async def run() -> None:
        endpoint = await LiteUdpEndpoint.open(certificate)
        ice = dtls = sender = receiver = None
        try:
            ice, dtls, our_role = await connect(endpoint, aiortc_role, suite)
            assert our_role == ("server" if aiortc_role == "client" else "client")
            assert endpoint.ice.state == "completed"
            assert endpoint.ice.stats.role_conflicts >= 1  # aiortc started controlled
            assert dtls.state == "connected"
            assert endpoint.dtls.state == "connected", endpoint.dtls.failure_reason
            assert endpoint.dtls.role == our_role
            assert endpoint.dtls.srtp_crypto_suite == suite
            profile = SUITES[suite][1]

            # aiortc -> us: its SRTP opens with our remote key.
            sender = RTCRtpSender(AudioStreamTrack(), dtls)
            await sender.send(RTCRtpSendParameters(codecs=[PCMU]))
            await asyncio.wait_for(endpoint.media_event.wait(), 5)
            inbound = pylibsrtp.Session(pylibsrtp.Policy(
                key=endpoint.dtls.remote_srtp_key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
            first = next(p for p in endpoint.media if not is_rtcp(p[1]))
            packet = RtpPacket.parse(inbound.unprotect(first))
            assert packet.ssrc == sender._ssrc and packet.payload_type == 0
            assert len(packet.payload) == 160

            # us -> aiortc: PCMU we protect with our local key decodes on its receiver.
            receiver = RTCRtpReceiver("audio", dtls)
            receiver._track = RemoteStreamTrack(kind="audio")  # as RTCPeerConnection does
            await receiver.receive(RTCRtpReceiveParameters(
                codecs=[PCMU], encodings=[RTCRtpDecodingParameters(ssrc=OUR_SSRC, payloadType=0)]))
            outbound = pylibsrtp.Session(pylibsrtp.Policy(
                key=endpoint.dtls.local_srtp_key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
            selected = endpoint.ice.selected_tuple
            for seq in range(1, 41):
                endpoint.transport.sendto(outbound.protect(pcmu_packet(seq)), selected[:2])
            frame = await asyncio.wait_for(receiver.track.recv(), 5)
            assert frame.sample_rate == 8000
            assert frame.time_base == fractions.Fraction(1, 8000)
        finally:
            if sender is not None:
                await sender.stop()
            if receiver is not None:
                await receiver.stop()
            if dtls is not None:
                await dtls.stop()
            if ice is not None:
                await ice.stop()
            endpoint.close()

    asyncio.run(run())


def test_aiortc_close_notify_and_wrong_fingerprint(certificate) -> None:
    async def run() -> None:
        # 1. aiortc's stop() sends close_notify: our state becomes "closed".
        endpoint = await LiteUdpEndpoint.open(certificate)
        ice, dtls, _ = await connect(endpoint, "server", "AEAD_AES_256_GCM")
        assert endpoint.dtls.state == "connected"
        await dtls.stop()
        await endpoint.wait_for(lambda: endpoint.dtls.state == "closed")
        await ice.stop()
        endpoint.close()

        # 2. We pin a fingerprint that is not aiortc's: failed on both sides, no keys.
        endpoint = await LiteUdpEndpoint.open(certificate)
        gatherer = RTCIceGatherer(iceServers=[])
        await gatherer.gather()
        ice = RTCIceTransport(gatherer)
        dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
        address, port = endpoint.address
        c = host_candidate(address, port, "udp")
        await ice.addRemoteCandidate(RTCIceCandidate(
            component=1, foundation=c["foundation"], ip=address, port=port,
            priority=c["priority"], protocol="udp", type="host"))
        await ice.addRemoteCandidate(None)
        someone_else = RTCCertificate.generateCertificate().getFingerprints()[0]
        endpoint.connect({"role": "auto", "fingerprints": [
            {"algorithm": someone_else.algorithm, "value": someone_else.value}]})
        p = endpoint.ice.ice_parameters
        await ice.start(RTCIceParameters(usernameFragment=p["usernameFragment"],
                                         password=p["password"], iceLite=True))
        ours = endpoint.dtls.dtls_parameters
        await asyncio.wait_for(dtls.start(RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(**f) for f in ours["fingerprints"]])), 10)
        await endpoint.wait_for(lambda: endpoint.dtls.state == "failed")
        assert "fingerprint mismatch" in endpoint.dtls.failure_reason
        assert endpoint.dtls.remote_srtp_key is None
        assert dtls.state == "failed"  # our alert ended aiortc's handshake at once
        await ice.stop()
        endpoint.close()

    asyncio.run(run())
