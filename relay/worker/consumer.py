"""Worker-side Consumer: one producer stream re-sent to a transport's remote with the
consumer's own SSRC, payload types, header-extension ids and continuous seq/ts. This class is
the "simple" consumer; `relay.worker.simulcast_consumer` adds layers (one of several producer
streams at a time, VP8 temporal layers).

Media quality: a video consumer that (re)starts waits for a key frame (`key_frame_pending`,
left out of the fan-out until then); NACKs from its remote are answered from the producer
stream's shared store (`relay.worker.retransmission`), as RTX when negotiated; its remote's
RRs give its loss, jitter, RTT and 0-10 score ("score" event); it builds its SR
(`sender_report`) and answers its remote's XR RRTR with a DLRR (`dlrr_report`, RFC 3611).

The packet path itself is `relay.worker.fanout`; this object holds what that loop reads
(`rewriter`, `extension_table`, `fd`, `addr`, `srtp`, counters) and keeps the producer's
fan-out groups in step with its state: a consumer is *active* (receives packets) when
neither it nor its producer is paused and its transport knows its remote.

Header extensions the consumer did not negotiate are neutralised in place (overwritten with
padding zeros, which receivers skip), not removed: the packet keeps its length and nothing
moves. mediasoup removes them; the effect on a receiver is the same.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from relay.rtp.nack_buffer import RtxStream
from relay.rtp.receive_stats import compact_ntp, rtt_from_report_block
from relay.rtp.rewriter import NO_PAYLOAD_TYPE
from relay.rtp.rtcp import (
    RECEIVER_RTCP_SSRC,
    DlrrSubBlock,
    ExtendedReport,
    ReportBlock,
    SenderReport,
)
from relay.rtp.score import StreamScore
from relay.rtp.transport_cc import TRANSPORT_CC_URI
from relay.uring import fanout_core
from relay.uring.rewriter import RtpRewriter
from relay.uring.vp8_rewriter import Vp8PictureRewriter
from relay.worker.rtp_parameters import (
    check_codecs,
    check_encodings,
    check_header_extensions,
    extension_id_table,
    has_feedback,
    is_media_codec,
    payload_type_table,
    require_kind,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import ConsumerEvent, ConsumerMethod
from worker_proto.validation import optional_bool, optional_int, require_dict, require_int

from .retransmission import ResendHistory, retransmit

if TYPE_CHECKING:
    from relay.transport.base import Transport
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer


class Consumer:
    # Slots: the fan-out loop reads and bumps these for every packet and consumer.
    __slots__ = (
        "id", "kind", "transport", "producer", "_ctx", "closed", "paused", "producer_paused",
        "rtp_parameters", "ssrc", "stream_index", "extension_table", "rewriter",
        "keyframe_requests", "core", "in_core", "media_stream", "py_packets_sent",
        "py_bytes_sent", "py_payload_bytes", "py_dropped", "py_ring_drops",
        "fd", "addr", "srtp", "send", "active", "tcc_id", "tcc_history", "vp8",
        # media quality (see relay.worker.retransmission, relay.transport.rtcp_reporter)
        "nack_enabled", "rtx", "key_frame_pending", "retransmitted_packets",
        "retransmitted_bytes", "nack_misses", "nacks_received", "nack_packets_requested",
        "plis_received", "firs_received", "score", "rtt", "remote_fraction_lost",
        "remote_packets_lost", "remote_jitter", "cname", "clock_rate", "bitrate",
        "_bitrate_bytes", "_bitrate_time", "_rrtr",
        # resend limits (issue 16): see relay.worker.retransmission
        "nack_suppressed", "resend_history", "retransmission_share", "_bitrate_rtx_bytes",
        # simulcast (see set_preferred_layers)
        "type", "layer_streams", "target_spatial", "current_spatial", "switch_target",
        # bandwidth (relay.worker.bitrate_allocation)
        "priority", "congestion_key_frame_at", "congestion_key_frames", "bwe_allocated", "bwe_spatial_limit", "bwe_downgraded_at",
        # VP8 temporal layers: packets with a TID above `max_tid` are not sent (see Producer)
        "max_tid", "pending_max_tid", "py_temporal_drops",
    )

    def __init__(
        self,
        consumer_id: str,
        transport: Transport,
        producer: Producer,
        data: dict,
        ctx: WorkerContext,
    ) -> None:
        kind = require_kind(data)
        if kind != producer.kind:
            raise ArgumentError(f"kind {kind!r} does not match the producer's {producer.kind!r}")
        consumer_type = data.get("type", "simple")
        if consumer_type not in ("simple", "simulcast"):
            raise UnsupportedError(
                f"consumer type {consumer_type!r} is not supported ('simple' or 'simulcast')")
        rtp_parameters = require_dict(data.get("rtpParameters"), "rtpParameters")
        codecs = check_codecs(rtp_parameters, "rtpParameters")
        extensions = check_header_extensions(rtp_parameters, "rtpParameters")
        encodings = check_encodings(rtp_parameters, "rtpParameters")
        ssrc = require_int(encodings[0], "ssrc", 0, 0xFFFFFFFF, name="rtpParameters.encodings[0].ssrc")
        consumable = data.get("consumableRtpEncodings")
        mapped_ssrc = None
        if consumable is not None:
            if not isinstance(consumable, list) or not consumable:
                raise ArgumentError("consumableRtpEncodings must be a non-empty array")
            first = require_dict(consumable[0], "consumableRtpEncodings[0]")
            mapped_ssrc = optional_int(first, "ssrc", 0, 0xFFFFFFFF, name="consumableRtpEncodings[0].ssrc")
        paused = optional_bool(data, "paused", False)
        if producer.closed:
            raise InvalidStateError(f"producer {producer.id} is closed")
        if consumer_type != self.consumer_type:
            raise ArgumentError(f"type {consumer_type!r} needs a {consumer_type} consumer")
        stream_index = producer.stream_index(mapped_ssrc)
        layer_streams, target_spatial, pending_max_tid = self._choose_layers(
            data, kind, producer, consumable or [], stream_index)
        stream_index = layer_streams[target_spatial]
        pt_table = payload_type_table(producer.codecs, producer.mapped_pt, codecs)
        if all(pt == NO_PAYLOAD_TYPE for pt in pt_table):
            raise ArgumentError("rtpParameters.codecs has no codec of the producer")
        media = [c for c in codecs if is_media_codec(c)]
        nack_enabled = any(has_feedback(c, "nack") for c in media)
        rtx = None
        rtx_encoding = encodings[0].get("rtx")
        if isinstance(rtx_encoding, dict) and nack_enabled:
            rtx_ssrc = require_int(rtx_encoding, "ssrc", 0, 0xFFFFFFFF, name="rtpParameters.encodings[0].rtx.ssrc")
            rtx_codec = next(
                (c for c in codecs if c["mimeType"].lower().endswith("/rtx")
                 and (c.get("parameters") or {}).get("apt") == media[0]["payloadType"]),
                None,
            )
            if rtx_codec is not None:
                # RFC 3550 5.1: a random initial sequence number.
                rtx = RtxStream(rtx_ssrc, rtx_codec["payloadType"], int.from_bytes(os.urandom(2), "big"))

        self.id = consumer_id
        self.kind = kind
        self.transport = transport
        self.producer = producer
        self._ctx = ctx
        self.closed = False
        self.paused = paused
        self.producer_paused = producer.paused
        self.rtp_parameters = rtp_parameters
        self.ssrc = ssrc
        self.stream_index = stream_index
        self.extension_table = extension_id_table(producer.header_extensions, extensions)
        self.rewriter = RtpRewriter(ssrc, pt_table, media[0]["clockRate"])
        # What the C fan-out core reads of this consumer (its rewriter's struct, which the
        # consumer keeps alive), and its send counters (below).
        self.core = fanout_core.new_consumer()
        self.core.rw = self.rewriter.c
        self.in_core = False
        self.media_stream: Any = None  # the transport's stream buffer's owner (_write_route)
        self.py_packets_sent = self.py_bytes_sent = self.py_payload_bytes = 0
        self.py_dropped = self.py_ring_drops = 0
        self.packets_sent = 0
        self.bytes_sent = 0
        self.dropped = 0  # by the rewriter (codec not taken, reordered across a restart) or SRTP
        self.ring_drops = 0
        self.keyframe_requests = 0
        self.fd, self.addr, self.srtp = transport.route()
        # transport-wide-cc: this consumer's extension id, and the transport's send history
        # that numbers what it sends (relay.transport.send_estimation); 0 / None: not numbered
        self.priority = 1
        # VP8 PictureID/TL0PICIDX continuity across layer switches (simulcast consumers)
        self.vp8: Vp8PictureRewriter | None = (
            Vp8PictureRewriter(self.rewriter)
            if self.consumer_type == "simulcast" and media[0]["mimeType"].lower() == "video/vp8"
            else None)
        self.congestion_key_frame_at = -1e9  # a key frame instead of resends (retransmission)
        self.congestion_key_frames = 0
        self.bwe_allocated: int | None = None  # the bitrate allocation's latest layer
        self.bwe_spatial_limit: int | None = None  # ... in effect (after the hysteresis)
        self.bwe_downgraded_at: float | None = None
        self.tcc_id = next((i for i, uri in extensions.items() if uri == TRANSPORT_CC_URI), 0)
        estimation = transport.send_estimation
        self.tcc_history = estimation.history if estimation is not None and self.tcc_id else None
        # the C arrays the core numbers into (relay.transport.core_send_history)
        core_ring = getattr(self.tcc_history, "core_ring", None)
        self.core.tcc = core_ring().c if core_ring is not None else fanout_core.ffi.NULL
        # The ring's send, unless the transport sends another way (ICE-TCP: copy sends).
        self.send = getattr(transport, "media_send", None) or ctx.ring.send
        self._write_route()
        self.active = False
        self.nack_enabled = nack_enabled
        self.rtx = rtx
        self.key_frame_pending = False
        self.payload_bytes = 0  # RTP payload octets sent (the SR's octet count)
        self.retransmitted_packets = 0
        self.retransmitted_bytes = 0
        self.nack_misses = 0  # NACKed packets we could not resend (too old, gone, never sent)
        self.nacks_received = 0  # NACK packets
        self.nack_packets_requested = 0  # sequence numbers in them
        self.nack_suppressed = 0  # NACKed packets not resent: too soon or too often again
        self.resend_history: ResendHistory | None = None  # made at the first NACK
        self.plis_received = 0
        self.firs_received = 0
        self.score = StreamScore()
        self.rtt: float | None = None
        self.remote_fraction_lost = 0
        self.remote_packets_lost = 0
        self.remote_jitter = 0
        rtcp = rtp_parameters.get("rtcp")
        cname = rtcp.get("cname") if isinstance(rtcp, dict) else None
        self.cname = cname if isinstance(cname, str) else None
        self.clock_rate = media[0]["clockRate"]
        self.bitrate = 0
        self._bitrate_bytes = 0
        self._bitrate_time: float | None = None
        # retransmitted share of the bytes sent over the last report interval (0..1)
        self.retransmission_share = 0.0
        self._bitrate_rtx_bytes = 0
        # (remote SSRC, LRR, arrival) of the remote's last XR RRTR, answered in our next report
        self._rrtr: tuple[int, int, float] | None = None
        self.type = consumer_type
        self.layer_streams = layer_streams
        self.target_spatial = target_spatial
        self.current_spatial: int | None = None
        self.switch_target: int | None = None  # stream index to switch to on its next key frame
        self.max_tid = ALL_TEMPORAL_LAYERS
        # applied at the next start of a TL0 frame (relay.worker.temporal_layers)
        self.pending_max_tid = pending_max_tid if pending_max_tid != ALL_TEMPORAL_LAYERS else None
        self.temporal_drops = 0

        if RECEIVER_RTCP_SSRC in (ssrc, rtx.ssrc if rtx is not None else None):
            raise ArgumentError(f"ssrc {RECEIVER_RTCP_SSRC} is the relay's own RTCP sender SSRC")
        transport.register_consumer(self)  # raises on a duplicate SSRC, before anything else
        ctx.handlers[consumer_id] = self
        self.active = self._is_active()
        if self.active:
            self.key_frame_pending = self._needs_key_frame()
        producer.add_consumer(self)
        if self.active:
            self.request_key_frame()  # a video receiver can't start without one

    # -- requests ---------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> Any:
        if self.closed:
            raise InvalidStateError(f"consumer {self.id} is closed")
        if method == ConsumerMethod.CLOSE:
            self.close(notify=None)
            return None
        if method == ConsumerMethod.DUMP:
            return self.dump()
        if method == ConsumerMethod.GET_STATS:
            return self.get_stats()
        if method == ConsumerMethod.PAUSE:
            self.pause()
            return None
        if method == ConsumerMethod.RESUME:
            self.resume()
            return None
        if method == ConsumerMethod.REQUEST_KEY_FRAME:
            self.request_key_frame()
            return None
        if method == ConsumerMethod.SET_PRIORITY:
            self.priority = require_int(require_dict(data, "data"), "priority", 1, 255)
            return {"priority": self.priority}
        if method == ConsumerMethod.SET_PREFERRED_LAYERS:
            return self.set_preferred_layers(require_dict(data, "data"))
        raise UnknownMethodError(f"a consumer does not handle {method!r}")

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        self._refresh()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self._refresh():
            self.request_key_frame()

    def request_key_frame(self) -> None:
        """A video consumer asks its producer's sender for a key frame (audio: nothing)."""
        if self.kind == "video" and not self.closed:
            self.keyframe_requests += 1
            self.producer.request_key_frame()

    # -- state changes from the producer / transport -----------------------------------------

    def on_producer_pause(self) -> None:
        self.producer_paused = True
        self._refresh(rebuild=False)  # the producer rebuilds once for all
        self._ctx.notify(self.id, ConsumerEvent.PRODUCER_PAUSE, None)

    def on_producer_resume(self) -> None:
        self.producer_paused = False
        self._refresh(rebuild=False)
        self._ctx.notify(self.id, ConsumerEvent.PRODUCER_RESUME, None)

    def update_route(self) -> None:
        """The transport's remote or SRTP session changed."""
        self.fd, self.addr, self.srtp = self.transport.route()
        self.send = getattr(self.transport, "media_send", None) or self._ctx.ring.send
        in_core, stream = self.in_core, self.media_stream
        self._write_route()
        if self._refresh():
            self.request_key_frame()
        elif (in_core != self.in_core or stream is not self.media_stream) and self.active:
            self.producer.rebuild_fanout()  # (the core's fan-out tells its stream buffers' owners)

    # -- what the C fan-out core reads (relay.worker.fanout.CoreFanout) -----------------------

    def _write_route(self) -> None:
        """The core's copy of where this consumer sends (an ICE-TCP remote, a batching pipe:
        the transport's `media_stream`, whose buffer the core frames into); whether the core
        takes it at all (not when switched off, or the remote has no address the ring can
        send to)."""
        c = self.core
        self.media_stream = getattr(self.transport, "media_stream", None)
        c.stream = (self.media_stream.media_buffer.c if self.media_stream is not None
                    else fanout_core.ffi.NULL)
        c.fd = self.fd if self.fd is not None else -1
        dst = None
        if self.addr is not None:
            try:
                dst = self._ctx.ring.address(self.addr)
            except ValueError:
                dst = None
        fanout_core.set_address(c, dst)
        c.srtp = self.srtp.core if self.srtp is not None else fanout_core.ffi.NULL
        self.in_core = fanout_core.ENABLED and dst is not None

    # The send counters: what the C core counted in the consumer's struct plus what the
    # Python loop counted (`py_*`: a cffi field per packet would cost it 3,000 instructions).
    @property
    def packets_sent(self) -> int:
        return self.core.packets_sent + self.py_packets_sent

    @packets_sent.setter
    def packets_sent(self, value: int) -> None:
        self.core.packets_sent = 0
        self.py_packets_sent = value

    @property
    def bytes_sent(self) -> int:
        return self.core.bytes_sent + self.py_bytes_sent

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self.core.bytes_sent = 0
        self.py_bytes_sent = value

    @property
    def payload_bytes(self) -> int:
        return self.core.payload_bytes + self.py_payload_bytes

    @payload_bytes.setter
    def payload_bytes(self, value: int) -> None:
        self.core.payload_bytes = 0
        self.py_payload_bytes = value

    @property
    def dropped(self) -> int:
        return self.core.dropped + self.py_dropped

    @dropped.setter
    def dropped(self, value: int) -> None:
        self.core.dropped = 0
        self.py_dropped = value

    @property
    def temporal_drops(self) -> int:
        return self.core.temporal_drops + self.py_temporal_drops

    @temporal_drops.setter
    def temporal_drops(self, value: int) -> None:
        self.core.temporal_drops = 0
        self.py_temporal_drops = value

    @property
    def ring_drops(self) -> int:
        return self.core.ring_drops + self.py_ring_drops

    @ring_drops.setter
    def ring_drops(self, value: int) -> None:
        self.core.ring_drops = 0
        self.py_ring_drops = value

    def _is_active(self) -> bool:
        return not (self.closed or self.paused or self.producer_paused or self.addr is None)

    def _needs_key_frame(self) -> bool:
        """A video consumer (re)starting sends nothing until a key frame (when the codec
        lets us see one)."""
        return self.producer.receivers[self.stream_index].detector is not None

    def _refresh(self, rebuild: bool = True) -> bool:
        """Recompute `active`; on a stop remember where the output got to. True if the
        consumer just became active."""
        was_active = self.active
        self.active = self._is_active()
        if was_active and not self.active:
            self.rewriter.stop(self.producer.streams[self.stream_index])
        if self.active and not was_active:
            self.key_frame_pending = self._needs_key_frame()
        if rebuild and was_active != self.active:
            self.producer.rebuild_fanout()
        return self.active and not was_active

    # -- layers (a simulcast consumer has them: relay.worker.simulcast_consumer) ---------------

    consumer_type = "simple"

    def _choose_layers(self, data: dict, kind: str, producer: Producer, consumable: list,
                       stream_index: int) -> tuple[list[int], int, int | None]:
        """(producer stream per spatial layer, target spatial layer, VP8 TID to reach or
        None): one stream, no layers."""
        return [stream_index], 0, None

    def set_preferred_layers(self, data: dict) -> dict:
        raise UnsupportedError("only a simulcast consumer has layers")

    def preferred_layers(self) -> dict | None:
        return None

    def current_layers(self) -> dict | None:
        return None

    def target_layers(self) -> dict | None:
        return None

    def set_bwe_limit(self, spatial: int, now: float) -> None:
        """The bitrate allocation's highest spatial layer for this consumer (one stream: no
        choice)."""

    def on_key_frame(self, index: int) -> bool:
        """A key frame starts on producer stream `index`: start now if we were waiting for
        it. True if the fan-out must be rebuilt."""
        if self.key_frame_pending and self.stream_index == index:
            self.key_frame_pending = False
            return True
        return False

    def on_temporal_drop(self, seq: int) -> None:
        """A packet (input `seq`, in order) is not sent for its TID: the next one takes its
        output number (called by the Python fan-out loop for each consumer of the group; the
        C core does the same itself)."""
        self.py_temporal_drops += 1
        self.rewriter.skip(seq)

    # -- RTCP from the consumer's remote (control path) ---------------------------------------

    def on_nack(self, lost: list[int], now: float) -> int:
        """A NACK for our output seqs `lost`: resend what we can; returns the number resent."""
        self.nacks_received += 1
        self.nack_packets_requested += len(lost)
        if not self.nack_enabled or self.closed:
            self.nack_misses += len(lost)
            return 0
        return retransmit(self, lost, now, self._ctx.ring)

    def on_key_frame_request(self, fir: bool) -> None:
        if fir:
            self.firs_received += 1
        else:
            self.plis_received += 1
        self.request_key_frame()

    def on_report_block(self, block: ReportBlock, arrival_ntp: int) -> float | None:
        """A report block about our stream from the remote: loss, jitter, RTT; score."""
        self.remote_fraction_lost = block.fraction_lost
        self.remote_packets_lost = block.packets_lost
        self.remote_jitter = block.jitter
        rtt = rtt_from_report_block(block, arrival_ntp)
        if rtt is not None:
            self.rtt = rtt
        if self.score.update_from_fraction_lost(block.fraction_lost, self.rtt):
            self._notify_score()
        return rtt

    def on_producer_score(self) -> None:
        self._notify_score()

    def _notify_score(self) -> None:
        if self.closed:
            return
        receiver = self.producer.receivers[self.stream_index]
        self._ctx.notify(self.id, ConsumerEvent.SCORE, {
            "score": self.score.score,
            "producerScore": receiver.score.score,
            "producerScores": [r.score.score for r in self.producer.receivers],
        })

    def sender_report(self, ntp: int, now: float) -> SenderReport | None:
        """Our SR at wall-clock `ntp`: RTP time mapped from the producer's SR (else from the
        last forwarded packet and the time since), plus our timestamp offset; our counts."""
        rw = self.rewriter
        if not rw.started or self.packets_sent == 0:
            return None
        stream = self.producer.streams[self.stream_index]
        mapping = self.producer.receivers[self.stream_index].stats.mapping()
        if mapping is not None:
            rtp_ts = mapping.rtp_timestamp_at(ntp)
        else:
            rtp_ts = stream.max_ts + int((now - stream.last_time) * self.clock_rate)
        self.update_bitrate(now)
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp,
            rtp_timestamp=(rtp_ts + rw.ts_offset) & 0xFFFFFFFF,
            packet_count=self.packets_sent & 0xFFFFFFFF,
            octet_count=self.payload_bytes & 0xFFFFFFFF,
        )

    def on_rrtr(self, remote_ssrc: int, ntp: int, now: float) -> None:
        """The remote receiver sent an XR RRTR (RFC 3611 4.4): remember it for the DLRR."""
        self._rrtr = (remote_ssrc, compact_ntp(ntp), now)

    def dlrr_report(self, now: float) -> ExtendedReport | None:
        """The XR DLRR answering the remote's last RRTR (once), sent with our SR so the
        remote can compute its RTT as a receiver (RFC 3611 4.5)."""
        if self._rrtr is None:
            return None
        remote_ssrc, lrr, arrival = self._rrtr
        self._rrtr = None
        delay = max(0, int((now - arrival) * 65536)) & 0xFFFFFFFF
        return ExtendedReport(self.ssrc, dlrr=[DlrrSubBlock(remote_ssrc, lrr, delay)])

    def update_bitrate(self, now: float) -> int:
        total = self.bytes_sent + self.retransmitted_bytes
        if self._bitrate_time is not None and now > self._bitrate_time:
            self.bitrate = int((total - self._bitrate_bytes) * 8 / (now - self._bitrate_time))
        interval_bytes = total - self._bitrate_bytes
        interval_rtx = self.retransmitted_bytes - self._bitrate_rtx_bytes
        self.retransmission_share = interval_rtx / interval_bytes if interval_bytes else 0.0
        self._bitrate_rtx_bytes = self.retransmitted_bytes
        self._bitrate_bytes = total
        self._bitrate_time = now
        return self.bitrate

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "id": self.id,
            "producerId": self.producer.id,
            "kind": self.kind,
            "type": self.type,
            "rtpParameters": self.rtp_parameters,
            "preferredLayers": self.preferred_layers(),
            "currentLayers": self.current_layers(),
            "targetLayers": self.target_layers(),
            "priority": self.priority,
            "paused": self.paused,
            "producerPaused": self.producer_paused,
            "active": self.active,
            # sent by the C fan-out core (else the Python loop: the core switched off)
            "fanoutCore": self.in_core,
        }

    def get_stats(self) -> list[dict]:
        return [
            {
                "type": "outbound-rtp",
                "timestamp": int(time.time() * 1000),
                "kind": self.kind,
                "ssrc": self.ssrc,
                "packetCount": self.packets_sent,
                "byteCount": self.bytes_sent,
                "dropped": self.dropped,
                "ringDrops": self.ring_drops,
                "keyFrameRequests": self.keyframe_requests,
                "rtxSsrc": self.rtx.ssrc if self.rtx is not None else None,
                "nackEnabled": self.nack_enabled,
                "nackCount": self.nacks_received,
                "nackPacketCount": self.nack_packets_requested,
                "retransmittedPackets": self.retransmitted_packets,
                "retransmittedBytes": self.retransmitted_bytes,
                "nackMisses": self.nack_misses,
                "nackSuppressed": self.nack_suppressed,
                "congestionKeyFrameRequests": self.congestion_key_frames,
                "retransmissionShare": self.retransmission_share,
                "pliCount": self.plis_received,
                "firCount": self.firs_received,
                "fractionLost": self.remote_fraction_lost,
                "packetsLost": self.remote_packets_lost,
                "jitter": self.remote_jitter,
                "roundTripTime": self.rtt,
                "score": self.score.score,
                "producerScore": self.producer.receivers[self.stream_index].score.score,
                "bitrate": self.bitrate,
                "waitingForKeyFrame": self.key_frame_pending,
                "temporalLayerDrops": self.temporal_drops,
                "paused": self.paused,
                "producerPaused": self.producer_paused,
            }
        ]

    # -- closing ------------------------------------------------------------------------------

    def close(self, notify: str | None) -> None:
        """Close; `notify` is the event to send the controller ("producerclose") or None when
        the controller itself asked (or closes its proxy along with the transport)."""
        if self.closed:
            return
        self.closed = True
        self.active = False
        self.producer.remove_consumer(self)
        self.transport.unregister_consumer(self)
        self._ctx.handlers.pop(self.id, None)
        if notify is not None:
            self._ctx.notify(self.id, notify, None)


# A simulcast layer silent this long (seconds) is taken as gone when a consumer starts.
MISSING_LAYER_SILENCE = 1.0
ALL_TEMPORAL_LAYERS = 255  # max_tid of a consumer that filters no temporal layer


def layer_flowing(stream: Any, now: float) -> bool:
    """Whether a producer stream (a simulcast layer) arrives: started, and not silent for
    `MISSING_LAYER_SILENCE`."""
    return stream.started and now - stream.last_time <= MISSING_LAYER_SILENCE
