"""The worker's checks of RTP parameters in produce/consume requests, and the lookup tables
built from them.

Every check raises `ArgumentError` naming the bad field. The tables built here are what the
packet path indexes: 128-entry payload-type tables and 256-entry header-extension-id tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.rtp.rewriter import NO_PAYLOAD_TYPE
from worker_proto.errors import ArgumentError
from worker_proto.validation import (
    optional_bool,
    optional_int,
    require_dict,
    require_int,
    require_list,
    require_str,
)

MAX_SSRC = 0xFFFFFFFF


def require_kind(data: dict) -> str:
    kind = data.get("kind")
    if kind not in ("audio", "video"):
        raise ArgumentError(f'kind must be "audio" or "video", got {kind!r}')
    return kind


# -- RTP parameters ---------------------------------------------------------------------------


def check_codecs(rtp_parameters: dict, name: str) -> list[dict]:
    codecs = require_list(rtp_parameters, "codecs", name=f"{name}.codecs")
    seen: set[int] = set()
    for i, codec in enumerate(codecs):
        where = f"{name}.codecs[{i}]"
        require_dict(codec, where)
        mime = require_str(codec, "mimeType", name=f"{where}.mimeType")
        if "/" not in mime:
            raise ArgumentError(f"{where}.mimeType must look like kind/name, got {mime!r}")
        pt = require_int(codec, "payloadType", 0, 127, name=f"{where}.payloadType")
        if 64 <= pt <= 95:
            raise ArgumentError(f"{where}.payloadType {pt} collides with RTCP (RFC 5761)")
        if pt in seen:
            raise ArgumentError(f"{where}.payloadType {pt} is duplicated")
        seen.add(pt)
        require_int(codec, "clockRate", 1, 10_000_000, name=f"{where}.clockRate")
        optional_int(codec, "channels", 1, 255, name=f"{where}.channels")
    return codecs


def is_media_codec(codec: dict) -> bool:
    """False for RTX/FEC/CN-style helper codecs that are not forwarded as media here."""
    subtype = codec["mimeType"].split("/", 1)[1].lower()
    return subtype not in ("rtx", "red", "ulpfec", "flexfec", "cn", "telephone-event")


def check_header_extensions(rtp_parameters: dict, name: str) -> dict[int, str]:
    """id → uri of `headerExtensions` (optional, may be empty)."""
    extensions = rtp_parameters.get("headerExtensions") or []
    if not isinstance(extensions, list):
        raise ArgumentError(f"{name}.headerExtensions must be an array")
    by_id: dict[int, str] = {}
    for i, ext in enumerate(extensions):
        where = f"{name}.headerExtensions[{i}]"
        require_dict(ext, where)
        uri = require_str(ext, "uri", name=f"{where}.uri")
        ext_id = require_int(ext, "id", 1, 255, name=f"{where}.id")
        if ext_id in by_id:
            raise ArgumentError(f"{where}.id {ext_id} is duplicated")
        by_id[ext_id] = uri
    return by_id


def check_encodings(rtp_parameters: dict, name: str) -> list[dict]:
    encodings = require_list(rtp_parameters, "encodings", name=f"{name}.encodings")
    for i, encoding in enumerate(encodings):
        where = f"{name}.encodings[{i}]"
        require_dict(encoding, where)
        optional_int(encoding, "ssrc", 0, MAX_SSRC, name=f"{where}.ssrc")
        rid = encoding.get("rid")
        if rid is not None and not isinstance(rid, str):
            raise ArgumentError(f"{where}.rid must be a string")
    return encodings


# -- lookup tables ----------------------------------------------------------------------------


# Extensions whose values name the sender's own m-line or encoding: forwarded as they are,
# a browser's demuxer routes the consumer's packets by the publisher's MID to whatever m-line
# of its own has that MID (the wrong receiver, or none: every packet of a subscription lost).
# They are blanked (relay does not grow packets to write the consumer's own MID; receivers
# then match the signalled SSRC).
SENDER_ONLY_EXTENSIONS = frozenset({
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
})


def extension_id_table(producer_ids: dict[int, str], consumer_ids: dict[int, str],
                       keep: frozenset[str] = frozenset()) -> bytes:
    """256 entries: producer id → the consumer's id for the same URI, 0 if not negotiated or
    sender-only (`SENDER_ONLY_EXTENSIONS`, except those in `keep`: a pipe carries RIDs)."""
    consumer_by_uri = {uri: ext_id for ext_id, uri in consumer_ids.items()
                       if uri not in SENDER_ONLY_EXTENSIONS or uri in keep}
    table = bytearray(256)
    for ext_id, uri in producer_ids.items():
        table[ext_id] = consumer_by_uri.get(uri, 0)
    return bytes(table)


def payload_type_table(
    producer_codecs: list[dict], mapped_pt: dict[int, int], consumer_codecs: list[dict]
) -> bytes:
    """128 entries: producer PT → consumer PT (via the mapped PT, else by mimeType/clockRate/
    channels), NO_PAYLOAD_TYPE for codecs the consumer did not take."""
    by_pt = {c["payloadType"]: c for c in consumer_codecs if is_media_codec(c)}
    by_format = {_format(c): c["payloadType"] for c in consumer_codecs if is_media_codec(c)}
    table = bytearray([NO_PAYLOAD_TYPE]) * 128
    for codec in producer_codecs:
        if not is_media_codec(codec):
            continue
        pt = codec["payloadType"]
        mapped = mapped_pt.get(pt)
        consumer_codec = by_pt.get(mapped) if mapped is not None else None
        if consumer_codec is not None and _format(consumer_codec) == _format(codec):
            table[pt] = mapped
        elif _format(codec) in by_format:
            table[pt] = by_format[_format(codec)]
    return bytes(table)


def _format(codec: dict) -> tuple[str, int, int]:
    return (codec["mimeType"].lower(), codec["clockRate"], codec.get("channels") or 1)


def has_feedback(codec: dict, fb_type: str, parameter: str = "") -> bool:
    """Whether `codec` negotiated RTCP feedback `fb_type` `parameter` (e.g. "nack", "")."""
    for fb in codec.get("rtcpFeedback") or []:
        if isinstance(fb, dict) and fb.get("type") == fb_type and (fb.get("parameter") or "") == parameter:
            return True
    return False


@dataclass
class ProducerParameters:
    """A produce request's parameters, checked (the transport checks SSRC clashes)."""

    kind: str
    rtp_parameters: dict
    codecs: list[dict]
    media: list[dict]  # the media codecs (not RTX/FEC/...), the first is the main one
    extensions: dict[int, str]  # id -> uri (the sender's ids)
    encodings: list[dict]
    mapped_pt: dict[int, int]  # the sender's PT -> the router's
    ssrcs: list[int | None]  # per encoding: signalled SSRC, or None (bound from packets)
    rids: list[str | None]
    mapped_ssrcs: list[int]
    rtx_apt: dict[int, int]  # RTX PT -> original PT (RFC 4588)
    rtx_ssrcs: list[int | None]  # per encoding: the sender's RTX SSRC, if signalled
    paused: bool


def parse_producer_parameters(data: dict) -> ProducerParameters:
    """Check a transport.produce request's data (rtpParameters and the controller's
    rtpMapping); raise ArgumentError naming the bad field."""
    kind = require_kind(data)
    rtp_parameters = require_dict(data.get("rtpParameters"), "rtpParameters")
    codecs = check_codecs(rtp_parameters, "rtpParameters")
    extensions = check_header_extensions(rtp_parameters, "rtpParameters")
    encodings = check_encodings(rtp_parameters, "rtpParameters")
    mapping = require_dict(data.get("rtpMapping"), "rtpMapping")
    mapped_codecs = require_list(mapping, "codecs", name="rtpMapping.codecs")
    mapped_encodings = require_list(mapping, "encodings", name="rtpMapping.encodings")
    paused = optional_bool(data, "paused", False)

    mapped_pt: dict[int, int] = {}
    for i, entry in enumerate(mapped_codecs):
        where = f"rtpMapping.codecs[{i}]"
        require_dict(entry, where)
        pt = require_int(entry, "payloadType", 0, 127, name=f"{where}.payloadType")
        mapped_pt[pt] = require_int(
            entry, "mappedPayloadType", 0, 127, name=f"{where}.mappedPayloadType"
        )
    for codec in codecs:
        if codec["payloadType"] not in mapped_pt:
            raise ArgumentError(f"rtpMapping.codecs has no entry for payloadType {codec['payloadType']}")
    media = [c for c in codecs if is_media_codec(c)]
    if not media:
        raise ArgumentError("rtpParameters.codecs has no media codec")
    for codec in media:
        if not codec["mimeType"].lower().startswith(kind + "/"):
            raise ArgumentError(f"codec {codec['mimeType']} does not match kind {kind!r}")
    if len(mapped_encodings) != len(encodings):
        raise ArgumentError("rtpMapping.encodings and rtpParameters.encodings differ in length")

    ssrcs: list[int | None] = []
    rids: list[str | None] = []
    mapped_ssrcs: list[int] = []
    for i, (encoding, entry) in enumerate(zip(encodings, mapped_encodings, strict=True)):
        where = f"rtpMapping.encodings[{i}]"
        require_dict(entry, where)
        mapped_ssrcs.append(require_int(entry, "mappedSsrc", 0, 0xFFFFFFFF, name=f"{where}.mappedSsrc"))
        ssrc = encoding.get("ssrc")
        if ssrc is None and entry.get("ssrc") is not None:
            ssrc = require_int(entry, "ssrc", 0, 0xFFFFFFFF, name=f"{where}.ssrc")
        rid = encoding.get("rid")
        if rid is None and entry.get("rid") is not None:
            rid = entry["rid"]
            if not isinstance(rid, str):
                raise ArgumentError(f"{where}.rid must be a string")
        if ssrc is None and not rid and len(encodings) > 1:
            raise ArgumentError(f"rtpParameters.encodings[{i}] has neither ssrc nor rid")
        ssrcs.append(ssrc)
        rids.append(rid or None)
    if len(set(mapped_ssrcs)) != len(mapped_ssrcs):
        raise ArgumentError("rtpMapping.encodings mappedSsrc values are duplicated")
    known = [s for s in ssrcs if s is not None]
    if len(set(known)) != len(known):
        raise ArgumentError("rtpParameters.encodings ssrc values are duplicated")
    named = [r for r in rids if r is not None]
    if len(set(named)) != len(named):
        raise ArgumentError("rtpParameters.encodings rid values are duplicated")

    # RTX (RFC 4588): the sender's RTX SSRC per encoding and RTX PT -> original PT.
    rtx_apt: dict[int, int] = {}
    for codec in codecs:
        if codec["mimeType"].lower().endswith("/rtx"):
            apt = (codec.get("parameters") or {}).get("apt")
            if isinstance(apt, int) and apt in mapped_pt:
                rtx_apt[codec["payloadType"]] = apt
    rtx_ssrcs: list[int | None] = []
    for i, encoding in enumerate(encodings):
        rtx = encoding.get("rtx")
        rtx_ssrc = None
        if isinstance(rtx, dict):
            rtx_ssrc = require_int(rtx, "ssrc", 0, 0xFFFFFFFF, name=f"rtpParameters.encodings[{i}].rtx.ssrc")
        rtx_ssrcs.append(rtx_ssrc)

    return ProducerParameters(kind, rtp_parameters, codecs, media, extensions, encodings,
                              mapped_pt, ssrcs, rids, mapped_ssrcs, rtx_apt, rtx_ssrcs, paused)
