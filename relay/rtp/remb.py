"""REMB, receive side: estimate the incoming bandwidth from abs-send-time and say it back.

For producers that negotiated ``goog-remb`` feedback with the abs-send-time header extension
but not transport-cc (draft-alvestrand-rmcat-remb-03). The estimate itself is aiortc's
``RemoteBitrateEstimator`` (libwebrtc's abs-send-time estimator: inter-arrival groups, a
Kalman overuse filter and AIMD rate control); this module feeds it, caps what it reports
and decides when a REMB is due. Packing and parsing reuse ``relay.rtp.rtcp.Remb``.

Sans-I/O. Per inbound RTP packet of such a producer the transport calls
:func:`read_abs_send_time` and :meth:`RembEstimator.on_packet`; when that (or
:meth:`RembEstimator.set_max_bitrate`) returns ``(bitrate, ssrcs)`` it sends
``build_remb(sender_ssrc, bitrate, ssrcs)``. Times are seconds on a monotonic clock.

When a REMB is due (libwebrtc's REMB throttling): at once when the reported bitrate falls
by 3 % or more from the last one sent, or when the cap changes; otherwise at most every
``REMB_INTERVAL`` (1 s; aiortc's estimator itself updates about every 0.5 s, libwebrtc's
every 0.2–1 s depending on the bitrate).
"""

from __future__ import annotations

from aiortc.rate import RemoteBitrateEstimator

from relay.rtp.rtcp import Remb, RtcpParseError, parse_compound
from relay.rtp.transport_cc import extension_value_offset

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

REMB_INTERVAL = 1.0  # seconds between REMBs when the estimate does not drop
DECREASE_RATIO = 0.97  # a drop to this share of the last REMB or below is sent at once
STREAM_TIMEOUT = 2.0  # an SSRC not seen for this long leaves the REMB (libwebrtc: 2 s)
SILENCE_RESET = 2.0  # after this long without packets the estimator starts over
MAX_SSRCS = 255  # the REMB's SSRC count is one byte
MAX_REMB_BITRATE = 0x3FFFF << 63  # 18-bit mantissa, 6-bit exponent


def read_abs_send_time(buf: bytearray | memoryview | bytes, n: int, ext_id: int) -> int | None:
    """The 24-bit abs-send-time (6.18 fixed-point seconds) of the RTP packet ``buf[:n]``
    (one-byte or two-byte header extension ``ext_id``), or None."""
    i = extension_value_offset(buf, n, ext_id, 3)
    if i < 0:
        return None
    return (buf[i] << 16) | (buf[i + 1] << 8) | buf[i + 2]


class RembEstimator:
    """The bitrate to report in REMB for one transport's incoming media.

    Counters: ``packets`` (fed to the estimator), ``ssrcs_refused`` (packets of an SSRC
    beyond ``MAX_SSRCS``; still estimated, not listed), ``resets`` (restarts after silence),
    ``errors`` (restarts after the estimator raised), ``rembs`` (REMBs due so far).
    """

    def __init__(self, max_bitrate: int | None = None) -> None:
        self._estimator = RemoteBitrateEstimator()
        self._max_bitrate = max_bitrate
        self._estimate: int | None = None  # the estimator's latest bitrate
        self._ssrcs: dict[int, float] = {}  # ssrc → last arrival
        self._last_arrival: float | None = None
        self._last_sent: int | None = None
        self._last_sent_at = 0.0
        self._cap_changed = False
        self.packets = 0
        self.ssrcs_refused = 0
        self.resets = 0
        self.errors = 0
        self.rembs = 0

    @property
    def estimate(self) -> int | None:
        """The estimator's latest bitrate (bps), uncapped; None until it has one (about 3 s
        after the first packet, or sooner on overuse)."""
        return self._estimate

    @property
    def bitrate(self) -> int | None:
        """What a REMB would report now: the estimate capped by the maximum; the maximum
        alone while there is no estimate; None when there is neither."""
        estimate, cap = self._estimate, self._max_bitrate
        if estimate is None:
            return cap
        return estimate if cap is None else min(estimate, cap)

    @property
    def ssrcs(self) -> list[int]:
        return list(self._ssrcs)

    def on_packet(
        self, arrival: float, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        """Feed one packet (``payload_size``: payload plus padding bytes, as libwebrtc
        counts). Returns ``(bitrate, ssrcs)`` when a REMB is due now, else None."""
        last = self._last_arrival
        if last is not None and arrival - last > SILENCE_RESET:
            # A fresh estimator: aiortc's rate window would otherwise walk every
            # millisecond of the silence. The last estimate stays until a new one comes.
            self._estimator = RemoteBitrateEstimator()
            self.resets += 1
        if last is None or arrival > last:
            self._last_arrival = arrival
        if ssrc in self._ssrcs or len(self._ssrcs) < MAX_SSRCS:
            self._ssrcs[ssrc] = arrival
        else:
            self.ssrcs_refused += 1
        self.packets += 1
        # aiortc lists the SSRCs it has seen, without bound: give it one, keep our own list.
        try:
            result = self._estimator.add(
                int(arrival * 1000), abs_send_time & 0xFFFFFF, max(payload_size, 0), 0
            )
        except (ArithmeticError, ValueError):  # never seen; a stranger's input must not crash
            self._estimator = RemoteBitrateEstimator()
            self.errors += 1
            result = None
        if result is not None:
            self._estimate = result[0]
        return self._due(arrival)

    def set_max_bitrate(self, bps: int | None, now: float) -> tuple[int, list[int]] | None:
        """Cap what is reported (None: no cap). Returns ``(bitrate, ssrcs)`` when a REMB is
        due now (the reported value changed and there is something to report)."""
        if bps is not None and not 0 <= bps <= MAX_REMB_BITRATE:
            raise ValueError("max bitrate must be >= 0 and fit a REMB")
        before = self.bitrate
        self._max_bitrate = bps
        if self.bitrate != before:
            self._cap_changed = True
        return self._due(now)

    def _due(self, now: float) -> tuple[int, list[int]] | None:
        bitrate = self.bitrate
        if bitrate is None:
            return None
        last = self._last_sent
        if not (
            last is None
            or self._cap_changed
            or bitrate <= last * DECREASE_RATIO
            or now - self._last_sent_at >= REMB_INTERVAL
        ):
            return None
        # Forget streams that stopped (libwebrtc drops an SSRC after 2 s without packets).
        stale = [s for s, t in self._ssrcs.items() if now - t > STREAM_TIMEOUT]
        for s in stale:
            del self._ssrcs[s]
        self._last_sent = bitrate
        self._last_sent_at = now
        self._cap_changed = False
        self.rembs += 1
        return bitrate, list(self._ssrcs)


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """An RTCP PSFB REMB packet (18-bit mantissa, 6-bit exponent, rounding down). Raises
    ValueError for more than 255 SSRCs or a bitrate beyond the encoding."""
    return Remb(sender_ssrc, bitrate, list(ssrcs)).serialize()


def parse_remb(data: bytes | bytearray | memoryview) -> tuple[int, list[int]]:
    """(bitrate, ssrcs) of the REMB in an RTCP (compound) packet. Raises ValueError
    (``RtcpParseError``) if the packet is malformed or holds no REMB."""
    for packet in parse_compound(data).packets:
        if isinstance(packet, Remb):
            return packet.bitrate, packet.ssrcs
    raise RtcpParseError("no REMB in the packet")
