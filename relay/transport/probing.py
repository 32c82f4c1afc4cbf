"""Bandwidth probes toward a transport's remote: padding-only RTX packets, as browsers accept
them (libwebrtc probes the same way), sent at a probe cluster's rate so the send-side
estimator can learn whether the path carries more than what the consumers send now.

A cluster (`relay.transport.bwe.probe_controller.ProbeCluster`: a rate, a number of packets
and of bytes, ~100 ms at its rate) is sent in bursts every `BURST_INTERVAL`, each what the
rate allows by then, until both minimums are reached; each
packet carries the transport's next transport-wide sequence number and is recorded in the
send history with the cluster's id. The packets ride on one video consumer of the transport
that negotiated RTX and transport-wide-cc (its RTX SSRC and payload type, its RTX sequence
numbers, SRTP-protected like its media); without one, nothing is probed (counted).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

PADDING = 255  # bytes of padding per probe packet (the most one RTP packet can say)
BURST_INTERVAL = 0.005  # seconds between bursts of a cluster
MAX_CLUSTER_PACKETS = 2000  # a cluster never sends more than this (bounded whatever it asks)

_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, ts, ssrc


def probe_packet(rtx_ssrc: int, rtx_pt: int, rtx_seq: int, ts: int, tcc_id: int,
                 wide_seq: int) -> bytearray:
    """A padding-only RTX packet carrying a transport-wide number (one-byte extension)."""
    packet = bytearray(_HEADER.pack(0x80 | 0x20 | 0x10, rtx_pt & 0x7F, rtx_seq & 0xFFFF,
                                    ts & 0xFFFFFFFF, rtx_ssrc))
    # RFC 8285 one-byte header: 0xBEDE, length 1 word: id/len byte, 2 bytes, 1 byte padding
    packet += bytes([0xBE, 0xDE, 0x00, 0x01, (tcc_id << 4) | 1, wide_seq >> 8, wide_seq & 0xFF,
                     0])
    packet += bytes(PADDING - 1) + bytes([PADDING])
    return packet


class Prober:
    """Sends the probe clusters of one transport (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, consumers: dict[str, Any],
                 history: Any, clock: Any, flush: Any) -> None:
        self._loop = loop
        self._flush = flush  # the send ring's flush: a burst goes out at once
        self._consumers = consumers  # the transport's consumers, by id (a live view)
        self._history = history
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._queue: list[list[Any]] = []  # [cluster, packets sent, bytes sent, started]
        self.clusters_sent = 0
        self.packets_sent = 0
        self.no_carrier = 0
        self.closed = False

    def _carrier(self) -> Any:
        for consumer in self._consumers.values():
            if consumer.kind == "video" and consumer.active and consumer.rtx is not None \
                    and consumer.tcc_id and consumer.tcc_history is not None \
                    and consumer.rewriter.started:
                return consumer
        return None

    def send(self, cluster: Any) -> None:
        """Queue a cluster; it starts at once."""
        if self.closed:
            return
        self._queue.append([cluster, 0, 0, self._clock()])
        if self._timer is None:
            self._burst()

    def _burst(self) -> None:
        self._timer = None
        if self.closed or not self._queue:
            return
        consumer = self._carrier()
        if consumer is None:
            self.no_carrier += len(self._queue)
            self._queue.clear()
            return
        now = self._clock()
        entry = self._queue[0]
        cluster, packets, sent_bytes, started = entry
        # What the cluster's rate allows by now, at least one packet per burst. (Not a burst's
        # worth ahead: the first burst would go out at once and the cluster, over one burst
        # less than its bytes ask, would be sent faster than its rate.)
        due = max(1, int((now - started) * cluster.bitrate_bps / 8) - sent_bytes)
        size = 12 + 8 + PADDING
        rtx = consumer.rtx
        ts = consumer.rewriter.last_ts
        while due > 0:
            wide = self._history.record_next(now, size, cluster.id)
            packet = probe_packet(rtx.ssrc, rtx.payload_type, rtx.next_seq, ts,
                                  consumer.tcc_id, wide)
            rtx.next_seq = (rtx.next_seq + 1) & 0xFFFF
            data: Any = packet
            if consumer.srtp is not None:
                data = consumer.srtp.protect_rtp(packet, len(packet))
                if data is None:
                    break
            consumer.send(consumer.fd, data, consumer.addr)
            packets += 1
            sent_bytes += size
            due -= size
            self.packets_sent += 1
            if packets >= MAX_CLUSTER_PACKETS:
                break
        self._flush()
        entry[1], entry[2] = packets, sent_bytes
        if (packets >= cluster.min_packets and sent_bytes >= cluster.min_bytes) \
                or packets >= MAX_CLUSTER_PACKETS:
            self._queue.pop(0)
            self.clusters_sent += 1
        if self._queue:
            self._timer = self._loop.call_later(BURST_INTERVAL, self._burst)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
