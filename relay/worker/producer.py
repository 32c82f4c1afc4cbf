"""Worker-side Producer: one sender's RTP streams on a transport, fanned out to its consumers.

One idea, the producer object and the state of its streams (over 500 lines for that): the
per-packet fan-out is `relay.worker.fanout`, VP8 temporal layers `relay.worker.temporal_layers`,
the checks of its parameters `relay.worker.rtp_parameters`, the binding of unknown SSRCs
`relay.transport.rtp_listener`, per-stream quality `relay.worker.stream_receiver`.

`receive()` is the hot path: per inbound packet and stream, the stream's bookkeeping, then
`fan_out` to the stream's groups of active consumers, which are rebuilt on every state change
(`rebuild_fanout`), so the loop has no checks for those. The transport flushes the ring after
its drain loop.

Streams: each encoding with an `ssrc` is matched by it. An encoding with a `rid` and no `ssrc`
(simulcast as mediasoup-client sends it) is bound to the first SSRC whose packets carry that
RID in the `rtp-stream-id` header extension, and its RTX SSRC to the first RTX packet carrying
it in `repaired-rtp-stream-id` (`relay.transport.rtp_listener`, reached only for unknown SSRCs;
after that the SSRC tables match as for signalled ones). A single encoding without either (a
plain RTP sender whose SSRC isn't signalled) takes the first SSRC seen with one of its payload
types. A later different SSRC for an unsignalled stream (or learned RTX SSRC) replaces the
old one once that has gone quiet (the sender restarted), and the old one leaves the table: the
transport's tables hold at most one SSRC and one RTX SSRC per encoding. Consumers then
continue their sequence numbers and timestamps (see `relay.rtp.rewriter`). Several encodings
are consumed by "simulcast" consumers.

Media quality, per inbound packet and stream (not per consumer): `StreamReceiver.on_packet`
(receive stats, key-frame detection, the shared retransmission store when a consumer
negotiated NACK, gap detection → NACK upstream with retries on a timer); key-frame requests
are coalesced (`KeyFrameRequester`); RTX from the sender is unwrapped (`receive_rtx`, reached
through the transport's `rtx_ssrc_table`, off the hot path); audio levels feed the router's
observers; `report_blocks()` builds the RR blocks and the stream scores ("score" event).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.audio_level import audio_level_from_packet
from relay.rtp.nack_buffer import RtpHeaderError, parse_rtx_packet
from relay.rtp.nack_generator import TIMER_INTERVAL as NACK_TIMER_INTERVAL
from relay.rtp.packet import (
    RTP_B1_SEQ_TS_SSRC,
    RTP_SEQ_TS_SSRC,
    rtp_payload_offset,
)
from relay.rtp.rewriter import InputStream
from relay.rtp.rtcp import RECEIVER_RTCP_SSRC, Nack, ReportBlock, SenderReport
from relay.uring import fanout_core, receive_core
from relay.worker.rtp_parameters import has_feedback, parse_producer_parameters
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import ConsumerEvent, ProducerEvent, ProducerMethod

from .fanout import CoreFanout, Group, build_groups, fan_out, split_groups
from .key_frame_requester import KeyFrameRequester
from .stream_core import CoreInputStream, CoreStreamReceiver
from .stream_receiver import StreamReceiver
from .temporal_layers import temporal_step

if TYPE_CHECKING:
    from relay.transport.base import Transport
    from relay.worker.consumer import Consumer
    from relay.worker.context import WorkerContext

SCRATCH_SIZE = 2048
_from_buffer = fanout_core.ffi.from_buffer
_pack_header = RTP_B1_SEQ_TS_SSRC.pack_into
# A learned stream switches to a new SSRC only after this long without packets from the old
# one, so two senders fighting over one producer can't flip it on every packet.
SSRC_SWITCH_SILENCE = 0.25
LAYER_CHECK_INTERVAL = 0.25  # seconds between simulcast consumers' layer checks
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def _extension_id(extensions: dict[int, str], uri: str) -> int:
    """The sender's id for header extension `uri` (0: not negotiated)."""
    return next((i for i, u in extensions.items() if u == uri), 0)


class Producer:
    def __init__(self, producer_id: str, transport: Transport, data: dict, ctx: WorkerContext) -> None:
        params = parse_producer_parameters(data)
        self.kind = params.kind
        codecs, encodings, mapped_pt = params.codecs, params.encodings, params.mapped_pt
        ssrcs, media = params.ssrcs, params.media
        for ssrc in ssrcs:
            if ssrc is not None and ssrc in transport.ssrc_table:
                raise ArgumentError(f"ssrc {ssrc} is already used by a producer of this transport")
        learned = len(encodings) == 1 and ssrcs[0] is None
        if learned and transport.any_ssrc_producer is not None:
            raise UnsupportedError("this transport already has a producer without a signalled ssrc")
        for rtx_ssrc in params.rtx_ssrcs:
            if rtx_ssrc is not None and (rtx_ssrc in transport.ssrc_table
                                         or rtx_ssrc in transport.rtx_ssrc_table):
                raise ArgumentError(f"rtx ssrc {rtx_ssrc} is already used on this transport")
        self.rtx_apt = params.rtx_apt
        self.rtx_ssrcs = params.rtx_ssrcs
        # Per stream: its RTX SSRC was signalled (never replaced), else learned from packets;
        # when the learned one last carried a packet (it is replaced only once quiet).
        self._rtx_signalled = [ssrc is not None for ssrc in params.rtx_ssrcs]
        self._rtx_last_time = [0.0 for _ in params.rtx_ssrcs]
        rtp_parameters, extensions, rids = params.rtp_parameters, params.extensions, params.rids
        mapped_ssrcs, paused = params.mapped_ssrcs, params.paused

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
        # The C receive core's struct per stream (None: the core is off): the transport's
        # SSRC table points the core at it; the state both paths share lives in it.
        # (Only where the transport drains through the core: elsewhere the struct's fields
        # would only make the Python path slower.)
        self.rx: list[Any] | None = (
            [receive_core.new_stream(self.clock_rate) for _ in ssrcs]
            if getattr(transport, "receive_core", None) is not None else None)
        self.streams: list[InputStream] = (
            [InputStream(ssrc or 0) for ssrc in ssrcs] if self.rx is None
            else [CoreInputStream(ssrc or 0, c) for ssrc, c in zip(ssrcs, self.rx, strict=True)])
        # Per stream: its SSRC was signalled (else it is bound from packets, by RID or as the
        # single unsignalled encoding; see relay.transport.rtp_listener).
        self.signalled = [ssrc is not None for ssrc in ssrcs]
        # Per unsignalled stream: the SSRC bound to it in the transport's ssrc_table, if any
        # (one at a time: a new one replaces it, so one sender can't fill the table).
        self._bound_ssrcs: list[int | None] = [None for _ in ssrcs]
        self.rids = rids
        self.mid: str | None = rtp_parameters.get("mid") if isinstance(rtp_parameters.get("mid"), str) else None
        self.mid_ext_id = _extension_id(extensions, MID_URI)
        self.rid_ext_id = _extension_id(extensions, RID_URI)
        self.rrid_ext_id = _extension_id(extensions, RRID_URI)
        self._learned = learned  # single encoding, SSRC taken from packets
        self.consumers: list[Consumer] = []
        self._fanout: list[tuple[Group, ...]] = [() for _ in ssrcs]  # per stream
        # per stream: the C core's groups (None: none); the Python loop sends to the rest
        self._core: list[CoreFanout | None] = [None for _ in ssrcs]
        self._ring = ctx.ring
        self._packet_buf: Any = None  # the receive buffer `_packet_ptr` points into
        self._packet_ptr: Any = None
        # Per stream: parse the VP8 TID of each packet (some consumer filters temporal layers)
        self._tid_parse = [False for _ in ssrcs]
        self._is_vp8 = self.kind == "video" and media[0]["mimeType"].lower() == "video/vp8"
        self._scratch = bytearray(SCRATCH_SIZE)
        self._scratch_view = memoryview(self._scratch)
        self._packets_received = 0  # (plus what the C receive core counted: the properties)
        self._bytes_received = 0
        self.dropped: Counter[str] = Counter()
        self._created = time.monotonic()
        main = media[0]
        self.nack_enabled = has_feedback(main, "nack")
        if self.rx is None:
            self.receivers = [
                StreamReceiver(self.kind, main["mimeType"], self.clock_rate, self.nack_enabled)
                for _ in ssrcs
            ]
        else:
            slot = transport.max_rtp_size
            self.receivers = [
                CoreStreamReceiver(self.kind, main["mimeType"], self.clock_rate,
                                   self.nack_enabled, c, slot)
                for c in self.rx
            ]
            for c in self.rx:
                fanout_core.ffi.memmove(c.known_pt, self._known_pt, 128)
        self.nacks_sent = 0  # NACK packets sent upstream
        self.probe_packets = 0  # RTX padding / copies of received packets (bandwidth probes)
        self._layer_timer: Any = None
        self.first_packet_time: float | None = None  # monotonic, of any stream
        # Audio observers fed from the ssrc-audio-level extension (the sender's id for it).
        self.level_observers: tuple[Any, ...] = ()
        self._audio_level_id = next(
            (i for i, uri in extensions.items() if uri == AUDIO_LEVEL_URI), 0
        )
        self._nack_timer: Any = None
        self.key_frames = KeyFrameRequester(
            ctx.loop,
            transport.send_rtcp,
            self._seen_ssrcs,
            self._consumers_waiting,
            use_fir=has_feedback(main, "ccm", "fir") and not has_feedback(main, "nack", "pli"),
            sender_ssrc=RECEIVER_RTCP_SSRC,
        )

        for index, ssrc in enumerate(ssrcs):
            if ssrc is not None:
                transport.ssrc_table[ssrc] = (self, index)
        if self._learned:
            transport.any_ssrc_producer = self
        for index, rtx_ssrc in enumerate(self.rtx_ssrcs):
            if rtx_ssrc is not None:
                transport.rtx_ssrc_table[rtx_ssrc] = (self, index)
        ctx.handlers[producer_id] = self
        self._update_receive_core()

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
        self._arm_layer_timer()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self.rebuild_fanout()

    def rebuild_fanout(self) -> None:
        """Regroup the active consumers of each stream (`relay.worker.fanout.build_groups`)
        and decide per stream whether VP8 TIDs must be parsed and packets stored for NACK
        (control path). A consumer waiting for a key frame is left out until one comes."""
        split = [((), None) if self.paused else split_groups(build_groups(self.consumers, index))
                 for index in range(len(self.streams))]
        self._fanout = [python for python, _ in split]
        self._core = [core for _, core in split]
        for index in range(len(self.streams)):
            self._tid_parse[index] = self._is_vp8 and any(
                c.max_tid < 3 or c.pending_max_tid is not None
                for c in self.consumers if c.stream_index == index
            )
            self.receivers[index].enable_store(
                any(c.nack_enabled for c in self.consumers if c.stream_index == index)
            )
        self._update_receive_core()

    def _update_receive_core(self) -> None:
        """Tell the C receive core what it may do with each stream's packets (control path:
        after every change of the fan-out groups, pause, observers or close). It takes a
        stream's packets whole only when nothing per packet needs Python: no consumer on
        the Python fan-out, no VP8 temporal-layer parsing, no audio-level observer, a key
        frame detector it has (VP8) or none, not paused; the rest of the time, and for
        every rare packet, it hands the packet to `receive`."""
        if self.rx is None:
            return
        null = fanout_core.ffi.NULL
        for index, c in enumerate(self.rx):
            core = None if self.closed else self._core[index]
            c.groups = core.table.groups if core is not None else null
            c.ngroups = core.table.count if core is not None else 0
            c.fast = int(not self.closed and not self.paused and not self._fanout[index]
                         and not self._tid_parse[index]
                         and not (self.level_observers and self._audio_level_id)
                         and self.receivers[index].takes_all)

    def media_queued(self, index: int) -> None:
        """The C receive core took a packet of stream `index` and the fan-out core framed
        it into an ICE-TCP connection's buffer that wants writing (`FC_STREAM_QUEUED`)."""
        core = self._core[index]
        if core is not None:
            core.media_queued()

    @property
    def packets_received(self) -> int:
        rx = self.rx
        return self._packets_received + (sum(c.packets for c in rx) if rx else 0)

    @property
    def bytes_received(self) -> int:
        rx = self.rx
        return self._bytes_received + (sum(c.bytes for c in rx) if rx else 0)

    def request_key_frame(self) -> None:
        """A key frame from the sender (coalesced: one request in flight, see
        `KeyFrameRequester`), to every stream we have seen."""
        if self.closed:
            return
        self.key_frames.request()

    @property
    def keyframe_requests_sent(self) -> int:
        return self.key_frames.requests_sent

    def _seen_ssrcs(self) -> list[int]:
        return [s.ssrc for s, signalled in zip(self.streams, self.signalled, strict=True)
                if s.started or signalled]

    def _consumers_waiting(self) -> bool:
        return any((c.key_frame_pending or c.switch_target is not None) and c.active
                   for c in self.consumers)

    def _on_stream_start(self, index: int) -> None:
        """Stream `index` got its first packet (rare): consumers waiting for a key frame ask
        its sender now (a request made before any SSRC was known reached nobody)."""
        if self.first_packet_time is None:
            self.first_packet_time = time.monotonic()
        if self._consumers_waiting() and not self.key_frames.pending:
            self.key_frames.request()

    def _arm_layer_timer(self) -> None:
        """Simulcast consumers check every LAYER_CHECK_INTERVAL that their layer still flows
        (control path; runs only while there are simulcast consumers)."""
        if self._layer_timer is None and not self.closed and len(self.streams) > 1 \
                and any(c.consumer_type == "simulcast" for c in self.consumers):
            self._layer_timer = self._ctx.loop.call_later(LAYER_CHECK_INTERVAL,
                                                          self._on_layer_timer)

    def _on_layer_timer(self) -> None:
        self._layer_timer = None
        if self.closed:
            return
        now = time.monotonic()
        for consumer in list(self.consumers):
            if consumer.consumer_type == "simulcast":
                consumer.check_layers(now)
        self._arm_layer_timer()

    def _on_key_frame(self, index: int) -> None:
        """A key frame starts on stream `index`: the request is answered, and consumers
        waiting for one start with this packet."""
        self.key_frames.on_key_frame()
        changed = False
        for consumer in self.consumers:
            if consumer.on_key_frame(index):
                changed = True
        if changed:
            self.rebuild_fanout()

    # -- audio observers -----------------------------------------------------------------------

    def add_level_observer(self, observer: Any) -> None:
        if observer not in self.level_observers:
            self.level_observers = (*self.level_observers, observer)
            self._update_receive_core()

    def remove_level_observer(self, observer: Any) -> None:
        self.level_observers = tuple(o for o in self.level_observers if o is not observer)
        self._update_receive_core()

    def _feed_audio_level(self, buf: memoryview, n: int) -> None:
        if not self._audio_level_id:
            return
        level = audio_level_from_packet(buf[:n], self._audio_level_id)
        if level is None:
            return
        voice, value = level
        for observer in self.level_observers:
            observer.on_level(self.id, value, voice)

    # -- NACK upstream ------------------------------------------------------------------------

    def _nack_upstream(self, index: int, lost: list[int]) -> None:
        packet = Nack(RECEIVER_RTCP_SSRC, self.streams[index].ssrc, lost).serialize()
        if self.transport.send_rtcp(packet):
            self.nacks_sent += 1
        if self._nack_timer is None and not self.closed:
            self._nack_timer = self._ctx.loop.call_later(NACK_TIMER_INTERVAL, self._on_nack_timer)

    def _on_nack_timer(self) -> None:
        self._nack_timer = None
        if self.closed:
            return
        now = time.monotonic()
        pending = False
        for index, receiver in enumerate(self.receivers):
            generator = receiver.nack
            if generator is None:
                continue
            rtt = self.stream_rtt(index)
            if rtt is not None:
                generator.set_rtt(rtt)
            due = generator.on_timer(now)
            if due:
                self._nack_upstream(index, due)
            if generator.take_keyframe_request():
                self.request_key_frame()
            pending = pending or len(generator) > 0
        if pending and self._nack_timer is None:
            self._nack_timer = self._ctx.loop.call_later(NACK_TIMER_INTERVAL, self._on_nack_timer)

    # -- RTCP (control path) ------------------------------------------------------------------

    def on_sender_report(self, index: int, report: SenderReport, now: float) -> None:
        self.receivers[index].stats.on_sender_report(report, now)

    def on_xr_rtt(self, index: int | None, rtt: float) -> None:
        """The sender answered our RRTR (XR DLRR): the RTT of stream `index`, or of every
        stream when the XR came from an SSRC that is none of them (one sender, one path)."""
        receivers = self.receivers if index is None else [self.receivers[index]]
        for receiver in receivers:
            receiver.rtt = rtt

    def stream_rtt(self, index: int) -> float | None:
        """Seconds: from the sender's XR DLRR if it answers our RRTRs, else the transport's
        (from the RRs of consumers on the same transport), else None."""
        rtt = self.receivers[index].rtt
        return rtt if rtt is not None else getattr(self.transport, "rtt", None)

    def report_blocks(self, now: float) -> list[ReportBlock]:
        """RR report blocks for every stream receiving; updates the scores ("score" event)."""
        blocks = []
        changed = False
        for index, (stream, receiver) in enumerate(zip(self.streams, self.receivers, strict=True)):
            if not stream.started or receiver.stats.expected == 0:
                continue
            block = receiver.stats.report_block(stream.ssrc, now)
            blocks.append(block)
            changed = receiver.score.update_from_fraction_lost(
                block.fraction_lost, self.stream_rtt(index)) or changed
            receiver.update_bitrate(now)
        if changed and not self.closed:
            self._ctx.notify(self.id, ProducerEvent.SCORE, self.scores())
            for consumer in self.consumers:
                consumer.on_producer_score()
        return blocks

    def scores(self) -> list[dict]:
        return [
            {"encodingIdx": i, "ssrc": s.ssrc, "rid": self.rids[i], "score": r.score.score}
            for i, (s, r) in enumerate(zip(self.streams, self.receivers, strict=True))
            if s.started
        ]

    # -- inbound (hot) ------------------------------------------------------------------------

    def accepts_payload_type(self, pt: int) -> bool:
        return self._known_pt[pt] == 1

    def adopt_ssrc(self, ssrc: int) -> tuple[Producer, int] | None:
        """The single unsignalled stream sees a new SSRC (see `bind_stream`)."""
        return self.bind_stream(0, ssrc)

    def bind_stream(self, index: int, ssrc: int) -> tuple[Producer, int] | None:
        """Stream `index` (unsignalled: learned, or matched by RID) sees a new SSRC: take it
        if the stream has none yet or its SSRC has gone quiet (the sender restarted its
        encoder); the old SSRC leaves the table, so a stream holds one entry at most; then
        re-sync its consumers (control-path rare event). None: not now."""
        stream = self.streams[index]
        table = self.transport.ssrc_table
        if self.signalled[index] or ssrc in table:
            return None
        if stream.started:
            if time.monotonic() - stream.last_time < SSRC_SWITCH_SILENCE:
                return None
            for consumer in self.consumers:
                if consumer.stream_index == index:
                    consumer.rewriter.stop(stream)
        old = self._bound_ssrcs[index]
        if old is not None and table.get(old) == (self, index):
            del table[old]
        stream.reset(ssrc)
        self.receivers[index].reset()
        table[ssrc] = (self, index)
        self._bound_ssrcs[index] = ssrc
        return self, index

    def bind_rtx(self, index: int, ssrc: int) -> bool:
        """An RTX packet names stream `index` (repaired-rtp-stream-id, or MID for a single
        stream): its SSRC becomes that stream's RTX SSRC, replacing a learned one that has
        gone quiet for SSRC_SWITCH_SILENCE (as media SSRCs; a signalled one stays), which
        leaves the table (control path)."""
        table = self.transport.rtx_ssrc_table
        if self._rtx_signalled[index] or ssrc in table or ssrc in self.transport.ssrc_table:
            return False
        now = time.monotonic()
        old = self.rtx_ssrcs[index]
        if old is not None:
            if now - self._rtx_last_time[index] < SSRC_SWITCH_SILENCE:
                return False
            if table.get(old) == (self, index):
                del table[old]
        self.rtx_ssrcs[index] = ssrc
        self._rtx_last_time[index] = now
        table[ssrc] = (self, index)
        return True

    def rid_index(self, rid: str) -> int | None:
        """The encoding with RID `rid`, if any."""
        try:
            return self.rids.index(rid)
        except ValueError:
            return None

    def is_rtx_payload_type(self, pt: int) -> bool:
        return pt in self.rtx_apt

    def receive(
        self, buf: memoryview, n: int, index: int, ssrc: int, seq: int, ts: int, now: float,
        rtx: bool = False,
    ) -> int:
        """Fan one validated inbound packet (`buf[:n]`, a view of the transport's receive
        buffer) out to the active consumers of stream `index`; return the sends queued.
        `rtx`: it was recovered from an RTX packet (kept out of the jitter estimate)."""
        self._packets_received += 1
        self._bytes_received += n
        if not self._known_pt[buf[1] & 0x7F]:
            self.dropped["unknownPayloadType"] += 1
            return 0
        stream = self.streams[index]
        started = stream.started
        older = stream.update(seq, ts, now)
        if not started:
            self._on_stream_start(index)
        keyframe, lost = self.receivers[index].on_packet(buf, n, seq, ts, now, rtx)
        if keyframe:
            self._on_key_frame(index)
        if lost is not None:
            self._nack_upstream(index, lost)
        if self.level_observers and not self.paused:
            self._feed_audio_level(buf, n)
        tid = self._temporal_step(buf, n, index) if self._tid_parse[index] else 0
        groups = self._fanout[index]
        core = self._core[index]
        if core is None:
            if not groups:
                if self.paused:
                    self.dropped["paused"] += 1
                return 0
            return fan_out(groups, buf[:n], n, ssrc, seq, ts, older, tid,
                           n - rtp_payload_offset(buf, n), now, self._scratch,
                           self._scratch_view, self.dropped)
        # The C core: one call for all its consumers. The C pointer to a transport's receive
        # buffer is made once (`buf` views all of it; from the buffer itself, not the view:
        # a cdata over a view in a reference cycle crashed CPython's GC).
        obj = buf.obj
        if obj is not self._packet_buf:
            if type(obj) is bytearray and len(obj) == buf.nbytes:
                self._packet_buf = obj
                self._packet_ptr = _from_buffer("unsigned char[]", obj)
            else:
                self._packet_buf = None
                self._packet_ptr = _from_buffer("unsigned char[]", buf)
        payload_size = n - rtp_payload_offset(buf, n)
        sends = core.fan_out(self._ring.core, self._packet_ptr, n, ssrc, seq, ts, older, tid, payload_size,
                             now, self.dropped)
        if groups:
            sends += fan_out(groups, buf[:n], n, ssrc, seq, ts, older, tid, payload_size, now,
                             self._scratch, self._scratch_view, self.dropped)
        return sends

    def _temporal_step(self, buf: memoryview, n: int, index: int) -> int:
        tid, changed = temporal_step(self.consumers, buf, n, index)
        if changed:
            self.rebuild_fanout()
        return tid

    def receive_rtx(self, buf: memoryview, n: int, index: int, now: float) -> int:
        """An RTX packet (RFC 4588) from the sender: unwrap it into the original stream and
        forward it like any (late) packet. Malformed or unexpected ones are counted."""
        stream = self.streams[index]
        self._rtx_last_time[index] = now  # its RTX SSRC is live (bind_rtx)
        apt = self.rtx_apt.get(buf[1] & 0x7F)
        if apt is None:
            self.dropped["rtxUnknownPayloadType"] += 1
            return 0
        if not stream.started:
            self.dropped["rtxBeforeMedia"] += 1
            return 0
        offset = rtp_payload_offset(buf, n)
        if offset < 0:
            self.dropped["rtxMalformed"] += 1
            return 0
        if n - offset < 2 + (buf[n - 1] if buf[0] & 0x20 else 0):
            # Padding only (no original sequence number): a sender's bandwidth probe.
            self.probe_packets += 1
            return 0
        osn = (buf[offset] << 8) | buf[offset + 1]
        nack = self.receivers[index].nack
        if nack is None or not nack.is_missing(osn):
            # A copy of a packet we have (nobody NACKed it): a sender's bandwidth probe
            # (browsers probe with RTX of recent packets). Not media: not forwarded, not
            # counted as received, lost, or a key frame.
            self.probe_packets += 1
            return 0
        try:
            original = parse_rtx_packet(buf[:n], apt, stream.ssrc)
        except RtpHeaderError:
            self.dropped["rtxMalformed"] += 1
            return 0
        self.receivers[index].rtx_packets += 1
        seq, ts, _ = RTP_SEQ_TS_SSRC.unpack_from(original, 2)
        return self.receive(memoryview(original), len(original), index, stream.ssrc, seq, ts, now,
                            True)

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "type": "simulcast" if len(self.streams) > 1 else "simple",
            "paused": self.paused,
            "rtpParameters": self.rtp_parameters,
            "rtpMapping": {
                "codecs": [{"payloadType": p, "mappedPayloadType": m} for p, m in self.mapped_pt.items()],
                "encodings": [
                    {"ssrc": s.ssrc if (s.started or signalled) else None,
                     **({"rid": rid} if rid is not None else {}), "mappedSsrc": m}
                    for s, signalled, rid, m in zip(self.streams, self.signalled, self.rids,
                                                    self.mapped_ssrcs, strict=True)
                ],
            },
            "consumerIds": [c.id for c in self.consumers],
        }

    def get_stats(self) -> list[dict]:
        stats = []
        for i, (stream, mapped) in enumerate(zip(self.streams, self.mapped_ssrcs, strict=True)):
            receiver = self.receivers[i]
            rs = receiver.stats
            nack = receiver.nack
            entry = {
                "type": "inbound-rtp",
                "timestamp": int(time.time() * 1000),
                "kind": self.kind,
                "ssrc": stream.ssrc if (stream.started or self.signalled[i]) else None,
                "rid": self.rids[i],
                "rtxSsrc": self.rtx_ssrcs[i],
                "mappedSsrc": mapped,
                "mimeType": self.codecs[0]["mimeType"],
                "highestSequenceNumber": stream.max_seq if stream.started else None,
                "packetsReceived": rs.received,
                "bytesReceived": rs.bytes_received,
                "packetsLost": rs.cumulative_lost,
                "packetsExpected": rs.expected,
                "jitter": rs.jitter,
                "roundTripTime": self.stream_rtt(i),
                "score": receiver.score.score,
                "bitrate": receiver.bitrate,  # bits/s over the last RTCP report interval
                "keyFrames": receiver.keyframes,
                "rtxPacketsReceived": receiver.rtx_packets,
                "nackCount": nack.stats.nacks_sent if nack is not None else 0,
                "packetsRecovered": nack.stats.recovered if nack is not None else 0,
                "packetsGivenUp": nack.stats.given_up if nack is not None else 0,
                "retransmissionStore": (
                    {"stored": receiver.store.stats.stored, "hits": receiver.store.stats.hits,
                     "tooOld": receiver.store.stats.too_old, "evicted": receiver.store.stats.evicted,
                     "notStored": receiver.store.stats.not_stored}
                    if receiver.store is not None else None
                ),
            }
            stats.append(entry)
        if stats:
            stats[0].update(
                packetCount=self.packets_received,
                byteCount=self.bytes_received,
                nackPacketsSent=self.nacks_sent,
                keyFrameRequestsSent=self.keyframe_requests_sent,
                keyFrameRequestsCoalesced=self.key_frames.coalesced,
                keyFrameRequestsDeferred=self.key_frames.deferred,
                probePackets=self.probe_packets,
                dropped=self._dropped(),
                paused=self.paused,
            )
        return stats

    def _dropped(self) -> dict[str, int]:
        dropped = Counter(self.dropped)
        if self.rx is not None:
            malformed = sum(c.malformed_extensions for c in self.rx)
            if malformed:
                dropped["malformedExtensions"] += malformed
        return dict(dropped)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this producer; its consumers close too and each notifies "producerclose"."""
        if self.closed:
            return
        self.closed = True
        self._fanout = [() for _ in self.streams]
        self._core = [None for _ in self.streams]
        self._update_receive_core()
        self.key_frames.close()
        for observer in self.level_observers:
            observer.remove_producer(self)
        if self._nack_timer is not None:
            self._nack_timer.cancel()
            self._nack_timer = None
        if self._layer_timer is not None:
            self._layer_timer.cancel()
            self._layer_timer = None
        for consumer in list(self.consumers):
            consumer.close(notify=ConsumerEvent.PRODUCER_CLOSE)
        self.consumers.clear()
        self.transport.unregister_producer(self)
        self.transport.router.remove_producer(self)
        self._ctx.handlers.pop(self.id, None)
