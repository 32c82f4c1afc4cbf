"""What a scenario is, as plain data: streams (one per synthetic producer), sinks (one UDP
socket per receiving peer), which sink receives which stream, and how streams group into
send transports and rooms. Targets (relay, reflector) build themselves from this."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.rtp.transport_cc import TRANSPORT_CC_URI

AUDIO_PACKET_SIZE = 200
AUDIO_PPS_PER_STREAM = 50
VIDEO_PACKET_SIZE = 1200
VIDEO_FPS = 30
OPUS_PAYLOAD_TYPE = 111
VP8_PAYLOAD_TYPE = 96
AUDIO_LEVEL_EXT_ID = 1
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
SSRC_BASE = 0x10000000
TRANSPORT_CC_EXT_ID = 5  # the router's preferred id, as a browser would take it

ROUTER_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]


@dataclass
class Room:
    """One router: its send transports (each a list of stream ids) and its sinks."""

    send_groups: list[list[int]]
    sinks: list[int]


@dataclass
class Scenario:
    name: str  # "fanout" or "rooms"
    kind: str  # "audio" or "video"
    streams: int
    sinks: int
    rooms: list[Room]
    consumers: list[tuple[int, int]] = field(default_factory=list)  # (sink, stream)

    @property
    def packet_size(self) -> int:
        return AUDIO_PACKET_SIZE if self.kind == "audio" else VIDEO_PACKET_SIZE

    @property
    def fanout_per_stream(self) -> list[int]:
        counts = [0] * self.streams
        for _, stream in self.consumers:
            counts[stream] += 1
        return counts

    def streams_of_sink(self, sink: int) -> list[int]:
        return [stream for s, stream in self.consumers if s == sink]

    def sinks_of_group(self, group: list[int]) -> list[int]:
        wanted = set(group)
        return sorted({s for s, stream in self.consumers if stream in wanted})

    def describe(self) -> str:
        if self.name == "fanout":
            return f"fan-out 1 -> {self.sinks} {self.kind}" + (
                f" ({self.streams} streams)" if self.streams > 1 else "")
        participants = len(self.rooms[0].sinks)
        return f"rooms {len(self.rooms)} x {participants} {self.kind}"

    def transports_needed(self) -> int:
        return sum(len(room.send_groups) + len(room.sinks) for room in self.rooms)


def fanout(kind: str, consumers: int, streams: int = 1) -> Scenario:
    """One send transport with ``streams`` producers; ``consumers`` peers receive them all."""
    room = Room(send_groups=[list(range(streams))], sinks=list(range(consumers)))
    pairs = [(sink, stream) for sink in range(consumers) for stream in range(streams)]
    return Scenario("fanout", kind, streams, consumers, [room], pairs)


def rooms(kind: str, room_count: int, participants: int) -> Scenario:
    """``room_count`` routers of ``participants`` peers; each peer sends one stream and
    receives every other peer's stream in its room."""
    room_list, pairs = [], []
    for r in range(room_count):
        ids = [r * participants + p for p in range(participants)]
        room_list.append(Room(send_groups=[[i] for i in ids], sinks=list(ids)))
        pairs += [(sink, stream) for sink in ids for stream in ids if sink != stream]
    total = room_count * participants
    return Scenario("rooms", kind, total, total, room_list, pairs)


# What a browser's producer negotiates with --quality on: NACK, and PLI/FIR for video.
AUDIO_FEEDBACK = [{"type": "nack", "parameter": ""}]
VIDEO_FEEDBACK = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
                  {"type": "ccm", "parameter": "fir"}]

# With --transport-cc on: the transport-wide sequence number extension and its feedback.
TRANSPORT_CC_FEEDBACK = {"type": "transport-cc", "parameter": ""}
TRANSPORT_CC_EXTENSION = {"uri": TRANSPORT_CC_URI, "id": TRANSPORT_CC_EXT_ID}


def producer_rtp_parameters(kind: str, stream: int, feedback: bool = True,
                            transport_cc: bool = False, transport_cc_extension: bool = False
                            ) -> dict:
    """``feedback``: NACK (and PLI/FIR for video); ``transport_cc``: the transport-wide
    sequence number extension and "transport-cc" feedback, as browsers negotiate them;
    ``transport_cc_extension``: the extension alone (no feedback)."""
    ssrc = SSRC_BASE + stream
    if kind == "audio":
        codec = {"mimeType": "audio/opus", "payloadType": OPUS_PAYLOAD_TYPE,
                 "clockRate": 48000, "channels": 2,
                 "rtcpFeedback": list(AUDIO_FEEDBACK) if feedback else []}
        extensions = [{"uri": AUDIO_LEVEL_URI, "id": AUDIO_LEVEL_EXT_ID}]
    else:
        codec = {"mimeType": "video/VP8", "payloadType": VP8_PAYLOAD_TYPE, "clockRate": 90000,
                 "rtcpFeedback": list(VIDEO_FEEDBACK) if feedback else []}
        extensions = []
    if transport_cc:
        codec["rtcpFeedback"].append(dict(TRANSPORT_CC_FEEDBACK))
    if transport_cc or transport_cc_extension:
        extensions.append(dict(TRANSPORT_CC_EXTENSION))
    return {"codecs": [codec], "headerExtensions": extensions, "encodings": [{"ssrc": ssrc}],
            "rtcp": {"cname": f"loadtest-{stream}"}}


def negotiated_transport_cc(rtp_parameters: dict) -> bool:
    """Whether producer parameters carry both the extension and the feedback type."""
    return any(ext.get("uri") == TRANSPORT_CC_URI
               for ext in rtp_parameters.get("headerExtensions", [])) and \
        any(fb.get("type") == "transport-cc" for codec in rtp_parameters.get("codecs", [])
            for fb in codec.get("rtcpFeedback", []))


def consumer_rtp_capabilities(router_capabilities: dict, feedback: bool = True) -> dict:
    """The receiving peers' capabilities: the router's, without any RTCP feedback when
    feedback is off (no NACK, no PLI: the worker keeps no retransmission store)."""
    if feedback:
        return router_capabilities
    return {**router_capabilities,
            "codecs": [{**codec, "rtcpFeedback": []} for codec in router_capabilities["codecs"]]}
