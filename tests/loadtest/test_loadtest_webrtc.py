"""relay-loadtest over WebRTC transports: every transport a synthetic peer (ICE + DTLS in
Python, then DTLS-SRTP media from the C core), real workers and sockets on 127.0.0.1. At low
rates every count must add up exactly, and the peers' consent checks must be answered."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from test_loadtest_cli import _env, assert_exact, run_cli

import relay
from relay.loadtest.relay_target import WEBRTC_LISTEN_INFOS
from relay.loadtest.scenario import ROUTER_CODECS, fanout
from relay.loadtest.traffic import Traffic
from relay.loadtest.webrtc_peer import (
    HandshakeError,
    OfferingCertificate,
    WebRtcPeer,
    connect_peers,
)

WEBRTC_FIELDS = {"peers", "cryptoSuite", "offeredSuite", "setupMs", "iceMs", "dtlsMs",
                 "wallSeconds", "concurrency", "consentIntervalSeconds", "consentChecksSent",
                 "consentSendErrors"}
CONSENT_INTERVAL = 0.25


def assert_webrtc(data: dict, peers: int, suite: str = "AES_CM_128_HMAC_SHA1_80") -> dict:
    assert data["scenario"]["transport"] == "webrtc"
    assert data["scenario"]["srtp"] == suite  # --transport webrtc implies SRTP
    (entry,) = data["modes"].values()
    rtc = entry["webrtc"]
    assert WEBRTC_FIELDS <= set(rtc)
    assert rtc["peers"] == peers and rtc["cryptoSuite"] == rtc["offeredSuite"] == suite
    for key in ("setupMs", "iceMs", "dtlsMs"):
        assert 0 < rtc[key]["median"] <= rtc[key]["max"] < 10_000
    assert entry["workerExitCode"] == 0
    return entry


def assert_consent_answered(entry: dict, peers: int) -> None:
    """Consent checks went out all along, and the sinks counted their answers as STUN (not
    media, not malformed): at least half the rounds the steps lasted (the steps yield to the
    event loop only every 50 ms, and answers after the last step are not counted)."""
    rtc = entry["webrtc"]
    assert rtc["consentIntervalSeconds"] == CONSENT_INTERVAL and rtc["consentSendErrors"] == 0
    answered = sum(s["stunPackets"] for s in entry["steps"])
    rounds = sum(s["duration"] for s in entry["steps"]) / CONSENT_INTERVAL
    assert answered >= peers * int(rounds / 2) > 0
    assert answered <= rtc["consentChecksSent"]
    assert all(s["stunErrors"] == 0 and s["dtlsPackets"] == 0 for s in entry["steps"])


def test_fanout_audio_over_webrtc_counts_add_up_and_consent_is_kept(tmp_path):
    proc, data = run_cli(tmp_path, "--transport", "webrtc", "--consumers", "3", "--rate", "300",
                         "--duration", "1.5", "--consent-interval", str(CONSENT_INTERVAL))
    assert proc.returncode == 0, proc.stderr
    assert data["errors"] == [] and data["interrupted"] is False
    entry = assert_webrtc(data, peers=4)  # 1 producer transport + 3 consumer transports
    (step,) = entry["steps"]
    assert_exact(step, 3)
    assert set(step["perConsumer"]) == {step["packetsIn"]}
    assert_consent_answered(entry, peers=4)
    assert "WebRTC peers, ICE + DTLS set-up median" in proc.stdout


def test_rooms_video_over_webrtc_with_an_aead_suite_counts_add_up(tmp_path):
    proc, data = run_cli(tmp_path, "--transport", "webrtc", "--scenario", "rooms", "--rooms",
                         "2", "--participants", "3", "--kind", "video", "--rate", "300",
                         "--duration", "1", "--srtp-suite", "AEAD_AES_128_GCM",
                         "--consent-interval", str(CONSENT_INTERVAL))
    assert proc.returncode == 0, proc.stderr
    assert data["errors"] == []
    # 6 participants, each its own send and its own receive transport
    entry = assert_webrtc(data, peers=12, suite="AEAD_AES_128_GCM")
    (step,) = entry["steps"]
    assert data["scenario"]["consumers"] == 12
    assert_exact(step, 2)  # every stream reaches the 2 others of its room
    assert_consent_answered(entry, peers=12)


@pytest.mark.parametrize("args, message", [
    (["--srtp-suite", "AES_CM_128_HMAC_SHA1_32"], "DTLS-SRTP here negotiates only"),
    (["--consent-interval", "40"], "--consent-interval must be in (0, 25]"),
    (["--consent-interval", "0"], "--consent-interval must be in (0, 25]"),
])
def test_bad_webrtc_combinations_are_clear_messages(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "relay.loadtest", "--transport", "webrtc",
                           *args], capture_output=True, text=True, timeout=30, env=_env(),
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sinks_count_stun_dtls_and_rtcp_on_sink_and_sender_sockets_apart_from_media():
    traffic = Traffic(fanout("audio", 1), srtp_suite=None)
    (sender,) = traffic.open_group_senders()
    worker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the worker
    worker.bind(("127.0.0.1", 0))
    success = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12  # Binding success
    error = b"\x01\x11\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12  # Binding error
    dtls = b"\x16\xfe\xfd" + b"\x00" * 10  # a handshake record
    rtcp = b"\x81\xc9\x00\x01" + b"\x00" * 4  # a receiver report
    try:
        traffic.begin_step(10)
        for target in (traffic.sink_address(0), sender.getsockname()):
            for datagram in (success, error, dtls, rtcp):
                worker.sendto(datagram, target)
        worker.sendto(b"\x80\x6f" + b"\x00" * 30, sender.getsockname())  # RTP: not for it
        for _ in range(500):
            traffic.drain(10)
            c = traffic.counts()
            if c.stun + c.dtls + c.rtcp + c.unknown == 9:
                break
        c = traffic.counts()
        assert (c.stun, c.stun_errors, c.dtls, c.rtcp, c.unknown) == (4, 2, 2, 2, 1)
        assert c.received == c.malformed == c.srtp_failures == c.duplicates == 0
        assert c.kernel_timestamps == 9  # sender sockets carry arrival times too
    finally:
        worker.close()
        traffic.close()


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_silent_transport_is_a_handshake_timeout_naming_the_peer():
    silent, client = _udp(), _udp()  # nothing ever answers on `silent`
    certificate = OfferingCertificate.for_suite("AES_CM_128_HMAC_SHA1_80")
    ip, port = silent.getsockname()
    peer = WebRtcPeer("consumer transport 7", client, certificate,
                      {"usernameFragment": "u" * 16, "password": "p" * 32},
                      {"address": ip, "port": port})
    fingerprints = {"role": "auto", "fingerprints": certificate.fingerprints}
    try:
        with pytest.raises(HandshakeError, match=r"consumer transport 7: ICE did not complete "
                                                 r"within 0.3 s"):
            asyncio.run(connect_peers([(peer, fingerprints)], timeout=0.3))
    finally:
        silent.close()
        client.close()


def test_a_wrong_fingerprint_is_a_dtls_failure_naming_the_peer():
    async def scenario() -> None:
        worker = await relay.create_worker(rtc_min_port=47000, rtc_max_port=47099)
        sock = _udp()
        try:
            router = await worker.create_router(media_codecs=ROUTER_CODECS)
            transport = await router.create_webrtc_transport(listen_infos=WEBRTC_LISTEN_INFOS)
            certificate = OfferingCertificate.for_suite("AES_CM_128_HMAC_SHA1_80")
            peer = WebRtcPeer("producer transport 0", sock, certificate,
                              transport.ice_parameters, transport.ice_candidates[0])
            await transport.connect(dtls_parameters=peer.dtls_parameters)
            wrong = {"role": "auto", "fingerprints": [
                {"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}]}
            with pytest.raises(HandshakeError, match=r"1 of 1 .*producer transport 0: DTLS "
                                                     r"failed: .*fingerprint mismatch"):
                await connect_peers([(peer, wrong)], timeout=5)
            assert peer.ice_ms is not None  # ICE got through; DTLS is what failed
        finally:
            sock.close()
            worker.close()
            await asyncio.wait_for(worker.wait_closed(), 10)

    asyncio.run(scenario())
