"""VP8 temporal layers (RFC 7741): which layer a packet belongs to, and when a consumer's
temporal target may take effect.

Every temporal layer decodes from a TL0 frame, so a consumer's pending target applies at the
start of one. A switch up also happens earlier, at the start of a frame whose TID is above
the consumer's and not above its target and whose Y (layer sync) bit is set: such a frame
depends only on TL0 (RFC 7741 4.2); the consumer then goes up to that TID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.rtp.keyframe import parse_vp8_descriptor
from relay.rtp.packet import rtp_payload_offset

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer


def temporal_step(consumers: list[Consumer], buf: memoryview, n: int, index: int) -> tuple[int, bool]:
    """(the packet's VP8 TID, 0 without one; whether a consumer of stream `index` changed its
    temporal layer, so the fan-out groups must be rebuilt)."""
    offset = rtp_payload_offset(buf, n)
    descriptor = parse_vp8_descriptor(buf[offset:n]) if offset > 0 else None
    if descriptor is None:
        return 0, False
    tid = descriptor.tid or 0
    changed = False
    if descriptor.start_of_partition and descriptor.partition_index == 0 \
            and (tid == 0 or descriptor.layer_sync):
        for consumer in consumers:
            pending = consumer.pending_max_tid
            if consumer.stream_index != index or pending is None:
                continue
            if tid == 0:
                consumer.apply_temporal_layer()
                changed = True
            elif consumer.max_tid < tid <= pending:
                consumer.apply_temporal_layer(tid)
                changed = True
    return tid, changed
