"""Dividing a transport's available outgoing bitrate among its consumers (mediasoup's
`DistributeAvailableOutgoingBitrate` with `IncreaseLayer`/`ApplyLayers`): spatial and VP8
temporal layers.

Called with the transport's send-side estimate (`relay.transport.send_estimation`) at most
every 0.5 s, and at once when it drops. Audio and simple (one-stream) consumers can't adapt:
what they send comes off the top. Each simulcast consumer climbs a ladder of (spatial,
temporal) layer pairs, whose cost is what the producer receives of that spatial layer's
stream up to and including that temporal layer (`StreamReceiver.temporal_bitrates`, measured
per VP8 TID; a stream without temporal layers is one). It starts on the ladder's first rung;
then, in rounds, every consumer (higher `priority` first, and as many steps per round as its
priority) moves one rung up while the bitrate left covers the difference, never above its
preferred layers.

The ladder (`_ladder`): the lowest flowing spatial layer from temporal layer 0 up to the
preferred one, then each higher flowing spatial layer at the preferred temporal layer, up to
the preferred spatial layer. A step never lowers the frame rate: mediasoup would go from the
lowest layer's full rate to the next layer's TL0 (a quarter of the frames), but with a
browser's L1T3 layers that puts a subscriber held to a few hundred kbit/s on the middle
layer at 7.5-15 fps (its TL0 costs ~40 % of the layer, less than the lowest layer whole),
where the lowest layer at full rate is what a weak link should get (issue 13; Jitsi's
allocator keeps the frame rate above its lowest resolutions the same way).

The result is each consumer's `set_bwe_limit(spatial, now, temporal)`, which its layer
selection (`SimulcastConsumer.check_layers`) does not exceed. An up-switch of spatial layer
waits `UPGRADE_HOLD` after a downgrade caused by bandwidth (hysteresis, in the consumer, so
it goes up when the hold ends without waiting for the next estimate); meanwhile it takes
every temporal layer of the layer it is held on (the allocation reached a higher rung, which
costs more). A consumer that gets every rung up to its preferred layers is not limited by
bandwidth: its limit is its preferred layers, so a layer the sender pauses is no bandwidth
downgrade.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .consumer import ALL_TEMPORAL_LAYERS, layer_flowing  # silent for a while: not offered

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

UPGRADE_HOLD = 10.0  # seconds without a spatial up-switch after a bandwidth downgrade

Rung = tuple[int, int, int]  # (spatial layer, temporal limit: a TID or ALL_TEMPORAL_LAYERS, bps)


def _flowing(consumer: Consumer, spatial: int, now: float) -> bool:
    return layer_flowing(consumer.producer.streams[consumer.layer_streams[spatial]], now)


def _rung(consumer: Consumer, spatial: int, temporal: int) -> Rung:
    """(spatial, temporal limit, bitrate) of a pair: the temporal limit is ALL_TEMPORAL_LAYERS
    when it reaches the stream's top layer (nothing to filter)."""
    bitrates = consumer.producer.receivers[consumer.layer_streams[spatial]].temporal_bitrates()
    top = len(bitrates) - 1
    if temporal >= top:
        return spatial, ALL_TEMPORAL_LAYERS, bitrates[top]
    return spatial, temporal, bitrates[temporal]


def _ladder(consumer: Consumer, flowing: list[int]) -> list[Rung]:
    """The consumer's (spatial, temporal) steps, cheapest first (see the module doc)."""
    preferred = consumer.preferred_tid
    lowest = flowing[0]
    top = len(consumer.producer.receivers[consumer.layer_streams[lowest]].temporal_bitrates()) - 1
    ladder = [_rung(consumer, lowest, t) for t in range(min(preferred, top) + 1)]
    ladder.extend(_rung(consumer, spatial, preferred) for spatial in flowing[1:])
    return ladder


def distribute(consumers: list[Consumer], available_bps: int, now: float | None = None) -> int:
    """Set every simulcast consumer's allocated layers from `available_bps`; return what the
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
    ladders: dict[Consumer, list[Rung]] = {}
    chosen: dict[Consumer, int] = {}  # rung index
    wanted = 0
    for consumer in layered:
        flowing = [s for s in range(consumer.target_spatial + 1) if _flowing(consumer, s, now)]
        if not flowing:
            continue  # nothing arrives: no decision (the sender paused, or not started)
        ladder = _ladder(consumer, flowing)
        wanted += ladder[-1][2]
        ladders[consumer] = ladder
        chosen[consumer] = 0
        remaining -= ladder[0][2]
    order = sorted(ladders, key=lambda c: -c.priority)
    capped: set[Consumer] = set()  # stopped by the bitrate, not by the layers there are
    changed = True
    while changed:
        changed = False
        for consumer in order:
            ladder = ladders[consumer]
            for _ in range(max(1, consumer.priority)):
                index = chosen[consumer]
                if index + 1 >= len(ladder):
                    break
                # (can be negative: a layer the sender just started may measure less than
                # the one below; the consumer gives that one up)
                step = ladder[index + 1][2] - ladder[index][2]
                if step > remaining:
                    capped.add(consumer)
                    break
                remaining -= step
                chosen[consumer] = index + 1
                changed = True
    for consumer, index in chosen.items():
        spatial, temporal, _ = ladders[consumer][index]
        if consumer in capped:
            consumer.set_bwe_limit(spatial, now, temporal)
        else:
            # Not capped: every flowing layer up to the preferred ones fits, and the
            # bandwidth limits nothing; a layer the sender stopped (its encoder is short of
            # CPU) is the consumer's own fallback, not a bandwidth downgrade that holds the
            # way back up.
            consumer.set_bwe_limit(consumer.target_spatial, now, ALL_TEMPORAL_LAYERS)
    wanted += sum(consumer.bitrate for consumer in consumers
                  if not consumer.closed and consumer.active and consumer not in ladders)
    return wanted


def hold_upgrade(last_downgrade: float | None, now: float) -> bool:
    """Whether an up-switch must still wait after a bandwidth downgrade at `last_downgrade`."""
    return last_downgrade is not None and now - last_downgrade < UPGRADE_HOLD
