"""What a mediasoup-client app does in the browser, done for aiortc in tests: turn relay's
transport parameters into SDP for an aiortc RTCPeerConnection, and aiortc's SDP into
relay's produce()/connect() parameters.

- publisher: aiortc offers (sendonly audio+video, BUNDLE); `producer_parameters()` reads
  each m-section's codecs, header extensions, SSRCs and MID; `publish_answer()` is relay's
  answer (ICE-lite, its candidates and fingerprints, the DTLS role chosen by the test).
- subscriber: `subscribe_offer()` is relay's offer for its consumers (sendonly from relay);
  aiortc answers; `answer_dtls_parameters()` reads aiortc's fingerprints and role.

aiortc skips 127.0.0.1 when gathering: tests replace `aioice.ice.get_host_addresses`.
"""

from __future__ import annotations

from typing import Any

from aiortc.sdp import SessionDescription

OPUS = {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
VP8 = {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
MEDIA_CODECS = [OPUS, VP8]
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

# What an aiortc peer can receive (mediasoup-client's device.rtpCapabilities equivalent).
AIORTC_RTP_CAPABILITIES = {
    "codecs": [
        {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
         "preferredPayloadType": 100, "parameters": {}, "rtcpFeedback": []},
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
         "preferredPayloadType": 101, "parameters": {},
         "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
        {"kind": "video", "mimeType": "video/rtx", "clockRate": 90000,
         "preferredPayloadType": 102, "parameters": {"apt": 101}, "rtcpFeedback": []},
    ],
    "headerExtensions": [
        {"kind": "audio", "uri": MID_URI, "preferredId": 1, "preferredEncrypt": False,
         "direction": "sendrecv"},
        {"kind": "video", "uri": MID_URI, "preferredId": 1, "preferredEncrypt": False,
         "direction": "sendrecv"},
    ],
}

_WANTED = {"audio": "opus", "video": "vp8"}


def _setup_for(relay_role: str) -> str:
    """The answer's a=setup: relay as DTLS client is "active"."""
    return "active" if relay_role == "client" else "passive"


def offer_dtls_parameters(sdp: str, relay_role: str) -> dict:
    """What relay's connect() gets from an aiortc offer (setup:actpass): the fingerprints,
    and the role that makes relay `relay_role`."""
    media = SessionDescription.parse(sdp).media[0]
    return {
        "role": "server" if relay_role == "client" else "client",
        "fingerprints": [{"algorithm": f.algorithm, "value": f.value}
                         for f in media.dtls.fingerprints],
    }


def answer_dtls_parameters(sdp: str) -> dict:
    media = SessionDescription.parse(sdp).media[0]
    return {
        "role": media.dtls.role,  # aiortc's own role: "client" (active) or "server"
        "fingerprints": [{"algorithm": f.algorithm, "value": f.value}
                         for f in media.dtls.fingerprints],
    }


def producer_parameters(sdp: str) -> list[tuple[str, dict]]:
    """[(kind, rtpParameters)] of an aiortc offer, one per m-section (opus / VP8 + RTX)."""
    result = []
    for media in SessionDescription.parse(sdp).media:
        codec = next(c for c in media.rtp.codecs if c.name.lower() == _WANTED[media.kind])
        codecs = [_codec(codec)]
        rtx = next((c for c in media.rtp.codecs if c.name.lower() == "rtx"
                    and c.parameters.get("apt") == codec.payloadType), None)
        if rtx is not None:
            codecs.append(_codec(rtx))
        encoding: dict[str, Any] = {"ssrc": int(media.ssrc[0].ssrc)}
        fid = next((g for g in media.ssrc_group if g.semantic == "FID"), None)
        if rtx is not None and fid is not None:
            encoding["rtx"] = {"ssrc": int(fid.items[1])}
        result.append((media.kind, {
            "mid": media.rtp.muxId,
            "codecs": codecs,
            "headerExtensions": [{"uri": e.uri, "id": e.id} for e in media.rtp.headerExtensions
                                 if e.uri == MID_URI],
            "encodings": [encoding],
            "rtcp": {"cname": media.ssrc[0].cname, "reducedSize": True},
        }))
    return result


def _codec(codec: Any) -> dict:
    return {
        "mimeType": f"{codec.mimeType}",
        "payloadType": codec.payloadType,
        "clockRate": codec.clockRate,
        **({"channels": codec.channels} if codec.channels else {}),
        "parameters": dict(codec.parameters),
        "rtcpFeedback": [{"type": f.type, **({"parameter": f.parameter} if f.parameter else {})}
                         for f in codec.rtcpFeedback],
    }


def _transport_lines(transport: Any, setup: str) -> list[str]:
    ice = transport.ice_parameters
    lines = [f"a=ice-ufrag:{ice['usernameFragment']}", f"a=ice-pwd:{ice['password']}"]
    for f in transport.dtls_parameters["fingerprints"]:
        lines.append(f"a=fingerprint:{f['algorithm']} {f['value']}")
    lines.append(f"a=setup:{setup}")
    for c in transport.ice_candidates:
        line = (f"a=candidate:{c['foundation']} 1 {c['protocol']} {c['priority']} "
                f"{c['address']} {c['port']} typ host")
        if c.get("tcpType"):
            line += f" tcptype {c['tcpType']}"
        lines.append(line)
    lines.append("a=end-of-candidates")
    return lines


def _session_header(mids: list[str]) -> list[str]:
    return ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-lite",
            f"a=group:BUNDLE {' '.join(mids)}", "a=msid-semantic:WMS *"]


def _media_lines(kind: str, mid: str, codecs: list[dict], extensions: list[dict],
                 direction: str, port: int) -> list[str]:
    pts = " ".join(str(c["payloadType"]) for c in codecs)
    lines = [f"m={kind} {port} UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 127.0.0.1",
             f"a=mid:{mid}", f"a={direction}", "a=rtcp-mux", "a=rtcp-rsize"]
    for e in extensions:
        lines.append(f"a=extmap:{e['id']} {e['uri']}")
    for c in codecs:
        name = c["mimeType"].split("/")[1]
        channels = f"/{c['channels']}" if c.get("channels", 1) > 1 else ""
        lines.append(f"a=rtpmap:{c['payloadType']} {name}/{c['clockRate']}{channels}")
        if c.get("parameters"):
            params = ";".join(f"{k}={v}" for k, v in c["parameters"].items())
            lines.append(f"a=fmtp:{c['payloadType']} {params}")
        for fb in c.get("rtcpFeedback", []):
            extra = f" {fb['parameter']}" if fb.get("parameter") else ""
            lines.append(f"a=rtcp-fb:{c['payloadType']} {fb['type']}{extra}")
    return lines


def publish_answer(transport: Any, produced: list[tuple[str, dict]], relay_role: str) -> str:
    """relay's SDP answer to an aiortc publisher's offer."""
    port = transport.ice_candidates[0]["port"]
    lines = _session_header([p["mid"] for _, p in produced])
    for kind, params in produced:
        lines += _media_lines(kind, params["mid"], params["codecs"], params["headerExtensions"],
                              "recvonly", port)
        lines += _transport_lines(transport, _setup_for(relay_role))
    return "\r\n".join(lines) + "\r\n"


def subscribe_offer(transport: Any, consumers: list[Any]) -> str:
    """relay's SDP offer for an aiortc subscriber of `consumers` (relay sends)."""
    port = transport.ice_candidates[0]["port"]
    lines = _session_header([c.rtp_parameters["mid"] for c in consumers])
    for consumer in consumers:
        params = consumer.rtp_parameters
        lines += _media_lines(consumer.kind, params["mid"], params["codecs"],
                              params["headerExtensions"], "sendonly", port)
        encoding = params["encodings"][0]
        cname = params["rtcp"]["cname"]
        lines.append(f"a=msid:relay-stream {consumer.id}")
        if encoding.get("rtx"):
            lines.append(f"a=ssrc-group:FID {encoding['ssrc']} {encoding['rtx']['ssrc']}")
            lines.append(f"a=ssrc:{encoding['rtx']['ssrc']} cname:{cname}")
        lines.append(f"a=ssrc:{encoding['ssrc']} cname:{cname}")
        lines += _transport_lines(transport, "actpass")
    return "\r\n".join(lines) + "\r\n"
