"""Dividing a transport's estimate among its consumers (relay/worker/bitrate_allocation.py),
with stand-in consumers: which spatial layer each is allowed, and what they want."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.worker.bitrate_allocation import distribute

NOW = 100.0
LAYERS = [150_000, 400_000, 800_000]


@dataclass
class Stream:
    started: bool = True
    last_time: float = NOW


@dataclass
class Receiver:
    bitrate: int


@dataclass
class Producer:
    streams: list[Stream]
    receivers: list[Receiver]


@dataclass(eq=False)
class FakeConsumer:
    producer: Producer
    consumer_type: str = "simulcast"
    target_spatial: int = 2
    priority: int = 1
    bitrate: int = 0
    closed: bool = False
    active: bool = True
    layer_streams: list[int] = field(default_factory=lambda: [0, 1, 2])
    limits: list[int] = field(default_factory=list)

    def set_bwe_limit(self, spatial: int, now: float) -> None:
        self.limits.append(spatial)


def _simulcast(silent: tuple[int, ...] = (), **kwargs) -> FakeConsumer:
    streams = [Stream(last_time=NOW - 5.0 if i in silent else NOW) for i in range(3)]
    return FakeConsumer(Producer(streams, [Receiver(b) for b in LAYERS]), **kwargs)


def test_each_consumer_gets_the_highest_layer_that_fits() -> None:
    audio = FakeConsumer(Producer([], []), consumer_type="simple", bitrate=40_000)
    video = _simulcast()
    wanted = distribute([audio, video], 40_000 + 400_000 + 10_000, NOW)
    assert video.limits == [1]
    assert wanted == 40_000 + 800_000  # what probing aims for: the preferred layers
    distribute([audio, video], 100_000, NOW)
    assert video.limits[-1] == 0  # the lowest layer flows whatever the estimate


def test_priority_steps_first() -> None:
    low, high = _simulcast(), _simulcast(priority=2)
    distribute([low, high], 150_000 + 150_000 + 650_000, NOW)
    assert (low.limits, high.limits) == ([0], [2])


def test_a_paused_layer_is_no_bandwidth_limit() -> None:
    """The sender stopped encoding the top layer (CPU): the consumer gets every layer that
    flows, and its limit stays at its preferred layer, so the way back up is not held as
    after a bandwidth downgrade."""
    video = _simulcast(silent=(2,))
    wanted = distribute([video], 10_000_000, NOW)
    assert video.limits == [2]
    assert wanted == 400_000
    capped = _simulcast(silent=(2,))
    distribute([capped], 200_000, NOW)
    assert capped.limits == [0]  # the bandwidth does limit this one
