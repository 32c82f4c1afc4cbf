"""Dividing a transport's available outgoing bitrate among its consumers (mediasoup's
`DistributeAvailableOutgoingBitrate`, simplified to spatial layers).

Called with the transport's send-side estimate (`relay.transport.send_estimation`) at most
every 0.5 s, and at once when it drops. Audio and simple (one-stream) consumers can't adapt:
what they send comes off the top. Each simulcast consumer starts on its lowest flowing layer;
then, in rounds, every consumer (higher `priority` first, and as many steps per round as
its priority) moves up one spatial layer while the bitrate left covers the difference,
never above its preferred layer. A layer's cost is what the producer receives on it (its
measured bitrate). The result is each consumer's `bwe_spatial_limit`, which its layer
selection (`SimulcastConsumer.check_layers`) does not exceed; an up-switch waits
`UPGRADE_HOLD` after a downgrade caused by bandwidth (hysteresis). A consumer that gets every
flowing layer up to its preferred one is not limited by bandwidth: its limit is its
preferred layer, so a layer the sender pauses is no bandwidth downgrade.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .consumer import MISSING_LAYER_SILENCE  # a layer silent this long is not offered

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

UPGRADE_HOLD = 10.0  # seconds without a spatial up-switch after a bandwidth downgrade


def _flowing(consumer: Consumer, spatial: int, now: float) -> bool:
    stream = consumer.producer.streams[consumer.layer_streams[spatial]]
    return stream.started and now - stream.last_time <= MISSING_LAYER_SILENCE


def _cost(consumer: Consumer, spatial: int) -> int:
    return consumer.producer.receivers[consumer.layer_streams[spatial]].bitrate


def distribute(consumers: list[Consumer], available_bps: int, now: float | None = None) -> int:
    """Set every simulcast consumer's allocated layer from `available_bps`; return what the
    consumers would send at their preferred layers (what probing aims for)."""
    now = time.monotonic() if now is None else now
    remaining = available_bps
    layered: list[Consumer] = []
    for consumer in consumers:
        if consumer.closed or not consumer.active:
            continue
        if consumer.consumer_type == "simulcast":
            layered.append(consumer)
        else:
            remaining -= consumer.bitrate
    chosen: dict[Consumer, int] = {}
    options: dict[Consumer, list[int]] = {}
    for consumer in layered:
        flowing = [s for s in range(consumer.target_spatial + 1) if _flowing(consumer, s, now)]
        if not flowing:
            continue  # nothing arrives: no decision (the sender paused, or not started)
        options[consumer] = flowing
        chosen[consumer] = flowing[0]
        remaining -= _cost(consumer, flowing[0])
    order = sorted(options, key=lambda c: -c.priority)
    capped: set[Consumer] = set()  # stopped by the bitrate, not by the layers there are
    changed = True
    while changed:
        changed = False
        for consumer in order:
            for _ in range(max(1, consumer.priority)):
                flowing = options[consumer]
                index = flowing.index(chosen[consumer])
                if index + 1 >= len(flowing):
                    break
                step = _cost(consumer, flowing[index + 1]) - _cost(consumer, chosen[consumer])
                if step > remaining:
                    capped.add(consumer)
                    break
                remaining -= step
                chosen[consumer] = flowing[index + 1]
                changed = True
    for consumer, spatial in chosen.items():
        # Not capped: every flowing layer up to the preferred one fits, and the bandwidth
        # limits nothing; a layer the sender stopped (its encoder is short of CPU) is the
        # consumer's own fallback, not a bandwidth downgrade that holds the way back up.
        consumer.set_bwe_limit(spatial if consumer in capped else consumer.target_spatial, now)
    wanted = sum(consumer.bitrate for consumer in consumers
                 if not consumer.closed and consumer.active and consumer not in options)
    wanted += sum(_cost(consumer, flowing[-1]) for consumer, flowing in options.items())
    return wanted


def hold_upgrade(last_downgrade: float | None, now: float) -> bool:
    """Whether an up-switch must still wait after a bandwidth downgrade at `last_downgrade`."""
    return last_downgrade is not None and now - last_downgrade < UPGRADE_HOLD
