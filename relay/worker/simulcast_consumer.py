"""Worker-side simulcast consumer: one of a producer's encodings at a time (a spatial layer),
and VP8 temporal layers within it.

It switches spatial layer only on a key frame of the layer it switches to (`switch_target`,
requested at once; "layerschange" each time). Its preferred layer (`set_preferred_layers`)
is where it wants to be; where it is follows what the sender actually sends:
- starting: if the preferred layer is not arriving, or has not yet sent a key frame since the
  sender started (a consumer that joined before the first packet), it starts on the first
  lower layer whose key frame comes (`_fallback_layer`), asking for one while it waits
  (`_ask_for_a_start`);
- running (`check_layers`, every 0.25 s): when its layer has been silent for
  `MISSING_LAYER_SILENCE` it steps down to the best layer still flowing, and when a better
  layer up to the preferred one flows again it steps back up; a layer between the current
  and the wanted one that starts meanwhile lifts it part of the way (`_better_fallback`, as a
  browser brings its layers up one by one). It drops VP8 packets above its temporal layer (TID),
keeping its sequence numbers gap-free (`RtpRewriter.skip`); a temporal switch up happens at
a TL0 frame or earlier at a layer-sync (Y bit) frame (`relay.worker.temporal_layers`).

The bitrate allocation (`relay.worker.bitrate_allocation`) bounds both: `set_bwe_limit`
gives a spatial limit (held `UPGRADE_HOLD` before going up again after a downgrade) and a
temporal limit for that spatial layer, which applies like a preferred temporal layer while
the consumer is on that layer (`_sync_temporal`); `target_layers` reports both.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError
from worker_proto.methods import ConsumerEvent
from worker_proto.validation import require_dict, require_int

from .bitrate_allocation import hold_upgrade
from .consumer import ALL_TEMPORAL_LAYERS, Consumer, layer_flowing

if TYPE_CHECKING:
    from relay.worker.producer import Producer

# A layer that has not started this long after the sender's first packet is taken as missing
# by a consumer waiting to start on it (the layers' first packets race each other).
LAYER_START_GRACE = 1.0


class SimulcastConsumer(Consumer):
    # preferred_tid: the highest VP8 TID asked for (ALL_TEMPORAL_LAYERS: all); the bitrate
    # allocation's temporal limit as allocated, and in effect (with its spatial limit)
    __slots__ = ("preferred_tid", "bwe_temporal_allocated", "bwe_temporal_limit")
    consumer_type = "simulcast"

    def _choose_layers(self, data: dict, kind: str, producer: Producer, consumable: list,
                       stream_index: int) -> tuple[list[int], int, int | None]:
        # Spatial layer i is consumableRtpEncodings[i] (lowest first, as mediasoup).
        if kind != "video" or len(consumable) < 2:
            raise ArgumentError("a simulcast consumer needs a video producer with several encodings")
        layer_streams = []
        for i, entry in enumerate(consumable):
            require_dict(entry, f"consumableRtpEncodings[{i}]")
            layer_streams.append(producer.stream_index(
                require_int(entry, "ssrc", 0, 0xFFFFFFFF, name=f"consumableRtpEncodings[{i}].ssrc")))
        target_spatial = _preferred_spatial(data.get("preferredLayers"), len(layer_streams))
        self.preferred_tid = _preferred_temporal(data.get("preferredLayers"))
        self.bwe_temporal_allocated = ALL_TEMPORAL_LAYERS
        self.bwe_temporal_limit = ALL_TEMPORAL_LAYERS
        return layer_streams, target_spatial, self.preferred_tid

    def set_preferred_layers(self, data: dict) -> dict:
        """Aim at spatial layer `spatialLayer` (clamped to those there are) and temporal layer
        `temporalLayer` (VP8 TID; absent: all), within what the bitrate allocation allows.
        The spatial switch happens on that layer's next key frame (asked for now), the
        temporal one at the next start of a TL0 frame; until then the current layers go on."""
        self.target_spatial = _preferred_spatial(data, len(self.layer_streams))
        self.preferred_tid = _preferred_temporal(data)
        self._sync_temporal()
        self.producer.rebuild_fanout()
        target_stream = self.layer_streams[self.target_spatial]
        if self.key_frame_pending:  # not started yet: just wait for the new target's key frame
            self.stream_index = target_stream
            self.switch_target = None
            self.producer.rebuild_fanout()
            self.request_key_frame()
        elif target_stream != self.stream_index:
            self.switch_target = target_stream
            self.request_key_frame()
        else:
            self.switch_target = None
        return self.preferred_layers()

    def preferred_layers(self) -> dict | None:
        return {"spatialLayer": self.target_spatial,
                "temporalLayer": _temporal_layer(self.preferred_tid)}

    def current_layers(self) -> dict | None:
        if self.current_spatial is None:
            return None
        return {"spatialLayer": self.current_spatial, "temporalLayer": _temporal_layer(self.max_tid)}

    def target_layers(self) -> dict | None:
        """The layers it aims at now: the preferred ones, bounded by the bandwidth."""
        temporal = min(self.preferred_tid, self.bwe_temporal_limit)
        return {"spatialLayer": self._wanted_spatial(), "temporalLayer": _temporal_layer(temporal)}

    def _wanted_spatial(self) -> int:
        limit = self.bwe_spatial_limit
        return self.target_spatial if limit is None else min(self.target_spatial, limit)

    def set_bwe_limit(self, spatial: int, now: float,
                      temporal: int = ALL_TEMPORAL_LAYERS) -> None:
        """The bitrate allocation's highest spatial layer for this consumer, and its highest
        VP8 TID there (ALL_TEMPORAL_LAYERS: all); applied by `check_layers` (at once, and
        every LAYER_CHECK_INTERVAL)."""
        self.bwe_allocated = spatial
        self.bwe_temporal_allocated = temporal
        self.check_layers(now)

    def _apply_bwe_limit(self, now: float) -> None:
        """The allocation takes effect: a lower spatial layer at once, a higher one only once
        `UPGRADE_HOLD` has passed since a downgrade it caused (hysteresis); the temporal
        limit with it."""
        spatial = self.bwe_allocated
        if spatial is None:
            return
        limit = self.bwe_spatial_limit
        if limit is None:
            limit = self.target_spatial  # no limit yet: the preferred layer
        if spatial < limit:
            self.bwe_downgraded_at = now
        elif spatial > limit and hold_upgrade(self.bwe_downgraded_at, now):
            # Held on a lower layer: the allocation's ladder went past it whole (at the
            # preferred temporal layer), so every temporal layer of it fits.
            self.bwe_spatial_limit = limit
            self.bwe_temporal_limit = ALL_TEMPORAL_LAYERS
            return
        self.bwe_spatial_limit = spatial
        self.bwe_temporal_limit = self.bwe_temporal_allocated

    def apply_temporal_layer(self, up_to: int | None = None) -> None:
        """The pending temporal target takes effect (the producer calls this at the start of
        a TL0 frame, which every temporal layer can decode from), or, with `up_to`, a switch
        up to TID `up_to` only (at a layer-sync frame of that TID); the target stays pending
        until reached."""
        if self.pending_max_tid is None:
            return
        if up_to is not None and up_to < self.pending_max_tid:
            self.max_tid = up_to
        else:
            self.max_tid = self.pending_max_tid
            self.pending_max_tid = None
        if self.current_spatial is not None:
            self._ctx.notify(self.id, ConsumerEvent.LAYERS_CHANGE, self.current_layers())

    def on_key_frame(self, index: int) -> bool:
        """A key frame starts on producer stream `index`: start (or switch layer) now if we
        were waiting for it. True if the fan-out must be rebuilt."""
        if self.key_frame_pending and self.stream_index == index:
            self.key_frame_pending = False
            self._take_pending_temporal()  # a key frame starts a TL0 frame
            self._set_current_layer()
            return True
        if self.key_frame_pending and self._fallback_layer(index):
            # The target layer isn't arriving (the sender dropped that encoding): start on
            # this lower one, and go up on the target's key frame if it ever comes.
            self.switch_target = self.stream_index
            self.stream_index = index
            self.key_frame_pending = False
            self._take_pending_temporal()
            self._set_current_layer()
            return True
        if self.switch_target == index and self.active:
            # The rewriter re-syncs on this packet as on an input SSRC change: sequence
            # numbers continue at last + 1, the timestamp by the wall-clock time since.
            self.rewriter.stop(self.producer.streams[self.stream_index])
            self.stream_index = index
            self.switch_target = None
            self._take_pending_temporal()
            self._set_current_layer()
            return True
        if self.switch_target is not None and self.active and self._better_fallback(index):
            # Running on a fallback layer and a layer between it and the (still missing)
            # target starts: go up to it now, and on to the target if it ever comes.
            self.rewriter.stop(self.producer.streams[self.stream_index])
            self.stream_index = index
            self._take_pending_temporal()
            self._set_current_layer()
            return True
        return False

    def check_layers(self, now: float) -> None:
        """Step down from a layer that went silent, or back up to a better one that flows
        again (the producer calls this every LAYER_CHECK_INTERVAL; control path). The switch
        itself waits for a key frame of that layer, asked for now."""
        if not self.active:
            return
        if self.key_frame_pending:
            self._ask_for_a_start(now)
            return
        self._apply_bwe_limit(now)
        if self._sync_temporal():
            self.producer.rebuild_fanout()
        best = None
        for spatial in range(self._wanted_spatial(), -1, -1):
            if self._flowing(self.layer_streams[spatial], now):
                best = self.layer_streams[spatial]
                break
        if best is None or best == self.switch_target:
            return  # nothing flows (the sender paused), or the switch is already asked for
        if best == self.stream_index:
            target = self.switch_target
            if target is not None and target in self.layer_streams:
                spatial = self.layer_streams.index(target)
                if spatial > self._wanted_spatial():
                    self.switch_target = None  # above what the bandwidth allows now
                elif spatial < self._wanted_spatial() \
                        and self._flowing(self.stream_index, now):
                    self.switch_target = None  # a step down that is no longer needed
            return
        self.switch_target = best
        self.request_key_frame()

    def _ask_for_a_start(self, now: float) -> None:
        """A consumer still waiting to start on a layer that isn't arriving, while a lower
        one is: that layer's next key frame starts it (`_fallback_layer`), so ask for one.
        The key frames that answered earlier requests may all have come in the layers' start
        race, which does not count: without this, such a consumer waited until its layer
        came (seen in the browser meeting test: 17 s without video, its publisher sending
        only r0 and r1 while its estimate was low). The producer's requester coalesces: one
        request in flight, answered by the next key frame."""
        first = self.producer.first_packet_time
        if first is None or now - first < LAYER_START_GRACE or self.producer.key_frames.pending:
            return
        if self.stream_index not in self.layer_streams:
            return
        target = self.layer_streams.index(self.stream_index)
        if not self._flowing(self.stream_index, now) \
                and any(self._flowing(i, now) for i in self.layer_streams[:target]):
            self.request_key_frame()

    def _flowing(self, index: int, now: float) -> bool:
        return layer_flowing(self.producer.streams[index], now)

    def _better_fallback(self, index: int) -> bool:
        """Whether a key frame on stream `index` should lift a consumer that runs on a lower
        fallback layer while its target (`switch_target`) is missing: `index` lies between
        the two, and nothing above it up to the target arrives."""
        if index not in self.layer_streams \
                or self.switch_target not in self.layer_streams \
                or self.stream_index not in self.layer_streams:
            return False
        spatial = self.layer_streams.index(index)
        current = self.layer_streams.index(self.stream_index)
        target = self.layer_streams.index(self.switch_target)
        if not current < spatial < target:
            return False
        now = time.monotonic()
        return not any(self._flowing(i, now) for i in self.layer_streams[spatial + 1:target + 1])

    def _fallback_layer(self, index: int) -> bool:
        """Whether a simulcast consumer still waiting to start on stream `self.stream_index`
        should start on stream `index` (a key frame starts there) instead: `index` is a lower
        layer, the best of those arriving, and the target is missing (never started, or
        silent for `MISSING_LAYER_SILENCE`). In the first `LAYER_START_GRACE` after the
        sender's first packet, a lower layer's first key frame does not count: the layers'
        first packets race each other. (A consumer that joined before the first packet keeps
        asking for key frames until one starts it, then moves up in `check_layers`.)"""
        if index not in self.layer_streams:
            return False
        spatial = self.layer_streams.index(index)
        target = self.layer_streams.index(self.stream_index)
        if spatial >= target:
            return False
        now = time.monotonic()
        first = self.producer.first_packet_time
        racing = first is None or now - first < LAYER_START_GRACE
        if racing and self.producer.receivers[index].keyframes < 2:
            return False
        if self._flowing(self.stream_index, now) or not self._flowing(index, now):
            return False
        return not any(self._flowing(i, now) for i in self.layer_streams[spatial + 1:target])

    def _sync_temporal(self) -> bool:
        """Aim at the preferred temporal layer, bounded by the allocation's temporal limit
        while on the spatial layer that limit is for (another layer, on its way there, keeps
        its temporal layers). Returns whether the pending target changed (the fan-out must
        be rebuilt: the producer parses TIDs only for consumers that filter them)."""
        temporal = self.preferred_tid
        if self.layer_streams.index(self.stream_index) == self._wanted_spatial():
            temporal = min(temporal, self.bwe_temporal_limit)
        pending = None if temporal == self.max_tid else temporal
        if pending == self.pending_max_tid:
            return False
        self.pending_max_tid = pending
        return True

    def _take_pending_temporal(self) -> None:
        self._sync_temporal()
        if self.pending_max_tid is not None:
            self.max_tid = self.pending_max_tid
            self.pending_max_tid = None

    def _set_current_layer(self) -> None:
        spatial = self.layer_streams.index(self.stream_index)
        if spatial != self.current_spatial:
            self.current_spatial = spatial
            self._ctx.notify(self.id, ConsumerEvent.LAYERS_CHANGE, self.current_layers())



def _preferred_temporal(layers: Any) -> int:
    """The highest VP8 TID to forward ({temporalLayer}); all of them if none is given."""
    if not isinstance(layers, dict) or layers.get("temporalLayer") is None:
        return ALL_TEMPORAL_LAYERS
    temporal = layers["temporalLayer"]
    if not isinstance(temporal, int) or isinstance(temporal, bool) or temporal < 0:
        raise ArgumentError("temporalLayer must be a non-negative integer")
    return ALL_TEMPORAL_LAYERS if temporal >= 3 else temporal  # VP8's TID has 2 bits


def _temporal_layer(max_tid: int) -> int | None:
    return None if max_tid >= 3 else max_tid


def _preferred_spatial(layers: Any, count: int) -> int:
    """The spatial layer asked for ({spatialLayer}), clamped to 0..count-1; the highest if
    none is given."""
    if layers is None:
        return count - 1
    if not isinstance(layers, dict):
        raise ArgumentError("preferredLayers must be an object")
    spatial = layers.get("spatialLayer")
    if not isinstance(spatial, int) or isinstance(spatial, bool) or spatial < 0:
        raise ArgumentError("preferredLayers.spatialLayer must be a non-negative integer")
    return min(spatial, count - 1)
