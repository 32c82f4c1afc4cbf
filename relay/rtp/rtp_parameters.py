"""Checks and lookup tables for the ORTC/mediasoup-shaped dictionaries of worker requests.

Every check raises `ArgumentError` naming the bad field. The tables built here are what the
packet path indexes: 128-entry payload-type tables and 256-entry header-extension-id tables.
"""

from __future__ import annotations

from typing import Any

from relay.rtp.rewriter import NO_PAYLOAD_TYPE
from worker_proto.errors import ArgumentError

MAX_SSRC = 0xFFFFFFFF


# -- generic request fields -------------------------------------------------------------------


def require_dict(data: Any, name: str) -> dict:
    if not isinstance(data, dict):
        raise ArgumentError(f"{name} must be an object")
    return data


def require_str(data: dict, key: str, *, name: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"{name or key} must be a non-empty string")
    return value


def require_int(data: dict, key: str, low: int, high: int, *, name: str | None = None) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ArgumentError(f"{name or key} must be an integer in {low}–{high}, got {value!r}")
    return value


def optional_int(data: dict, key: str, low: int, high: int, *, name: str | None = None) -> int | None:
    if data.get(key) is None:
        return None
    return require_int(data, key, low, high, name=name)


def optional_bool(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ArgumentError(f"{key} must be a boolean, got {value!r}")
    return value


def require_list(data: dict, key: str, *, name: str | None = None, allow_empty: bool = False) -> list:
    value = data.get(key)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise ArgumentError(f"{name or key} must be a{'n' if allow_empty else ' non-empty'} array")
    return value


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


def extension_id_table(producer_ids: dict[int, str], consumer_ids: dict[int, str]) -> bytes:
    """256 entries: producer id → the consumer's id for the same URI, 0 if not negotiated."""
    consumer_by_uri = {uri: ext_id for ext_id, uri in consumer_ids.items()}
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
