"""transport-cc feedback as Chromium actually sends it (recorded from the room demo into
tests/rtp/data/chrome_transport_cc_feedback.txt): relay's parser reads every packet, the
reports are continuous, and the send-side estimator takes them against a send history."""

from __future__ import annotations

from pathlib import Path

from relay.rtp.transport_cc import parse_feedback
from relay.transport.bwe.estimator import SendSideEstimator, feedback_packets

DATA = Path(__file__).with_name("data") / "chrome_transport_cc_feedback.txt"


def recorded() -> list[bytes]:
    lines = (line.strip() for line in DATA.read_text().splitlines())
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def test_chrome_feedback_parses_and_is_continuous():
    packets = recorded()
    assert len(packets) >= 40
    feedback = [parse_feedback(p) for p in packets]
    assert any(p[0] & 0x20 for p in packets)  # Chrome pads most to 4 bytes (the RTCP P bit)
    for prev, cur in zip(feedback, feedback[1:], strict=False):
        assert cur.base_seq == (prev.base_seq + prev.status_count) & 0xFFFF
        assert cur.fb_count == (prev.fb_count + 1) & 0xFF
        assert cur.reference_time >= prev.reference_time
    for f in feedback:
        assert len(f.received) + len(f.lost()) == f.status_count
        arrivals = [r.arrival_us for r in f.received]
        assert arrivals == sorted(arrivals)
    assert {f.media_ssrc for f in feedback} == {feedback[0].media_ssrc}


def test_the_estimator_takes_chrome_feedback():
    feedback = [parse_feedback(p) for p in recorded()]
    total = feedback[-1].base_seq + feedback[-1].status_count - feedback[0].base_seq
    estimator = SendSideEstimator(600_000)
    for i in range(total):  # what relay sent: one packet every 5 ms
        estimator.history.record_next(i * 0.005, 1000)
    for i, f in enumerate(feedback):
        estimator.on_feedback(0.1 * (i + 1), feedback_packets(f))
    assert estimator.feedbacks == len(feedback)
    assert estimator.history.unknown == 0 and estimator.history.duplicates == 0
    assert 30_000 <= estimator.available_bitrate <= 10_000_000
