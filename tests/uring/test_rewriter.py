"""relay.uring.rewriter (the C in rewriter_core.c, which the C fan-out core also calls): the
seq/ts continuity rules, without sockets, applied by the worker's fan-out loop
(relay.worker.fanout.fan_out) as the worker applies them. The expected numbers are worked out
by hand from the rules, independently of the code."""

from __future__ import annotations

import struct
from collections import Counter

from relay.rtp.packet import build_rtp
from relay.rtp.rewriter import NO_PAYLOAD_TYPE, InputStream
from relay.uring.rewriter import RtpRewriter
from relay.worker.fanout import fan_out

PT_TABLE = bytes(100 if pt == 111 else NO_PAYLOAD_TYPE for pt in range(128))


class _Consumer:
    """What the fan-out loop reads of a consumer; `send` records what it would send."""

    def __init__(self, rewriter):
        self.rewriter = rewriter
        self.srtp = None
        self.vp8 = None
        self.fd, self.addr = -1, None
        self.py_dropped = self.py_ring_drops = self.py_packets_sent = self.py_bytes_sent = 0
        self.py_payload_bytes = 0
        self.py_temporal_drops = 0
        self.sent: list[bytes] = []

    def on_temporal_drop(self, seq):
        self.py_temporal_drops += 1
        self.rewriter.skip(seq)

    def send(self, fd, data, addr):
        self.sent.append(bytes(data))
        return True


class Feed:
    """An input stream feeding one consumer through the worker's fan-out loop."""

    def __init__(self, ssrc=0xAAAA):
        self.stream = InputStream(ssrc)
        self.rw = RtpRewriter(0x7777, PT_TABLE, 48000)
        self.consumer = _Consumer(self.rw)
        # the consumer takes VP8 temporal layer 0 only: a packet with tid 1 is skipped
        self.groups = ((bytes(256), (self.consumer,), 0, 0),)
        self.scratch = bytearray(2048)
        self.out: list[tuple[int, int, int, int]] = []

    def packet(self, seq, ts, now=0.0, ssrc=None, pt=111, marker=False, tid=0):
        ssrc = self.stream.ssrc if ssrc is None else ssrc
        buf = bytearray(build_rtp(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                                  marker=marker))
        older = self.stream.update(seq, ts, now)
        before = len(self.consumer.sent)
        fan_out(self.groups, memoryview(buf), len(buf), ssrc, seq, ts, older, tid, 0, now,
                self.scratch, memoryview(self.scratch), Counter())
        if len(self.consumer.sent) > before:
            b1, oseq, ots, ossrc = struct.unpack_from("!BHII", self.consumer.sent[-1], 1)
            self.out.append((b1, oseq, ots, ossrc))
            return True
        return False


def test_first_packet_keeps_numbering_and_rewrites_ssrc_pt_marker():
    f = Feed()
    f.packet(500, 9000, marker=True)
    f.packet(501, 9960)
    assert f.out == [(0x80 | 100, 500, 9000, 0x7777), (100, 501, 9960, 0x7777)]


def test_unknown_payload_type_is_not_sent():
    f = Feed()
    assert not f.packet(1, 1, pt=0)


def test_pause_resume_same_stream_no_seq_gap_ts_keeps_real_time():
    f = Feed()
    for seq in range(65530, 65536):
        f.packet(seq, seq * 10)
    f.rw.stop(f.stream)
    for seq in range(0, 50):  # not forwarded while paused
        f.stream.update(seq, (65536 + seq) * 10, 0.0)
    f.packet(50, (65536 + 50) * 10)
    assert [o[1] for o in f.out] == [65530, 65531, 65532, 65533, 65534, 65535, 0]
    assert f.out[-1][2] == (65536 + 50) * 10  # the pause's real time is kept in the timestamp


def test_resume_never_goes_backwards_when_the_sender_rewinds():
    f = Feed()
    f.packet(10, 100_000)
    f.rw.stop(f.stream)
    f.packet(11, 50_000)  # same SSRC, timestamp went back
    assert f.out[1][1] == 11 and f.out[1][2] == 100_001


def test_ssrc_change_continues_seq_and_ts_from_wall_clock():
    f = Feed(0xAAAA)
    f.packet(100, 1_000_000, now=1.0)
    f.packet(101, 1_000_960, now=1.02)
    f.rw.stop(f.stream)
    f.stream.reset(0xBBBB)
    f.packet(7, 5, now=1.52, ssrc=0xBBBB)  # 0.5 s later, brand new numbering
    f.packet(8, 965, now=1.54, ssrc=0xBBBB)
    assert [o[1] for o in f.out] == [100, 101, 102, 103]
    assert f.out[2][2] == 1_000_960 + 24_000  # 0.5 s at 48 kHz
    assert f.out[3][2] == f.out[2][2] + 960


def test_reordered_packet_older_than_the_sync_point_is_dropped():
    f = Feed()
    for seq in range(1, 4):
        f.packet(seq, seq)
    f.rw.stop(f.stream)
    f.stream.update(4, 4, 0.0)
    f.stream.update(5, 5, 0.0)
    assert f.packet(6, 6)  # sync: out 4
    assert not f.packet(5, 5)  # older than the sync point
    assert f.packet(7, 7)
    assert f.packet(6, 6)  # a duplicate after the sync point is forwarded as is
    assert [o[1] for o in f.out] == [1, 2, 3, 4, 5, 4]


def test_input_stream_order_tracking():
    s = InputStream()
    assert not s.update(10, 0, 0.0)
    assert s.update(10, 0, 0.0)  # duplicate
    assert s.update(9, 0, 0.0)  # reordered
    assert not s.update(11, 0, 0.0)
    assert s.update(0, 0, 0.0)  # 11 → 0: 11 back, reordered
    assert not s.update(60000, 0, 0.0) and s.max_seq == 60000  # 5547 back: a restart
    assert not s.update(60001, 0, 0.0) and s.max_seq == 60001


def test_temporal_skips_give_their_numbers_to_the_next_packet_and_map_back():
    f = Feed()
    # input 65533..65535, 0..6 across the wrap; tid 1 (skipped) at 65535, 0, 3 and 6
    skipped = {65535, 0, 3, 6}
    for seq in [65533, 65534, 65535, 0, 1, 2, 3, 4, 5, 6, 7]:
        f.packet(seq, seq * 10, tid=1 if seq in skipped else 0)
    # sent: 65533, 65534 as they are; then 1, 2 after a run of two skips (-2); 4, 5 after
    # one more (-3); 7 after one more (-4): no gap in the output
    assert [o[1] for o in f.out] == [65533, 65534, 65535, 0, 1, 2, 3]
    assert f.consumer.py_temporal_drops == 4
    rw = f.rw
    assert rw.seq_offset == (-4) & 0xFFFF and rw.skip_seq == 6
    # a NACK for an output number is mapped back across the runs (each had its offset)
    assert [rw.input_seq(out) for out in [65533, 65534, 65535, 0, 1, 2, 3]] == [
        65533, 65534, 1, 2, 4, 5, 7]
    # a late packet older than the last skip is not sent: its number may be taken
    assert not f.packet(5, 50)
    assert f.packet(8, 80) and f.out[-1][1] == 4


def test_a_resume_forgets_the_skips_and_continues_after_the_last_number():
    f = Feed()
    for seq in range(100, 106):
        f.packet(seq, seq, tid=1 if seq % 2 else 0)  # 101, 103, 105 skipped
    assert [o[1] for o in f.out] == [100, 101, 102]
    # the stream's newest was 105 (skipped, offset -3 since): the output got to 102
    f.rw.stop(f.stream)
    assert (f.rw.last_seq, f.rw.skip_seq) == (102, -1)
    f.stream.update(106, 106, 0.0)
    assert f.packet(107, 107)
    assert f.out[-1][1] == 103 and f.rw.input_seq(103) == 107


def test_only_the_newest_skip_runs_are_remembered():
    from relay.uring.rewriter import SKIP_RUNS

    f = Feed()
    seq = 1000
    f.packet(seq, 0)
    for _ in range(SKIP_RUNS + 5):  # a skip, then a packet sent: one run each
        f.packet(seq + 1, 0, tid=1)
        f.packet(seq + 2, 0)
        seq += 2
    out_first = f.out[0][1]
    assert out_first == 1000 and f.out[-1][1] == 1000 + SKIP_RUNS + 5
    assert f.rw.input_seq(f.out[-1][1]) == seq
    assert f.rw.input_seq(f.out[-3][1]) == seq - 4
    assert f.rw.input_seq(out_first) is None  # older than the runs remembered
