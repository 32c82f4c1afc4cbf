"""CoreSendHistory: numbers given by the C fan-out core (written into its arrays the way
fanout_core.c does) and by Python (`record_next`) share one counter, and the entries read
back are what a plain SendHistory recording the same sends holds, across ring wraps."""

from __future__ import annotations

from relay.transport.bwe.send_history import SendHistory
from relay.transport.core_send_history import CoreSendHistory


def core_send(history: CoreSendHistory, now: float, size: int) -> int:
    """What fanout_core.c does per numbered packet."""
    c = history.core_ring().c
    c.last += 1
    c.times[c.last & c.mask] = now
    c.sizes[c.last & c.mask] = size
    return c.last & 0xFFFF


def test_core_and_python_numbers_interleave_like_one_history():
    core, plain = CoreSendHistory(16), SendHistory(16)
    now = 0.0
    for step in range(200):  # many wraps of the 16-entry ring
        now += 0.001
        burst = step % 23  # sometimes more than the capacity between two reads
        for k in range(burst):
            assert core_send(core, now, 100 + k) == plain.record_next(now, 100 + k)
        if step % 3 == 0:  # a retransmission or a probe numbered by Python
            assert core.record_next(now, 50, 7) == plain.record_next(now, 50, 7)
        if step % 5 == 0:  # a feedback: reports the newest few
            for seq in range((plain.last - 3) & 0xFFFF, (plain.last + 1) & 0xFFFF):
                assert core.on_report(seq, now + 0.01) == plain.on_report(seq, now + 0.01)
    core.collect()
    assert core.last == plain.last > 1000
    assert core.entries == plain.entries
    assert core.sent == plain.sent
