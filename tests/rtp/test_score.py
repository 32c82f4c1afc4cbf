import pytest

from relay.rtp.score import StreamScore, loss_from_counts, raw_score, rtt_factor


def test_raw_score_from_loss():
    assert raw_score(0.0) == 10.0
    assert raw_score(0.01) == pytest.approx(9.6059601)
    assert raw_score(0.05) == pytest.approx(8.1450625)
    assert raw_score(0.10) == pytest.approx(6.561)
    assert raw_score(0.20) == pytest.approx(4.096)
    assert raw_score(0.50) == pytest.approx(0.625)
    assert raw_score(1.0) == 0.0
    assert raw_score(-1.0) == 10.0 and raw_score(2.0) == 0.0  # clamped


def test_rtt_factor():
    assert rtt_factor(None) == 1.0
    assert rtt_factor(0.3) == 1.0
    assert rtt_factor(0.65) == pytest.approx(0.75)
    assert rtt_factor(1.0) == 0.5
    assert rtt_factor(5.0) == 0.5
    assert raw_score(0.0, rtt=0.65) == pytest.approx(7.5)
    assert raw_score(0.1, rtt=2.0) == pytest.approx(3.2805)


def test_loss_from_counts():
    assert loss_from_counts(100, 90) == 0.1
    assert loss_from_counts(100, 90, repaired=10) == 0.0
    assert loss_from_counts(100, 105) == 0.0  # duplicates
    assert loss_from_counts(0, 0) == 0.0


def test_smoothing_and_change_signal():
    score = StreamScore(window=3)
    assert score.score == 10
    assert score.update(0.0) is False  # 10
    # raws [10, 6.561], weights 1, 2: 23.122 / 3 = 7.71 -> 8
    assert score.update(0.1) is True and score.score == 8
    # raws [10, 6.561, 6.561], weights 1..3: 42.805 / 6 = 7.13 -> 7
    assert score.update(0.1) is True and score.score == 7
    # window full of 6.561 -> 7: unchanged
    assert score.update(0.1) is False and score.score == 7
    for _ in range(3):
        score.update(0.0)
    assert score.score == 10


def test_fraction_lost_from_receiver_report():
    score = StreamScore(window=1)
    assert score.update_from_fraction_lost(64) is True  # 25 %: 10 * 0.75**4 = 3.16
    assert score.score == 3
    assert score.update_from_fraction_lost(0, rtt=0.1) is True
    assert score.score == 10
    score.reset(initial=5)
    assert score.score == 5


def test_bad_window():
    with pytest.raises(ValueError):
        StreamScore(window=0)
