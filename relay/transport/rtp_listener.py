"""Binding an inbound SSRC a transport does not know yet to one of its producers' streams
(control path: runs once per new SSRC; once bound, the transport's `ssrc_table` and
`rtx_ssrc_table` match the SSRC on the fast path and this is never reached again for it).

Shared by the WebRTC and the plain transport, in mediasoup's order:

1. `mid` header extension (RFC 8843): a packet naming a MID only goes to the producer
   with that MID;
2. media packet with `rtp-stream-id` (RID, RFC 8852): the encoding with that RID; a packet
   with a MID and no RID goes to a single-encoding producer's only stream;
3. RTX packet (RFC 4588) with `repaired-rtp-stream-id`: binds the RTX SSRC of the encoding
   with that RID (with a MID only: a single-encoding producer's);
4. otherwise the transport's one producer without a signalled SSRC (a plain RTP sender),
   unless the packet names another MID.

The tables are bounded by the signalled encodings, whatever a sender (authenticated, so
able to send any SSRC it likes) does: per producer, one SSRC per encoding and one RTX SSRC
per encoding. A stream whose SSRC was signalled takes no other (as mediasoup's Producer); an
unsignalled stream that already has an SSRC takes a new one only once the old one has been
quiet for `SSRC_SWITCH_SILENCE` (the sender restarted its encoder), and the old one leaves
the table (`Producer.bind_stream`, `Producer.bind_rtx`). Packets that bind nothing are
dropped and counted in the transport's `dropped`, by reason:

- "ssrcNotSignalled": a media packet naming (by MID / RID) a stream whose SSRC was
  signalled, under another SSRC;
- "unknownSsrc": a media packet naming no stream it could bind, or one whose SSRC is live;
- "rtxUnknownSsrc": the same for an RTX packet (or a stream whose RTX SSRC was signalled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.rtp.packet import parse_extensions

if TYPE_CHECKING:
    from relay.worker.producer import Producer


def _text(value: bytes | None) -> str | None:
    # RFC 8852: RID and MID are short ASCII tokens; a trailing NUL pads some senders' values.
    return None if value is None else value.rstrip(b"\x00").decode("ascii", "replace")


def route_unknown_ssrc(
    transport: Any, buf: bytearray | memoryview, n: int, ssrc: int
) -> tuple[Producer, int, bool] | None:
    """Bind `ssrc` (the packet `buf[:n]`, already validated as RTP) to a producer stream of
    `transport`: (producer, stream index, is RTX) or None (dropped, counted)."""
    pt = buf[1] & 0x7F
    try:
        extensions = parse_extensions(buf, n) if buf[0] & 0x10 else {}
    except ValueError:
        extensions = {}
    rtx_seen = False
    refusal = "unknownSsrc"
    if extensions:
        for producer in list(transport.producers.values()):
            if producer.closed or not producer.accepts_payload_type(pt):
                continue
            mid = _text(extensions.get(producer.mid_ext_id)) if producer.mid_ext_id else None
            if mid is not None and mid != producer.mid:
                continue
            is_rtx = producer.is_rtx_payload_type(pt)
            rid_id = producer.rrid_ext_id if is_rtx else producer.rid_ext_id
            rid = _text(extensions.get(rid_id)) if rid_id else None
            if rid is not None:
                index = producer.rid_index(rid)
                if index is None:
                    continue
            elif mid is not None and len(producer.streams) == 1:
                index = 0
            else:
                continue
            if is_rtx:
                rtx_seen = True
                if producer.bind_rtx(index, ssrc):
                    return producer, index, True
                continue
            if producer.signalled[index]:
                # Its SSRC is the signalled one: taking others would give a sender one table
                # entry per SSRC it makes up.
                refusal = "ssrcNotSignalled"
                continue
            if producer.bind_stream(index, ssrc) is not None:
                return producer, index, False
    producer = transport.any_ssrc_producer
    if producer is not None and producer.accepts_payload_type(pt) \
            and not producer.is_rtx_payload_type(pt) and not _names_other_mid(producer, extensions):
        entry = producer.adopt_ssrc(ssrc)
        if entry is not None:
            return producer, 0, False
    transport.dropped["rtxUnknownSsrc" if rtx_seen or _is_rtx_anywhere(transport, pt)
                      else refusal] += 1
    return None


def _names_other_mid(producer: Producer, extensions: dict[int, bytes]) -> bool:
    """The packet names a MID and it is not `producer`'s (which has one)."""
    if not extensions or not producer.mid_ext_id or producer.mid is None:
        return False
    mid = _text(extensions.get(producer.mid_ext_id))
    return mid is not None and mid != producer.mid


def _is_rtx_anywhere(transport: Any, pt: int) -> bool:
    return any(p.is_rtx_payload_type(pt) for p in transport.producers.values())
