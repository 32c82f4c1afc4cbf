"""The synthetic producers and consumers: one generator socket that paces RTP for every
stream (sendmmsg, in C), and one sink socket per receiving peer, read with recvmmsg (in C),
which counts each consumer's packets exactly (a bitmap per consumer catches duplicates) and
measures one-way added latency from the send time the generator writes into each payload.

WebRTC (`open_group_senders`): each send transport is its own peer, so each send group gets
its own socket and SRTP session instead of the shared generator socket and key; the same C
generator sends every stream from its group's socket. The sending sockets (the generator's,
and these) are also drained by the sinks' loop, which counts what the worker sends them
(consent-check answers, RTCP reports and feedback) apart from media.

transport-cc (`enable_transport_cc`): every packet carries its send transport's transport-wide
sequence number (one counter per send group), and the transport-cc feedback the worker sends
back is counted."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from pylibsrtp import Policy, Session

from relay.transport.srtp_session import CRYPTO_SUITES

from .scenario import (
    AUDIO_LEVEL_EXT_ID,
    OPUS_PAYLOAD_TYPE,
    SSRC_BASE,
    VIDEO_FPS,
    VP8_PAYLOAD_TYPE,
    Scenario,
)
from .traffic_lib import ffi, lib, srtp_context, srtp_functions

SINK_RCVBUF = 8 * 1024 * 1024
GENERATOR_SNDBUF = 4 * 1024 * 1024
LATENCY_BUCKET_US = 1  # the C histogram's resolution
KEYFRAME_INTERVAL_FRAMES = 60
# The first transport-wide sequence number: close to the wrap, so every run crosses it.
TRANSPORT_CC_FIRST_SEQ = 0xFF00


def srtp_session(crypto_suite: str, key: bytes, *, outbound: bool) -> Session:
    profile = CRYPTO_SUITES[crypto_suite][0]
    policy = Policy(key=key, srtp_profile=profile,
                    ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND)
    return Session(policy=policy)


@dataclass
class StepCounts:
    """What one step measured at the harness side."""

    sent: int
    sent_per_stream: list[int]
    received: int
    per_consumer: list[int]
    late_per_consumer: list[int]
    duplicates: int
    stale: int
    malformed: int
    rtcp: int
    rtcp_at_senders: int
    transport_cc_feedback: int
    stun: int
    stun_errors: int
    dtls: int
    unknown: int
    srtp_failures: int
    send_errors: int
    latency_us: dict[str, float]
    recv_calls: int
    kernel_timestamps: int


class Traffic:
    """Generator and sinks of one scenario; ``dest`` gives each stream's destination."""

    def __init__(self, scenario: Scenario, *, srtp_suite: str | None,
                 late_after: float = 0.1) -> None:
        self.scenario = scenario
        self.srtp_suite = srtp_suite
        self._protect, self._unprotect = srtp_functions() if srtp_suite else (ffi.NULL, ffi.NULL)
        self._sessions: list[Session] = []  # keep every libsrtp session alive
        self.generator = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.generator.bind(("127.0.0.1", 0))
        self.generator.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, GENERATOR_SNDBUF)
        self.generator.setblocking(False)
        lib.lt_enable_rx_timestamps(self.generator.fileno())
        self.sinks: list[socket.socket] = []
        for _ in range(scenario.sinks):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF)
            sock.setblocking(False)
            lib.lt_enable_rx_timestamps(sock.fileno())
            self.sinks.append(sock)
        self.senders: list[socket.socket] = []  # one per send group (open_group_senders)
        self.sink_rcvbuf = self.sinks[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) \
            if self.sinks else 0
        self.generator_key = os.urandom(CRYPTO_SUITES[srtp_suite][1]) if srtp_suite else None
        self._streams = ffi.new("struct lt_stream[]", scenario.streams)
        for i in range(scenario.streams):
            s = self._streams[i]
            s.fd = self.generator.fileno()
            s.ssrc = SSRC_BASE + i
            s.stream_id = i
            s.size = scenario.packet_size
            if scenario.kind == "audio":
                s.payload_type, s.ext_id, s.ts_step = OPUS_PAYLOAD_TYPE, AUDIO_LEVEL_EXT_ID, 960
            else:
                s.payload_type, s.ext_id, s.ts_step = VP8_PAYLOAD_TYPE, 0, 90000 // VIDEO_FPS
                s.vp8, s.keyframe_interval = 1, KEYFRAME_INTERVAL_FRAMES
            s.seq = (i * 7919) & 0xFFFF
        if srtp_suite:
            session = srtp_session(srtp_suite, self.generator_key, outbound=True)
            self._sessions.append(session)
            for i in range(scenario.streams):
                self._streams[i].srtp = srtp_context(session)
        # Consumers: the C side maps (sink, stream) to a consumer index.
        self.consumers = list(scenario.consumers)
        cmap = [-1] * (scenario.sinks * scenario.streams)
        for index, (sink, stream) in enumerate(self.consumers):
            cmap[sink * scenario.streams + stream] = index
        self._cmap = ffi.new("int32_t[]", cmap)
        self._per_consumer = ffi.new("int64_t[]", max(1, len(self.consumers)))
        self._late_per_consumer = ffi.new("int64_t[]", max(1, len(self.consumers)))
        self._hist = ffi.new("uint32_t[]", lib.LT_HIST_BUCKETS)
        # Sinks, then the sending sockets (drained for what the worker sends back).
        self._fds = ffi.new("int[]", [s.fileno() for s in self.sinks] + [self.generator.fileno()])
        self._send_groups: list[list[int]] = []  # stream ids per sender socket
        self._tcc_counters: Any = None
        self._sink_srtp = ffi.new("void *[]", max(1, scenario.sinks))
        self._sink = ffi.new("struct lt_sink *")
        self._bitmaps: Any = None
        self._bits_shift = -1
        st = self._sink
        st.nstreams = scenario.streams
        st.nsinks = scenario.sinks
        st.nconsumers = len(self.consumers)
        st.consumer_map = self._cmap
        st.per_consumer = self._per_consumer
        st.late_per_consumer = self._late_per_consumer
        st.late_after_ns = int(late_after * 1e9)
        st.hist = self._hist
        st.fds = self._fds
        st.ncontrol = 1
        st.payload_skip = lib.LT_VP8_PREFIX if scenario.kind == "video" else 0
        st.srtp = self._sink_srtp if srtp_suite else ffi.NULL
        self._epfd = lib.lt_epoll_create()
        if self._epfd < 0:
            raise OSError(-self._epfd, "epoll_create1")
        for index, sock in enumerate(self.sinks):
            rc = lib.lt_epoll_add(self._epfd, sock.fileno(), index)
            if rc < 0:
                raise OSError(-rc, "epoll_ctl")
        rc = lib.lt_epoll_add(self._epfd, self.generator.fileno(), len(self.sinks))
        if rc < 0:
            raise OSError(-rc, "epoll_ctl")
        self.step_id = 0

    # -- wiring -------------------------------------------------------------------------

    def sink_address(self, sink: int) -> tuple[str, int]:
        return self.sinks[sink].getsockname()

    def set_destination(self, stream: int, addr: tuple[str, int]) -> None:
        if lib.lt_make_addr(addr[0].encode(), addr[1], self._streams[stream].addr) < 0:
            raise ValueError(f"bad destination {addr!r}")

    def set_sink_key(self, sink: int, crypto_suite: str, key: bytes) -> None:
        """The key the sink decrypts with (what the sending side protects with)."""
        session = srtp_session(crypto_suite, key, outbound=False)
        self._sessions.append(session)
        self._sink_srtp[sink] = srtp_context(session)

    def open_group_senders(self) -> list[socket.socket]:
        """One socket per send group (in scenario order: rooms, then their groups), each
        sending its group's streams; returned so a peer can do its handshake on it first.
        The sinks' loop drains them too (tags after the sinks')."""
        if self.senders:
            return self.senders
        groups = [group for room in self.scenario.rooms for group in room.send_groups]
        for group in groups:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, GENERATOR_SNDBUF)
            lib.lt_enable_rx_timestamps(sock.fileno())
            self.senders.append(sock)
            for stream in group:
                self._streams[stream].fd = sock.fileno()
                self._streams[stream].srtp = ffi.NULL  # until set_sender_key
        # The generator's socket keeps its tag (it is idle now); the senders' come after it.
        fds = [s.fileno() for s in self.sinks] + [self.generator.fileno()] + \
            [s.fileno() for s in self.senders]
        self._fds = ffi.new("int[]", fds)
        self._sink.fds = self._fds
        self._sink.ncontrol = 1 + len(self.senders)
        for index, sock in enumerate(self.senders):
            rc = lib.lt_epoll_add(self._epfd, sock.fileno(), len(self.sinks) + 1 + index)
            if rc < 0:
                raise OSError(-rc, "epoll_ctl")
        self._send_groups = groups
        return self.senders

    def set_sender_key(self, group: int, crypto_suite: str, key: bytes) -> None:
        """The key a send group's streams are protected with (its transport's inbound key)."""
        session = srtp_session(crypto_suite, key, outbound=True)
        self._sessions.append(session)
        for stream in self._send_groups[group]:
            self._streams[stream].srtp = srtp_context(session)

    def enable_transport_cc(self, ext_id: int) -> None:
        """Write a transport-wide sequence number (header extension element ``ext_id``) into
        every packet from now on: one counter per send transport (send group), as a browser
        numbers everything it sends on one transport."""
        if not 1 <= ext_id <= 14:
            raise ValueError(f"one-byte header extension ids are 1..14 (got {ext_id})")
        groups = [group for room in self.scenario.rooms for group in room.send_groups]
        self._tcc_counters = ffi.new("uint16_t[]", [TRANSPORT_CC_FIRST_SEQ] * len(groups))
        for index, group in enumerate(groups):
            for stream in group:
                self._streams[stream].tcc_seq = self._tcc_counters + index
                self._streams[stream].tcc_ext_id = ext_id

    @property
    def transport_cc(self) -> bool:
        return self._tcc_counters is not None

    # -- steps --------------------------------------------------------------------------

    def begin_step(self, expected_per_stream: int) -> None:
        """Zero every counter; packets of earlier steps are then counted as stale."""
        self.step_id += 1
        st = self._sink
        st.step_id = self.step_id
        bits = 1 << max(12, (max(1, expected_per_stream) * 2 - 1).bit_length())
        shift = bits.bit_length() - 1
        words = max(1, (len(self.consumers) << shift) // 64)
        if self._bits_shift != shift:
            self._bitmaps = ffi.new("uint64_t[]", words)
            self._bits_shift = shift
        else:
            ffi.memmove(self._bitmaps, b"\x00" * (words * 8), words * 8)
        st.bitmaps = self._bitmaps
        st.bits_shift = shift
        st.bits_mask = bits - 1
        for array in (self._per_consumer, self._late_per_consumer):
            ffi.memmove(array, b"\x00" * (8 * max(1, len(self.consumers))),
                        8 * max(1, len(self.consumers)))
        ffi.memmove(self._hist, b"\x00" * (4 * lib.LT_HIST_BUCKETS), 4 * lib.LT_HIST_BUCKETS)
        for name in ("received", "bytes", "duplicates", "stale", "malformed", "rtcp",
                     "rtcp_senders", "tcc_feedback", "stun",
                     "stun_errors", "dtls", "unknown",
                     "srtp_failures", "latency_max_ns", "latency_sum_ns", "recv_calls", "late",
                     "kernel_timestamps"):
            setattr(st, name, 0)
        for i in range(self.scenario.streams):
            s = self._streams[i]
            s.sent = s.frames = s.bytes = s.send_errors = 0
            s.index = 0

    def generate(self, t0_ns: int, now_ns: int, rate_per_stream: float) -> int:
        fps = 0.0 if self.scenario.kind == "audio" else float(VIDEO_FPS)
        return lib.lt_generate(self._streams, self.scenario.streams, t0_ns, now_ns,
                               rate_per_stream, fps, self.step_id, self._protect)

    def drain(self, timeout_ms: int = 0) -> int:
        got = lib.lt_drain(self._sink, self._epfd, timeout_ms, self._unprotect)
        if got < 0:
            raise OSError(-got, "epoll_wait")
        return got

    @property
    def sent(self) -> int:
        return sum(self._streams[i].sent for i in range(self.scenario.streams))

    @property
    def received(self) -> int:
        return self._sink.received

    def counts(self) -> StepCounts:
        st = self._sink
        return StepCounts(
            sent=self.sent,
            sent_per_stream=[self._streams[i].sent for i in range(self.scenario.streams)],
            received=st.received,
            per_consumer=[self._per_consumer[i] for i in range(len(self.consumers))],
            late_per_consumer=[self._late_per_consumer[i] for i in range(len(self.consumers))],
            duplicates=st.duplicates, stale=st.stale, malformed=st.malformed, rtcp=st.rtcp,
            rtcp_at_senders=st.rtcp_senders, transport_cc_feedback=st.tcc_feedback,
            stun=st.stun, stun_errors=st.stun_errors, dtls=st.dtls, unknown=st.unknown,
            srtp_failures=st.srtp_failures,
            send_errors=sum(self._streams[i].send_errors for i in range(self.scenario.streams)),
            latency_us=self._latency(),
            recv_calls=st.recv_calls, kernel_timestamps=st.kernel_timestamps,
        )

    def _latency(self) -> dict[str, float]:
        st = self._sink
        total = st.received
        if total == 0:
            return {"p50": None, "p99": None, "max": None, "mean": None, "overflowPackets": 0}
        hist = ffi.unpack(self._hist, lib.LT_HIST_BUCKETS)
        targets = {"p50": total * 0.50, "p99": total * 0.99}
        result: dict[str, float] = {}
        cumulative = 0
        pending = sorted(targets.items(), key=lambda kv: kv[1])
        for bucket, count in enumerate(hist):
            if not count:
                continue
            cumulative += count
            while pending and cumulative >= pending[0][1]:
                result[pending.pop(0)[0]] = float(bucket * LATENCY_BUCKET_US)
            if not pending:
                break
        # The last bucket holds everything from its lower edge up (reported as that edge).
        result["overflowPackets"] = hist[-1]
        result["max"] = round(st.latency_max_ns / 1000.0, 1)
        result["mean"] = round(st.latency_sum_ns / total / 1000.0, 1)
        return result

    def close(self) -> None:
        if self._epfd >= 0:
            os.close(self._epfd)
            self._epfd = -1
        self.generator.close()
        for sock in self.sinks + self.senders:
            sock.close()
