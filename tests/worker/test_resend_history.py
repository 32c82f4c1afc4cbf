"""The per-consumer resend table (relay.worker.retransmission.ResendHistory): bounded, no
collisions between output seqs the store can both hold (across the 16-bit wrap too), and
an entry older than the store's max age reads as never resent."""

from __future__ import annotations

from relay.rtp.nack_buffer import AUDIO_CAPACITY, VIDEO_CAPACITY, VIDEO_MAX_AGE
from relay.worker.retransmission import ResendHistory


def test_sized_like_the_store():
    video, audio = ResendHistory.for_kind("video"), ResendHistory.for_kind("audio")
    for history, capacity in ((video, VIDEO_CAPACITY), (audio, AUDIO_CAPACITY)):
        assert capacity <= history.size < 2 * capacity
        assert 65536 % history.size == 0


def test_counts_and_times_per_seq():
    history = ResendHistory.for_kind("video")
    assert history.lookup(100, 5.0) == (0, 0.0)
    history.record(100, 5.0, 1)
    history.record(100, 5.3, 2)
    assert history.lookup(100, 5.4) == (2, 5.3)
    assert history.lookup(101, 5.4) == (0, 0.0)


def test_no_collision_within_the_store_window_across_the_wrap():
    history = ResendHistory.for_kind("video")
    # Every seq of a window the store can hold, straddling 65535 -> 0.
    window = [(65536 - VIDEO_CAPACITY // 2 + i) & 0xFFFF for i in range(VIDEO_CAPACITY)]
    for i, seq in enumerate(window):
        history.record(seq, 10.0 + i * 1e-4, 1 + i % 7)
    for i, seq in enumerate(window):
        assert history.lookup(seq, 10.5) == (1 + i % 7, 10.0 + i * 1e-4)


def test_same_slot_later_seq_replaces_and_old_entries_expire():
    history = ResendHistory.for_kind("video")
    history.record(7, 1.0, 3)
    assert history.lookup(7 + history.size, 1.1) == (0, 0.0)  # another packet, same slot
    assert history.lookup(7, 1.0 + VIDEO_MAX_AGE + 0.01) == (0, 0.0)  # the store dropped it
    history.record(7 + history.size, 2.0, 1)
    assert history.lookup(7, 2.1) == (0, 0.0)
