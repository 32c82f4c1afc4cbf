"""RTP capabilities and parameters: validation, router capabilities, producer/consumer mapping.

Follows the semantics of mediasoup's ortc (same shapes, same decisions) so that dictionaries
travel unchanged to mediasoup-client and browsers. Validators return normalised deep copies
(missing optional fields filled with their defaults) and never modify what they are given.
Invalid input raises ArgumentError; valid but unsupported input raises UnsupportedError.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

from worker_proto.errors import ArgumentError, UnsupportedError

MIME_TYPE_RE = re.compile(r"^(audio|video)/(.+)", re.IGNORECASE)
RTX_MIME_TYPE_RE = re.compile(r".+/rtx$", re.IGNORECASE)

# Dynamic payload types in the order mediasoup hands them out.
DYNAMIC_PAYLOAD_TYPES = [*range(100, 128), 96, 97, 98, 99]

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ABS_CAPTURE_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def _fb(*entries: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": t, "parameter": p} for t, p in entries]


_VIDEO_FB = _fb(("nack", ""), ("nack", "pli"), ("ccm", "fir"), ("goog-remb", ""),
                ("transport-cc", ""))
_AUDIO_FB = _fb(("transport-cc", ""))
_OPUS_FB = _fb(("nack", ""), ("transport-cc", ""))  # as mediasoup: Opus may be NACKed


def _audio(mime: str, clock: int, channels: int = 1, pt: int | None = None,
           params: dict | None = None, fb: list | None = None) -> dict[str, Any]:
    codec: dict[str, Any] = {"kind": "audio", "mimeType": mime, "clockRate": clock,
                             "channels": channels, "parameters": params or {},
                             "rtcpFeedback": copy.deepcopy(_AUDIO_FB if fb is None else fb)}
    if pt is not None:
        codec["preferredPayloadType"] = pt
    return codec


def _video(mime: str, params: dict | None = None) -> dict[str, Any]:
    return {"kind": "video", "mimeType": mime, "clockRate": 90000, "parameters": params or {},
            "rtcpFeedback": copy.deepcopy(_VIDEO_FB)}


def _ext(kind: str, uri: str, preferred_id: int, direction: str = "sendrecv") -> dict[str, Any]:
    return {"kind": kind, "uri": uri, "preferredId": preferred_id, "preferredEncrypt": False,
            "direction": direction}


# What a router can be configured with (mediasoup's supported RTP capabilities).
SUPPORTED_RTP_CAPABILITIES: dict[str, Any] = {
    "codecs": [
        _audio("audio/opus", 48000, 2, fb=_OPUS_FB),
        _audio("audio/multiopus", 48000, 4, fb=_OPUS_FB, params={
            "channel_mapping": "0,1,2,3", "num_streams": 2, "coupled_streams": 2}),
        _audio("audio/multiopus", 48000, 6, fb=_OPUS_FB, params={
            "channel_mapping": "0,4,1,2,3,5", "num_streams": 4, "coupled_streams": 2}),
        _audio("audio/multiopus", 48000, 8, fb=_OPUS_FB, params={
            "channel_mapping": "0,6,1,2,3,4,5,7", "num_streams": 5, "coupled_streams": 3}),
        _audio("audio/PCMU", 8000, pt=0),
        _audio("audio/PCMA", 8000, pt=8),
        _audio("audio/ISAC", 32000),
        _audio("audio/ISAC", 16000),
        _audio("audio/G722", 8000, pt=9),
        _audio("audio/iLBC", 8000),
        _audio("audio/SILK", 24000),
        _audio("audio/SILK", 16000),
        _audio("audio/SILK", 12000),
        _audio("audio/SILK", 8000),
        _audio("audio/CN", 32000, pt=13, fb=[]),
        _audio("audio/CN", 16000, pt=13, fb=[]),
        _audio("audio/CN", 8000, pt=13, fb=[]),
        _audio("audio/telephone-event", 48000, fb=[]),
        _audio("audio/telephone-event", 32000, fb=[]),
        _audio("audio/telephone-event", 16000, fb=[]),
        _audio("audio/telephone-event", 8000, fb=[]),
        _video("video/VP8"),
        _video("video/VP9"),
        _video("video/H264", {"level-asymmetry-allowed": 1}),
        _video("video/H265", {"level-asymmetry-allowed": 1}),
    ],
    "headerExtensions": [
        _ext("audio", "urn:ietf:params:rtp-hdrext:sdes:mid", 1),
        _ext("video", "urn:ietf:params:rtp-hdrext:sdes:mid", 1),
        _ext("video", RID_URI, 2, "recvonly"),
        _ext("video", RRID_URI, 3, "recvonly"),
        _ext("audio", ABS_SEND_TIME_URI, 4),
        _ext("video", ABS_SEND_TIME_URI, 4),
        _ext("audio", TRANSPORT_CC_URI, 5, "recvonly"),
        _ext("video", TRANSPORT_CC_URI, 5),  # both ways: feedback to publishers, BWE to subscribers
        _ext("audio", "urn:ietf:params:rtp-hdrext:ssrc-audio-level", 10),
        _ext("video", "urn:3gpp:video-orientation", 11),
        _ext("video", "urn:ietf:params:rtp-hdrext:toffset", 12),
        _ext("audio", ABS_CAPTURE_TIME_URI, 13),
        _ext("video", ABS_CAPTURE_TIME_URI, 13),
    ],
}


# -- small type checks ----------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise ArgumentError(f"{what} must be a dict, got {type(value).__name__}")
    return value


def _optional_list(obj: dict, key: str, what: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ArgumentError(f"{what}.{key} must be a list")
    return value


def is_rtx_codec(codec: dict) -> bool:
    return bool(RTX_MIME_TYPE_RE.match(codec.get("mimeType", "")))


def _normalise_parameters(params: Any, what: str) -> dict:
    if not isinstance(params, dict):
        return {}
    out = {}
    for key, value in params.items():
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ArgumentError(f"invalid {what} parameter [key:{key}, value:{value!r}]")
        if key == "apt" and not _is_int(value):
            raise ArgumentError(f"invalid {what} apt parameter")
        out[key] = value
    return out


# -- validators -----------------------------------------------------------------------------

def validate_rtcp_feedback(fb: Any) -> dict:
    fb = _require_dict(fb, "rtcpFeedback entry")
    fb_type = fb.get("type")
    if not isinstance(fb_type, str) or not fb_type:
        raise ArgumentError("missing rtcpFeedback type")
    parameter = fb.get("parameter")
    return {"type": fb_type, "parameter": parameter if isinstance(parameter, str) else ""}


def _validate_codec_common(codec: Any, what: str) -> tuple[dict, str]:
    codec = copy.deepcopy(_require_dict(codec, what))
    mime_type = codec.get("mimeType")
    if not isinstance(mime_type, str) or not mime_type:
        raise ArgumentError(f"missing {what}.mimeType")
    match = MIME_TYPE_RE.match(mime_type)
    if not match:
        raise ArgumentError(f"invalid {what}.mimeType {mime_type!r}")
    kind = match.group(1).lower()
    clock_rate = codec.get("clockRate")
    if not _is_int(clock_rate) or clock_rate <= 0:
        raise ArgumentError(f"missing or invalid {what}.clockRate")
    if kind == "audio":
        if not _is_int(codec.get("channels")):
            codec["channels"] = 1
    else:
        codec.pop("channels", None)
    codec["parameters"] = _normalise_parameters(codec.get("parameters"), "codec")
    feedback = codec.get("rtcpFeedback")
    codec["rtcpFeedback"] = [validate_rtcp_feedback(fb) for fb in feedback] \
        if isinstance(feedback, list) else []
    return codec, kind


def validate_rtp_codec_capability(codec: Any) -> dict:
    codec, kind = _validate_codec_common(codec, "codec")
    codec["kind"] = kind  # as mediasoup: the mimeType decides the kind
    pt = codec.get("preferredPayloadType")
    if pt is not None and (not _is_int(pt) or not 0 <= pt <= 127):
        raise ArgumentError("invalid codec.preferredPayloadType")
    return codec


def validate_rtp_header_extension(ext: Any) -> dict:
    ext = copy.deepcopy(_require_dict(ext, "headerExtension"))
    if ext.get("kind") not in ("audio", "video"):
        raise ArgumentError("invalid ext.kind")
    if not isinstance(ext.get("uri"), str) or not ext["uri"]:
        raise ArgumentError("missing ext.uri")
    if not _is_int(ext.get("preferredId")):
        raise ArgumentError("missing ext.preferredId")
    encrypt = ext.get("preferredEncrypt")
    if encrypt is not None and not isinstance(encrypt, bool):
        raise ArgumentError("invalid ext.preferredEncrypt")
    ext["preferredEncrypt"] = bool(encrypt)
    direction = ext.get("direction")
    if direction is not None and not isinstance(direction, str):
        raise ArgumentError("invalid ext.direction")
    ext["direction"] = direction or "sendrecv"
    return ext


def validate_rtp_capabilities(caps: Any) -> dict:
    caps = _require_dict(caps, "rtp_capabilities")
    return {
        "codecs": [validate_rtp_codec_capability(c)
                   for c in _optional_list(caps, "codecs", "rtp_capabilities")],
        "headerExtensions": [validate_rtp_header_extension(e)
                             for e in _optional_list(caps, "headerExtensions",
                                                     "rtp_capabilities")],
    }


def validate_rtp_codec_parameters(codec: Any) -> dict:
    codec, _kind = _validate_codec_common(codec, "codec")
    pt = codec.get("payloadType")
    if not _is_int(pt) or not 0 <= pt <= 127:
        raise ArgumentError("missing or invalid codec.payloadType")
    return codec


def validate_rtp_header_extension_parameters(ext: Any) -> dict:
    ext = copy.deepcopy(_require_dict(ext, "headerExtension"))
    if not isinstance(ext.get("uri"), str) or not ext["uri"]:
        raise ArgumentError("missing ext.uri")
    ext_id = ext.get("id")
    if not _is_int(ext_id) or not 1 <= ext_id <= 255:
        raise ArgumentError("missing or invalid ext.id")
    encrypt = ext.get("encrypt")
    if encrypt is not None and not isinstance(encrypt, bool):
        raise ArgumentError("invalid ext.encrypt")
    ext["encrypt"] = bool(encrypt)
    ext["parameters"] = _normalise_parameters(ext.get("parameters"), "header extension")
    return ext


def validate_rtp_encoding_parameters(encoding: Any) -> dict:
    encoding = copy.deepcopy(_require_dict(encoding, "encoding"))
    ssrc = encoding.get("ssrc")
    if ssrc is not None and (not _is_int(ssrc) or not 0 <= ssrc <= 0xFFFFFFFF):
        raise ArgumentError("invalid encoding.ssrc")
    rid = encoding.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise ArgumentError("invalid encoding.rid")
    rtx = encoding.get("rtx")
    if rtx is not None:
        if not isinstance(rtx, dict):
            raise ArgumentError("invalid encoding.rtx")
        if not _is_int(rtx.get("ssrc")):
            raise ArgumentError("missing encoding.rtx.ssrc")
    if not isinstance(encoding.get("dtx"), bool):
        encoding["dtx"] = False
    mode = encoding.get("scalabilityMode")
    if mode is not None and not isinstance(mode, str):
        raise ArgumentError("invalid encoding.scalabilityMode")
    return encoding


def validate_rtcp_parameters(rtcp: Any) -> dict:
    rtcp = copy.deepcopy(_require_dict(rtcp, "rtcp"))
    cname = rtcp.get("cname")
    if cname is not None and not isinstance(cname, str):
        raise ArgumentError("invalid rtcp.cname")
    if not isinstance(rtcp.get("reducedSize"), bool):
        rtcp["reducedSize"] = True
    return rtcp


def validate_rtp_parameters(params: Any) -> dict:
    params = copy.deepcopy(_require_dict(params, "rtp_parameters"))
    mid = params.get("mid")
    if mid is not None and not isinstance(mid, str):
        raise ArgumentError("rtp_parameters.mid must be a string")
    if not isinstance(params.get("codecs"), list):
        raise ArgumentError("missing rtp_parameters.codecs")
    params["codecs"] = [validate_rtp_codec_parameters(c) for c in params["codecs"]]
    params["headerExtensions"] = [
        validate_rtp_header_extension_parameters(e)
        for e in _optional_list(params, "headerExtensions", "rtp_parameters")
    ]
    params["encodings"] = [validate_rtp_encoding_parameters(e)
                           for e in _optional_list(params, "encodings", "rtp_parameters")]
    rtcp = params.get("rtcp")
    params["rtcp"] = validate_rtcp_parameters({} if rtcp is None else rtcp)
    return params


# -- codec matching -------------------------------------------------------------------------

# H.264 profiles from profile-level-id (RFC 6184 table 5): (profile_idc, iop bit pattern).
_H264_PROFILE_PATTERNS = [
    (0x42, "x1xx0000", "ConstrainedBaseline"),
    (0x4D, "1xxx0000", "ConstrainedBaseline"),
    (0x58, "11xx0000", "ConstrainedBaseline"),
    (0x42, "x0xx0000", "Baseline"),
    (0x58, "10xx0000", "Baseline"),
    (0x4D, "0x0x0000", "Main"),
    (0x64, "00000000", "High"),
    (0x64, "00001100", "ConstrainedHigh"),
    (0x6E, "00000000", "High10"),
    (0x7A, "00000000", "High422"),
    (0xF4, "00000000", "High444"),
]


def _h264_profile(params: dict) -> str | None:
    """The H.264 profile named by profile-level-id (default 42e01f), or None if invalid."""
    value = str(params.get("profile-level-id", "42e01f"))
    if not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        return None
    profile_idc = int(value[0:2], 16)
    iop = f"{int(value[2:4], 16):08b}"
    for idc, pattern, name in _H264_PROFILE_PATTERNS:
        if idc == profile_idc and all(p in ("x", b) for p, b in zip(pattern, iop, strict=True)):
            return name
    return None


def match_codecs(a: dict, b: dict, strict: bool = False) -> bool:
    a_mime = a["mimeType"].lower()
    if a_mime != b["mimeType"].lower():
        return False
    if a.get("clockRate") != b.get("clockRate") or a.get("channels") != b.get("channels"):
        return False
    a_params, b_params = a.get("parameters", {}), b.get("parameters", {})
    if a_mime == "audio/multiopus":
        for key in ("num_streams", "coupled_streams"):
            if a_params.get(key) != b_params.get(key):
                return False
    elif a_mime in ("video/h264", "video/h264-svc") and strict:
        if int(a_params.get("packetization-mode", 0)) != int(b_params.get("packetization-mode",
                                                                          0)):
            return False
        a_profile = _h264_profile(a_params)
        if a_profile is None or a_profile != _h264_profile(b_params):
            return False
    elif a_mime == "video/vp9" and strict:
        if int(a_params.get("profile-id", 0)) != int(b_params.get("profile-id", 0)):
            return False
    return True


def _random_ssrc() -> int:
    return random.randint(100_000_000, 999_999_999)


# -- router, producer, consumer -------------------------------------------------------------

def generate_router_rtp_capabilities(media_codecs: Any) -> dict:
    """The router's capabilities for ``media_codecs`` (adds an RTX codec per video codec)."""
    if not isinstance(media_codecs, list):
        raise ArgumentError("media_codecs must be a list")
    supported = SUPPORTED_RTP_CAPABILITIES
    dynamic = list(DYNAMIC_PAYLOAD_TYPES)
    caps: dict[str, Any] = {"codecs": [],
                            "headerExtensions": copy.deepcopy(supported["headerExtensions"])}
    for media_codec in media_codecs:
        media_codec = validate_rtp_codec_capability(media_codec)
        matched = next((c for c in supported["codecs"] if match_codecs(media_codec, c)), None)
        if matched is None:
            raise UnsupportedError(f"media codec not supported [mimeType:{media_codec['mimeType']}]")
        codec = copy.deepcopy(matched)
        if "preferredPayloadType" in media_codec:
            codec["preferredPayloadType"] = media_codec["preferredPayloadType"]
            if codec["preferredPayloadType"] in dynamic:
                dynamic.remove(codec["preferredPayloadType"])
        elif "preferredPayloadType" not in codec:
            if not dynamic:
                raise UnsupportedError("cannot allocate more dynamic codec payload types")
            codec["preferredPayloadType"] = dynamic.pop(0)
        if any(c["preferredPayloadType"] == codec["preferredPayloadType"] for c in caps["codecs"]):
            raise ArgumentError("duplicated codec.preferredPayloadType")
        codec["parameters"] = {**codec["parameters"], **media_codec["parameters"]}
        caps["codecs"].append(codec)
        if codec["kind"] == "video":
            if not dynamic:
                raise UnsupportedError("cannot allocate more dynamic codec payload types")
            caps["codecs"].append({
                "kind": "video", "mimeType": "video/rtx",
                "preferredPayloadType": dynamic.pop(0), "clockRate": codec["clockRate"],
                "parameters": {"apt": codec["preferredPayloadType"]}, "rtcpFeedback": []})
    return caps


def get_producer_rtp_parameters_mapping(params: dict, caps: dict) -> dict:
    """How the producer's payload types and SSRCs map onto the router's (validated params)."""
    codec_to_cap: list[tuple[dict, dict]] = []
    for codec in params["codecs"]:
        if is_rtx_codec(codec):
            continue
        matched = next((c for c in caps["codecs"] if match_codecs(codec, c, strict=True)), None)
        if matched is None:
            raise UnsupportedError(f"unsupported codec [mimeType:{codec['mimeType']}, "
                                   f"payloadType:{codec['payloadType']}]")
        codec_to_cap.append((codec, matched))
    for codec in params["codecs"]:
        if not is_rtx_codec(codec):
            continue
        media = next((m for m in params["codecs"]
                      if m["payloadType"] == codec["parameters"].get("apt")), None)
        if media is None:
            raise ArgumentError(f"missing media codec found for RTX PT {codec['payloadType']}")
        cap_media = next(cap for c, cap in codec_to_cap if c is media)
        cap_rtx = next((c for c in caps["codecs"] if is_rtx_codec(c)
                        and c["parameters"].get("apt") == cap_media["preferredPayloadType"]), None)
        if cap_rtx is None:
            raise UnsupportedError(
                f"no RTX codec for capability codec PT {cap_media['preferredPayloadType']}")
        codec_to_cap.append((codec, cap_rtx))
    mapping: dict[str, list] = {
        "codecs": [{"payloadType": c["payloadType"], "mappedPayloadType": cap["preferredPayloadType"]}
                   for c, cap in codec_to_cap],
        "encodings": [],
    }
    _check_producer_encodings(params["encodings"])
    mapped_ssrc = _random_ssrc()
    for encoding in params["encodings"]:
        entry: dict[str, Any] = {"mappedSsrc": mapped_ssrc}
        mapped_ssrc += 1
        for key in ("rid", "ssrc", "scalabilityMode"):
            if encoding.get(key) is not None:
                entry[key] = encoding[key]
        mapping["encodings"].append(entry)
    return mapping


def _check_producer_encodings(encodings: list[dict]) -> None:
    """Simulcast encodings are told apart by SSRC or by RID (RFC 8851): with several, each
    needs one of them, and neither may repeat."""
    rids = [e["rid"] for e in encodings if e.get("rid")]
    ssrcs = [e["ssrc"] for e in encodings if e.get("ssrc") is not None]
    if len(encodings) > 1:
        for i, encoding in enumerate(encodings):
            if encoding.get("ssrc") is None and not encoding.get("rid"):
                raise ArgumentError(f"encodings[{i}] has neither ssrc nor rid")
    if len(set(rids)) != len(rids):
        raise ArgumentError("duplicated encoding rid")
    if len(set(ssrcs)) != len(ssrcs):
        raise ArgumentError("duplicated encoding ssrc")


def _parse_temporal_layers(mode: Any) -> int:
    """Temporal layers of a scalabilityMode such as "L1T3" or "S3T3_KEY" (1 if none)."""
    match = re.match(r"^[LS]\d+T(\d+)", mode) if isinstance(mode, str) else None
    return int(match.group(1)) if match else 1


def get_consumable_rtp_parameters(kind: str, params: dict, caps: dict, mapping: dict) -> dict:
    """The router-side view of a producer: router payload types, mapped SSRCs."""
    consumable: dict[str, Any] = {"codecs": [], "headerExtensions": [], "encodings": [],
                                  "rtcp": {}}
    for codec in params["codecs"]:
        if is_rtx_codec(codec):
            continue
        pt = next(e["mappedPayloadType"] for e in mapping["codecs"]
                  if e["payloadType"] == codec["payloadType"])
        cap = next(c for c in caps["codecs"] if c["preferredPayloadType"] == pt)
        consumable_codec = {"mimeType": cap["mimeType"], "payloadType": pt,
                            "clockRate": cap["clockRate"],
                            "parameters": copy.deepcopy(codec["parameters"]),
                            "rtcpFeedback": copy.deepcopy(cap["rtcpFeedback"])}
        if "channels" in cap:
            consumable_codec["channels"] = cap["channels"]
        consumable["codecs"].append(consumable_codec)
        cap_rtx = next((c for c in caps["codecs"]
                        if is_rtx_codec(c) and c["parameters"].get("apt") == pt), None)
        if cap_rtx is not None:
            consumable["codecs"].append({
                "mimeType": cap_rtx["mimeType"], "payloadType": cap_rtx["preferredPayloadType"],
                "clockRate": cap_rtx["clockRate"],
                "parameters": copy.deepcopy(cap_rtx["parameters"]),
                "rtcpFeedback": copy.deepcopy(cap_rtx["rtcpFeedback"])})
    for ext in caps["headerExtensions"]:
        if ext["kind"] != kind or ext["direction"] not in ("sendrecv", "sendonly"):
            continue
        consumable["headerExtensions"].append({"uri": ext["uri"], "id": ext["preferredId"],
                                               "encrypt": ext["preferredEncrypt"],
                                               "parameters": {}})
    for encoding, entry in zip(params["encodings"], mapping["encodings"], strict=True):
        encoding = copy.deepcopy(encoding)
        for key in ("rid", "rtx", "codecPayloadType"):
            encoding.pop(key, None)
        encoding["ssrc"] = entry["mappedSsrc"]
        consumable["encodings"].append(encoding)
    consumable["rtcp"] = {"cname": params["rtcp"].get("cname"), "reducedSize": True}
    return consumable


def can_consume(consumable: dict, caps: Any) -> bool:
    """Whether a peer with RTP capabilities ``caps`` can receive the producer."""
    caps = validate_rtp_capabilities(caps)
    matching = [c for c in consumable["codecs"]
                if any(match_codecs(cap, c, strict=True) for cap in caps["codecs"])]
    return bool(matching) and not is_rtx_codec(matching[0])


def get_consumer_rtp_parameters(consumable: dict, caps: Any, enable_rtx: bool = False) -> dict:
    """A single-encoding consumer's RTP parameters for a peer with capabilities ``caps``."""
    caps = validate_rtp_capabilities(caps)
    params: dict[str, Any] = {"codecs": [], "headerExtensions": [], "encodings": [],
                              "rtcp": copy.deepcopy(consumable["rtcp"])}
    for codec in copy.deepcopy(consumable["codecs"]):
        if not enable_rtx and is_rtx_codec(codec):
            continue
        matched = next((cap for cap in caps["codecs"] if match_codecs(cap, codec, strict=True)),
                       None)
        if matched is None:
            continue
        codec["rtcpFeedback"] = [fb for fb in matched["rtcpFeedback"]
                                 if enable_rtx or fb["type"] != "nack" or fb["parameter"]]
        params["codecs"].append(codec)
    rtx_supported = False
    for codec in list(params["codecs"]):
        if is_rtx_codec(codec):
            if any(m["payloadType"] == codec["parameters"].get("apt") for m in params["codecs"]):
                rtx_supported = True
            else:
                params["codecs"].remove(codec)
    if not params["codecs"] or is_rtx_codec(params["codecs"][0]):
        raise UnsupportedError("no compatible media codecs")
    params["headerExtensions"] = [
        copy.deepcopy(ext) for ext in consumable["headerExtensions"]
        if any(cap["preferredId"] == ext["id"] and cap["uri"] == ext["uri"]
               for cap in caps["headerExtensions"])
    ]
    uris = {ext["uri"] for ext in params["headerExtensions"]}
    if TRANSPORT_CC_URI in uris:
        dropped = {"goog-remb"}
    elif ABS_SEND_TIME_URI in uris:
        dropped = {"transport-cc"}
    else:
        dropped = {"transport-cc", "goog-remb"}
    for codec in params["codecs"]:
        codec["rtcpFeedback"] = [fb for fb in codec["rtcpFeedback"] if fb["type"] not in dropped]
    encoding: dict[str, Any] = {"ssrc": _random_ssrc()}
    if rtx_supported:
        encoding["rtx"] = {"ssrc": encoding["ssrc"] + 1}
    max_bitrate = max((e.get("maxBitrate") or 0 for e in consumable["encodings"]), default=0)
    if max_bitrate:
        encoding["maxBitrate"] = max_bitrate
    mode = next((e["scalabilityMode"] for e in consumable["encodings"]
                 if e.get("scalabilityMode")), None)
    if len(consumable["encodings"]) > 1:
        # Simulcast: the consumer's one stream shows the encodings as spatial layers.
        mode = f"L{len(consumable['encodings'])}T{_parse_temporal_layers(mode)}"
    if mode:
        encoding["scalabilityMode"] = mode
    params["encodings"].append(encoding)
    return params


# Header extensions a pipe does not carry: MID names the publisher's m-line, the other two
# feed bandwidth estimation, which a pipe between routers does not run (as mediasoup).
PIPE_DROPPED_EXTENSIONS = frozenset({"urn:ietf:params:rtp-hdrext:sdes:mid", ABS_SEND_TIME_URI,
                                     TRANSPORT_CC_URI})


def get_pipe_consumer_rtp_parameters(consumable: dict, enable_rtx: bool = False) -> dict:
    """A pipe consumer's RTP parameters: every encoding of the producer with fresh SSRCs,
    the router's codecs with feedback limited to PLI/FIR (and NACK with RTX)."""
    params: dict[str, Any] = {"codecs": [], "headerExtensions": [], "encodings": [],
                              "rtcp": copy.deepcopy(consumable["rtcp"])}
    for codec in copy.deepcopy(consumable["codecs"]):
        if not enable_rtx and is_rtx_codec(codec):
            continue
        codec["rtcpFeedback"] = [
            fb for fb in codec.get("rtcpFeedback", [])
            if (fb["type"] == "nack" and fb["parameter"] == "pli")
            or (fb["type"] == "ccm" and fb["parameter"] == "fir")
            or (enable_rtx and fb["type"] == "nack" and not fb["parameter"])]
        params["codecs"].append(codec)
    params["headerExtensions"] = [copy.deepcopy(ext) for ext in consumable["headerExtensions"]
                                  if ext["uri"] not in PIPE_DROPPED_EXTENSIONS]
    # RID / repaired RID are receive-only toward subscribers (not in `consumable`), but a pipe
    # carries them: the far router's producer then sees the encodings as the sender named them.
    kind = consumable["codecs"][0]["mimeType"].split("/")[0].lower() if consumable["codecs"] \
        else ""
    for ext in SUPPORTED_RTP_CAPABILITIES["headerExtensions"]:
        if ext["kind"] == kind and ext["uri"] in (RID_URI, RRID_URI):
            params["headerExtensions"].append({"uri": ext["uri"], "id": ext["preferredId"],
                                               "encrypt": False, "parameters": {}})
    base_ssrc = _random_ssrc()
    base_rtx_ssrc = _random_ssrc()
    count = len(consumable["encodings"])
    while enable_rtx and abs(base_rtx_ssrc - base_ssrc) < count:  # the two ranges must not meet
        base_rtx_ssrc = _random_ssrc()
    for i, encoding in enumerate(copy.deepcopy(consumable["encodings"])):
        encoding["ssrc"] = base_ssrc + i
        if enable_rtx:
            encoding["rtx"] = {"ssrc": base_rtx_ssrc + i}
        else:
            encoding.pop("rtx", None)
        params["encodings"].append(encoding)
    return params
