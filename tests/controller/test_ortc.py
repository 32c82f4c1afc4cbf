"""ortc: mediasoup's decisions on capabilities and parameters, on plain dictionaries."""

from __future__ import annotations

import copy

import pytest

from relay.controller import ortc
from worker_proto.errors import ArgumentError, UnsupportedError

OPUS = {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
VP8 = {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
H264 = {"kind": "video", "mimeType": "video/H264", "clockRate": 90000,
        "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}}


def test_router_capabilities_assign_payload_types_like_mediasoup():
    caps = ortc.generate_router_rtp_capabilities(
        [OPUS, VP8, {"kind": "audio", "mimeType": "audio/PCMU", "clockRate": 8000}, H264])
    got = [(c["mimeType"], c["preferredPayloadType"], c.get("parameters")) for c in caps["codecs"]]
    assert got == [
        ("audio/opus", 100, {}),
        ("video/VP8", 101, {}),
        ("video/rtx", 102, {"apt": 101}),
        ("audio/PCMU", 0, {}),
        ("video/H264", 103, {"level-asymmetry-allowed": 1, "packetization-mode": 1,
                             "profile-level-id": "42e01f"}),
        ("video/rtx", 104, {"apt": 103}),
    ]
    assert caps["codecs"][0]["channels"] == 2 and "channels" not in caps["codecs"][1]


def test_router_offers_nack_for_opus_like_mediasoup():
    caps = ortc.generate_router_rtp_capabilities([OPUS, VP8])
    fb = {c["mimeType"]: [(f["type"], f["parameter"]) for f in c["rtcpFeedback"]]
          for c in caps["codecs"]}
    assert fb["audio/opus"] == [("nack", ""), ("transport-cc", "")]
    assert ("nack", "pli") in fb["video/VP8"]


def test_router_capabilities_keep_a_preferred_payload_type():
    caps = ortc.generate_router_rtp_capabilities([{**OPUS, "preferredPayloadType": 111}, VP8])
    assert [c["preferredPayloadType"] for c in caps["codecs"]] == [111, 100, 101]


def test_inputs_are_not_modified():
    codecs = [copy.deepcopy(OPUS)]
    ortc.generate_router_rtp_capabilities(codecs)
    assert codecs == [OPUS]


@pytest.mark.parametrize("codecs, error", [
    ([{"mimeType": "audio/opus", "clockRate": 48000, "channels": 6}], UnsupportedError),
    ([{"mimeType": "text/plain", "clockRate": 1}], ArgumentError),
    ([{"mimeType": "audio/opus", "clockRate": "48000"}], ArgumentError),
    ([{"mimeType": "audio/opus", "clockRate": 48000, "channels": 2,
       "parameters": {"x": [1]}}], ArgumentError),
    ([{**OPUS, "preferredPayloadType": 100}, {**OPUS, "preferredPayloadType": 100}],
     ArgumentError),  # duplicated preferredPayloadType
    (None, ArgumentError),
])
def test_router_capabilities_errors(codecs, error):
    with pytest.raises(error):
        ortc.generate_router_rtp_capabilities(codecs)


def _producer(caps, params):
    params = ortc.validate_rtp_parameters(params)
    mapping = ortc.get_producer_rtp_parameters_mapping(params, caps)
    return params, mapping, ortc.get_consumable_rtp_parameters(
        "video" if params["codecs"][0]["mimeType"].startswith("video") else "audio",
        params, caps, mapping)


def test_producer_mapping_and_consumable_parameters():
    caps = ortc.generate_router_rtp_capabilities([OPUS, VP8])
    params, mapping, consumable = _producer(caps, {
        "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                   {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                    "parameters": {"apt": 96}}],
        "encodings": [{"ssrc": 1000, "rtx": {"ssrc": 1001}}],
        "rtcp": {"cname": "c"}})
    assert mapping["codecs"] == [{"payloadType": 96, "mappedPayloadType": 101},
                                 {"payloadType": 97, "mappedPayloadType": 102}]
    (encoding,) = mapping["encodings"]
    assert encoding["ssrc"] == 1000 and 100_000_000 <= encoding["mappedSsrc"] <= 999_999_999
    assert [c["payloadType"] for c in consumable["codecs"]] == [101, 102]
    assert consumable["encodings"] == [{"ssrc": encoding["mappedSsrc"], "dtx": False}]
    assert consumable["rtcp"] == {"cname": "c", "reducedSize": True}
    uris = {e["uri"] for e in consumable["headerExtensions"]}
    assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" not in uris  # recvonly
    assert ortc.TRANSPORT_CC_URI in uris


def test_producer_with_unknown_codec_or_orphan_rtx():
    caps = ortc.generate_router_rtp_capabilities([OPUS])
    with pytest.raises(UnsupportedError):
        _producer(caps, {"codecs": [{"mimeType": "video/VP8", "payloadType": 96,
                                     "clockRate": 90000}], "encodings": [{"ssrc": 1}]})
    caps = ortc.generate_router_rtp_capabilities([VP8])
    with pytest.raises(ArgumentError):
        _producer(caps, {"codecs": [
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
            {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
             "parameters": {"apt": 95}}], "encodings": [{"ssrc": 1}]})


RID_EXTENSIONS = [
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 2},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 3},
]


def _rid_simulcast_params(encodings):
    """What mediasoup-client sends for simulcast: rids, no ssrcs, RTX without an ssrc."""
    return {"mid": "0",
            "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
                       {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                        "parameters": {"apt": 96}}],
            "headerExtensions": RID_EXTENSIONS, "encodings": encodings, "rtcp": {"cname": "c"}}


def test_rid_simulcast_mapping_and_consumable_parameters():
    caps = ortc.generate_router_rtp_capabilities([VP8])
    encodings = [{"rid": "r0", "scalabilityMode": "L1T3", "maxBitrate": 100_000},
                 {"rid": "r1", "scalabilityMode": "L1T3", "maxBitrate": 300_000},
                 {"rid": "r2", "scalabilityMode": "L1T3", "maxBitrate": 900_000}]
    params, mapping, consumable = _producer(caps, _rid_simulcast_params(encodings))
    # The mapping keeps each rid next to its own mapped SSRC (no ssrc: it is bound from packets).
    assert [e.get("rid") for e in mapping["encodings"]] == ["r0", "r1", "r2"]
    assert all("ssrc" not in e for e in mapping["encodings"])
    mapped = [e["mappedSsrc"] for e in mapping["encodings"]]
    assert len(set(mapped)) == 3
    # The consumable side knows no rids: one router SSRC per encoding, in encoding order.
    assert [e["ssrc"] for e in consumable["encodings"]] == mapped
    assert all("rid" not in e and "rtx" not in e for e in consumable["encodings"])
    assert [e["maxBitrate"] for e in consumable["encodings"]] == [100_000, 300_000, 900_000]
    uris = {e["uri"] for e in consumable["headerExtensions"]}
    assert not uris & {"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                       "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"}
    # A consumer gets one stream; the encodings show as spatial layers in its mode.
    consumer = ortc.get_consumer_rtp_parameters(consumable, caps, enable_rtx=True)
    (encoding,) = consumer["encodings"]
    assert encoding["scalabilityMode"] == "L3T3"
    assert encoding["maxBitrate"] == 900_000
    assert encoding["ssrc"] not in mapped and encoding["rtx"]["ssrc"] == encoding["ssrc"] + 1
    # Without a temporal mode each layer has one temporal layer.
    _, _, plain = _producer(caps, _rid_simulcast_params([{"rid": "a"}, {"rid": "b"}]))
    assert ortc.get_consumer_rtp_parameters(plain, caps)["encodings"][0]["scalabilityMode"] == "L2T1"


@pytest.mark.parametrize("encodings", [
    [{"rid": "r0"}, {"rid": "r0"}],  # duplicated rid
    [{"rid": "r0"}, {}],  # neither ssrc nor rid
    [{"ssrc": 5}, {"ssrc": 5}],  # duplicated ssrc
], ids=["duplicated-rid", "no-ssrc-no-rid", "duplicated-ssrc"])
def test_rid_simulcast_bad_encodings(encodings):
    caps = ortc.generate_router_rtp_capabilities([VP8])
    with pytest.raises(ArgumentError):
        _producer(caps, _rid_simulcast_params(encodings))


def test_rid_must_be_a_string():
    with pytest.raises(ArgumentError):
        ortc.validate_rtp_parameters(_rid_simulcast_params([{"rid": 1}, {"rid": 2}]))


def test_h264_profiles_must_match():
    caps = ortc.generate_router_rtp_capabilities([H264])
    base = {"mimeType": "video/H264", "payloadType": 96, "clockRate": 90000,
            "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}}
    _producer(caps, {"codecs": [base], "encodings": [{"ssrc": 1}]})
    high = {**base, "parameters": {"packetization-mode": 1, "profile-level-id": "640032"}}
    with pytest.raises(UnsupportedError):
        _producer(caps, {"codecs": [high], "encodings": [{"ssrc": 1}]})
    mode0 = {**base, "parameters": {"profile-level-id": "42e01f"}}
    with pytest.raises(UnsupportedError):
        _producer(caps, {"codecs": [mode0], "encodings": [{"ssrc": 1}]})


def test_can_consume_and_consumer_parameters():
    caps = ortc.generate_router_rtp_capabilities([OPUS, VP8])
    _, _, consumable = _producer(caps, {
        "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                    "rtcpFeedback": [{"type": "nack"}]}],
        "headerExtensions": [{"uri": ortc.ABS_SEND_TIME_URI, "id": 3}],
        "encodings": [{"ssrc": 5, "maxBitrate": 500000}], "rtcp": {"cname": "x"}})
    assert ortc.can_consume(consumable, caps)
    assert not ortc.can_consume(consumable, {"codecs": [OPUS]})
    assert not ortc.can_consume(consumable, {})
    params = ortc.get_consumer_rtp_parameters(consumable, caps)
    assert [c["mimeType"] for c in params["codecs"]] == ["video/VP8"]  # RTX off by default
    fb = {(f["type"], f["parameter"]) for f in params["codecs"][0]["rtcpFeedback"]}
    assert ("nack", "") not in fb and ("nack", "pli") in fb and ("ccm", "fir") in fb
    assert ("goog-remb", "") not in fb  # transport-cc present → REMB dropped
    (encoding,) = params["encodings"]
    assert encoding["maxBitrate"] == 500000 and "rtx" not in encoding
    with_rtx = ortc.get_consumer_rtp_parameters(consumable, caps, enable_rtx=True)
    assert [c["mimeType"] for c in with_rtx["codecs"]] == ["video/VP8", "video/rtx"]
    assert with_rtx["encodings"][0]["rtx"]["ssrc"] == with_rtx["encodings"][0]["ssrc"] + 1
    with pytest.raises(UnsupportedError):
        ortc.get_consumer_rtp_parameters(consumable, {"codecs": [OPUS]})


@pytest.mark.parametrize("params", [
    {"codecs": [{"mimeType": "audio/opus", "clockRate": 48000}]},  # no payloadType
    {"codecs": [], "encodings": [{"ssrc": -1}]},
    {"codecs": [], "encodings": [{"ssrc": True}]},
    {"codecs": [], "headerExtensions": [{"uri": "u", "id": 0}]},
    {"codecs": [], "headerExtensions": [{"id": 1}]},
    {"codecs": [], "rtcp": {"cname": 3}},
    {"codecs": [], "mid": 1},
    {"codecs": [], "encodings": [{"rtx": {}}]},
    {"codecs": [{"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                 "parameters": {"apt": "96"}}]},
])
def test_validate_rtp_parameters_rejects(params):
    with pytest.raises(ArgumentError):
        ortc.validate_rtp_parameters(params)


def test_validate_rtp_parameters_fills_defaults():
    params = ortc.validate_rtp_parameters(
        {"codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000}],
         "encodings": [{"ssrc": 1}]})
    assert params["codecs"][0]["channels"] == 1
    assert params["codecs"][0]["parameters"] == {} and params["codecs"][0]["rtcpFeedback"] == []
    assert params["headerExtensions"] == [] and params["encodings"] == [{"ssrc": 1, "dtx": False}]
    assert params["rtcp"] == {"reducedSize": True}
