"""Worker-side Producer: one sender's RTP streams on a transport, fanned out to its consumers.

`receive()` is the hot path. Consumers of a stream are grouped by header-extension id table
(usually one group: consumers get the router's ids): per inbound packet and group, the packet
is copied once into a scratch buffer and its extension ids rewritten once; then per consumer
only bytes 1–11 are rewritten (`RtpRewriter`), SRTP-protected if its transport has SRTP, and
queued in the send ring. The groups hold only active consumers (not paused, producer not
paused, remote known) and are rebuilt on every state change, so the loop has no checks for
those. The transport flushes the ring after its drain loop.

Streams: each encoding with an `ssrc` is matched by it. A single encoding without one (a plain
RTP sender whose SSRC isn't signalled) takes the first SSRC seen with one of its payload types,
and a later different SSRC with such a payload type replaces it (the sender restarted):
consumers then continue their sequence numbers and timestamps (see `relay.rtp.rewriter`).
Simulcast by `rid` is not supported yet (UnsupportedError).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import RTP_B1_SEQ_TS_SSRC, extension_bounds, rewrite_extension_ids
from relay.rtp.rewriter import NO_PAYLOAD_TYPE, InputStream
from relay.rtp.rtp_parameters import (
    check_codecs,
    check_encodings,
    check_header_extensions,
    is_media_codec,
    optional_bool,
    require_dict,
    require_int,
    require_kind,
    require_list,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import ConsumerEvent, ProducerMethod

if TYPE_CHECKING:
    from relay.transport.plain_transport import PlainTransport
    from relay.worker.consumer import Consumer
    from relay.worker.context import WorkerContext

SCRATCH_SIZE = 2048
_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into
# A learned stream switches to a new SSRC only after this long without packets from the old
# one, so two senders fighting over one producer can't flip it on every packet.
SSRC_SWITCH_SILENCE = 0.25


class Producer:
    def __init__(self, producer_id: str, transport: PlainTransport, data: dict, ctx: WorkerContext) -> None:
        self.kind = require_kind(data)
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
            if not codec["mimeType"].lower().startswith(self.kind + "/"):
                raise ArgumentError(f"codec {codec['mimeType']} does not match kind {self.kind!r}")
        if len(mapped_encodings) != len(encodings):
            raise ArgumentError("rtpMapping.encodings and rtpParameters.encodings differ in length")

        ssrcs: list[int | None] = []
        mapped_ssrcs: list[int] = []
        for i, (encoding, entry) in enumerate(zip(encodings, mapped_encodings, strict=True)):
            where = f"rtpMapping.encodings[{i}]"
            require_dict(entry, where)
            mapped_ssrcs.append(require_int(entry, "mappedSsrc", 0, 0xFFFFFFFF, name=f"{where}.mappedSsrc"))
            ssrc = encoding.get("ssrc")
            if ssrc is None and entry.get("ssrc") is not None:
                ssrc = require_int(entry, "ssrc", 0, 0xFFFFFFFF, name=f"{where}.ssrc")
            if ssrc is None and len(encodings) > 1:
                raise UnsupportedError("encodings without ssrc (rid-based simulcast) are not supported yet")
            ssrcs.append(ssrc)
        if len(set(mapped_ssrcs)) != len(mapped_ssrcs):
            raise ArgumentError("rtpMapping.encodings mappedSsrc values are duplicated")
        known = [s for s in ssrcs if s is not None]
        if len(set(known)) != len(known):
            raise ArgumentError("rtpParameters.encodings ssrc values are duplicated")
        for ssrc in known:
            if ssrc in transport.ssrc_table:
                raise ArgumentError(f"ssrc {ssrc} is already used by a producer of this transport")
        if ssrcs[0] is None and transport.any_ssrc_producer is not None:
            raise UnsupportedError("this transport already has a producer without a signalled ssrc")

        self.id = producer_id
        self.transport = transport
        self._ctx = ctx
        self.closed = False
        self.paused = paused
        self.rtp_parameters = rtp_parameters
        self.codecs = codecs
        self.mapped_pt = mapped_pt
        self.header_extensions = extensions  # id -> uri (the sender's ids)
        self.mapped_ssrcs = mapped_ssrcs
        self.clock_rate = media[0]["clockRate"]
        self._known_pt = bytes(1 if pt in mapped_pt else 0 for pt in range(128))
        self.streams = [InputStream(ssrc or 0) for ssrc in ssrcs]
        self._learned = ssrcs[0] is None  # single encoding, SSRC taken from packets
        self.consumers: list[Consumer] = []
        # Per stream: tuple of (extension table, tuple of active consumers).
        self._fanout: list[tuple[tuple[bytes, tuple[Any, ...]], ...]] = [() for _ in ssrcs]
        self._scratch = bytearray(SCRATCH_SIZE)
        self._scratch_view = memoryview(self._scratch)
        self.packets_received = 0
        self.bytes_received = 0
        self.dropped: Counter[str] = Counter()
        self.keyframe_requests_sent = 0
        self._created = time.monotonic()

        for index, ssrc in enumerate(ssrcs):
            if ssrc is not None:
                transport.ssrc_table[ssrc] = (self, index)
        if self._learned:
            transport.any_ssrc_producer = self
        ctx.handlers[producer_id] = self

    # -- requests ---------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> dict | list | None:
        if self.closed:
            raise InvalidStateError(f"producer {self.id} is closed")
        if method == ProducerMethod.CLOSE:
            self.close()
            return None
        if method == ProducerMethod.DUMP:
            return self.dump()
        if method == ProducerMethod.GET_STATS:
            return self.get_stats()
        if method == ProducerMethod.PAUSE:
            self.pause()
            return None
        if method == ProducerMethod.RESUME:
            self.resume()
            return None
        raise UnknownMethodError(f"a producer does not handle {method!r}")

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        for consumer in list(self.consumers):
            consumer.on_producer_pause()
        self.rebuild_fanout()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        wants_key_frame = False
        for consumer in list(self.consumers):
            consumer.on_producer_resume()
            wants_key_frame = wants_key_frame or consumer.active
        self.rebuild_fanout()
        if wants_key_frame and self.kind == "video":
            self.request_key_frame()

    # -- consumers ----------------------------------------------------------------------------

    def stream_index(self, mapped_ssrc: int | None) -> int:
        if mapped_ssrc is None:
            return 0
        try:
            return self.mapped_ssrcs.index(mapped_ssrc)
        except ValueError:
            raise ArgumentError(f"consumableRtpEncodings ssrc {mapped_ssrc} is not one of this producer's") from None

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.rebuild_fanout()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self.rebuild_fanout()

    def rebuild_fanout(self) -> None:
        """Regroup the active consumers of each stream by extension table (control path)."""
        fanout = []
        for index in range(len(self.streams)):
            groups: dict[bytes, list[Consumer]] = {}
            if not self.paused:
                for consumer in self.consumers:
                    if consumer.stream_index == index and consumer.active:
                        groups.setdefault(consumer.extension_table, []).append(consumer)
            fanout.append(tuple((table, tuple(members)) for table, members in groups.items()))
        self._fanout = fanout

    def request_key_frame(self) -> None:
        """PLI to the sender of every stream we have seen (through this producer's transport)."""
        if self.closed:
            return
        for stream in self.streams:
            if stream.started or not self._learned:
                if self.transport.send_pli(stream.ssrc):
                    self.keyframe_requests_sent += 1

    # -- inbound (hot) ------------------------------------------------------------------------

    def accepts_payload_type(self, pt: int) -> bool:
        return self._known_pt[pt] == 1

    def adopt_ssrc(self, ssrc: int) -> tuple[Producer, int] | None:
        """A learned stream sees a new SSRC: take it if the stream is new or the old SSRC has
        gone quiet; then re-sync its consumers (control-path rare event)."""
        stream = self.streams[0]
        table = self.transport.ssrc_table
        if stream.started:
            if time.monotonic() - stream.last_time < SSRC_SWITCH_SILENCE:
                return None
            for consumer in self.consumers:
                consumer.rewriter.stop(stream)
            table.pop(stream.ssrc, None)
        stream.reset(ssrc)
        table[ssrc] = (self, 0)
        return self, 0

    def receive(
        self, buf: memoryview, n: int, index: int, ssrc: int, seq: int, ts: int, now: float
    ) -> int:
        """Fan one validated inbound packet (`buf[:n]`, a view of the transport's receive
        buffer) out to the active consumers of stream `index`; return the sends queued."""
        self.packets_received += 1
        self.bytes_received += n
        b1 = buf[1]
        if not self._known_pt[b1 & 0x7F]:
            self.dropped["unknownPayloadType"] += 1
            return 0
        older = self.streams[index].update(seq, ts, now)
        groups = self._fanout[index]
        if not groups:
            if self.paused:
                self.dropped["paused"] += 1
            return 0
        scratch = self._scratch
        out = self._scratch_view[:n]
        send = self._ctx.ring.send
        pack_header = _pack_header
        sends = 0
        marker = b1 & 0x80
        pt_in = b1 & 0x7F
        has_extension = buf[0] & 0x10
        packet = buf[:n]
        for table, consumers in groups:
            out[:] = packet
            if has_extension:
                profile, start, end = extension_bounds(scratch, n)
                if not rewrite_extension_ids(scratch, start, end, profile, table):
                    self.dropped["malformedExtensions"] += 1
                    return sends
            for consumer in consumers:
                # RtpRewriter.rewrite(), inlined: a method call per consumer costs ~0.1 µs.
                rw = consumer.rewriter
                if rw.sync_required:
                    rw.sync(ssrc, seq, ts, now)
                elif older and (seq - rw.sync_seq) & 0xFFFF >= 0x8000:
                    consumer.dropped += 1
                    continue
                pt = rw.payload_types[pt_in]
                if pt == NO_PAYLOAD_TYPE:
                    consumer.dropped += 1
                    continue
                pack_header(
                    scratch,
                    1,
                    marker | pt,
                    (seq + rw.seq_offset) & 0xFFFF,
                    (ts + rw.ts_offset) & 0xFFFFFFFF,
                    rw.ssrc,
                )
                srtp = consumer.srtp
                if srtp is None:
                    data = out
                else:
                    data = srtp.protect_rtp(out, n)
                    if data is None:
                        consumer.dropped += 1
                        continue
                if send(consumer.fd, data, consumer.addr):
                    consumer.packets_sent += 1
                    consumer.bytes_sent += n
                    sends += 1
                else:
                    consumer.ring_drops += 1
        return sends

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "type": "simple",
            "paused": self.paused,
            "rtpParameters": self.rtp_parameters,
            "rtpMapping": {
                "codecs": [{"payloadType": p, "mappedPayloadType": m} for p, m in self.mapped_pt.items()],
                "encodings": [
                    {"ssrc": s.ssrc if (s.started or not self._learned) else None, "mappedSsrc": m}
                    for s, m in zip(self.streams, self.mapped_ssrcs, strict=True)
                ],
            },
            "consumerIds": [c.id for c in self.consumers],
        }

    def get_stats(self) -> list[dict]:
        stats = []
        for stream, mapped in zip(self.streams, self.mapped_ssrcs, strict=True):
            stats.append(
                {
                    "type": "inbound-rtp",
                    "timestamp": int(time.time() * 1000),
                    "kind": self.kind,
                    "ssrc": stream.ssrc if (stream.started or not self._learned) else None,
                    "mappedSsrc": mapped,
                    "mimeType": self.codecs[0]["mimeType"],
                    "highestSequenceNumber": stream.max_seq if stream.started else None,
                }
            )
        if stats:
            stats[0].update(
                packetCount=self.packets_received,
                byteCount=self.bytes_received,
                keyFrameRequestsSent=self.keyframe_requests_sent,
                dropped=dict(self.dropped),
                paused=self.paused,
            )
        return stats

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this producer; its consumers close too and each notifies "producerclose"."""
        if self.closed:
            return
        self.closed = True
        self._fanout = [() for _ in self.streams]
        for consumer in list(self.consumers):
            consumer.close(notify=ConsumerEvent.PRODUCER_CLOSE)
        self.consumers.clear()
        self.transport.unregister_producer(self)
        self.transport.router.remove_producer(self)
        self._ctx.handlers.pop(self.id, None)
