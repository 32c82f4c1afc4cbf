"""Producer / consumer set-up with NACK and RTX for the quality tests (worker in-process)."""

from __future__ import annotations

from media_harness import MAPPED_SSRC, PRODUCER_SSRC, VP8_DELTA_FRAME, VP8_KEY_FRAME, rtp

NACK_FB = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
           {"type": "ccm", "parameter": "fir"}]
PRODUCER_RTX_SSRC = 1112
CONSUMER_SSRC = 4242
CONSUMER_RTX_SSRC = 4243
CONSUMER_RTX_PT = 102


def produce_video(media, transport_id: str, producer_id: str = "p1", nack: bool = True,
                  rtx: bool = True) -> dict:
    codecs = [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
               "rtcpFeedback": NACK_FB if nack else []}]
    mapping = [{"payloadType": 96, "mappedPayloadType": 101}]
    encoding: dict = {"ssrc": PRODUCER_SSRC}
    if rtx:
        codecs.append({"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                       "parameters": {"apt": 96}})
        mapping.append({"payloadType": 97, "mappedPayloadType": 102})
        encoding["rtx"] = {"ssrc": PRODUCER_RTX_SSRC}
    return media.request(transport_id, "transport.produce", {
        "producerId": producer_id, "kind": "video",
        "rtpParameters": {"codecs": codecs, "headerExtensions": [], "encodings": [encoding],
                          "rtcp": {"cname": "publisher"}},
        "rtpMapping": {"codecs": mapping,
                       "encodings": [{"ssrc": PRODUCER_SSRC, "mappedSsrc": MAPPED_SSRC}]},
    })


def consume_video(media, transport_id: str, consumer_id: str = "c1", producer_id: str = "p1",
                  nack: bool = True, rtx: bool = True, ssrc: int = CONSUMER_SSRC) -> dict:
    codecs = [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
               "rtcpFeedback": NACK_FB if nack else []}]
    encoding: dict = {"ssrc": ssrc}
    if rtx:
        codecs.append({"mimeType": "video/rtx", "payloadType": CONSUMER_RTX_PT,
                       "clockRate": 90000, "parameters": {"apt": 101}})
        encoding["rtx"] = {"ssrc": ssrc + 1}
    return media.request(transport_id, "transport.consume", {
        "consumerId": consumer_id, "producerId": producer_id, "kind": "video",
        "rtpParameters": {"codecs": codecs, "headerExtensions": [], "encodings": [encoding],
                          "rtcp": {"cname": "relay-" + consumer_id}},
        "type": "simple", "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}],
    })


def video_packet(seq: int, key: bool = False, ssrc: int = PRODUCER_SSRC) -> bytes:
    """A VP8 packet whose payload names its sequence number (so repairs can be checked)."""
    body = (VP8_KEY_FRAME if key else VP8_DELTA_FRAME) + seq.to_bytes(2, "big")
    return rtp(seq, seq * 3000, ssrc=ssrc, pt=96, payload=body)
