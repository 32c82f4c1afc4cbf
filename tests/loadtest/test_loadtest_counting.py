"""The harness's own counting, with this test standing in for the relay: every duplicate,
stale, malformed and RTCP datagram is told apart from media, and the rate search retries."""

from __future__ import annotations

import select
import socket
import struct

from relay.loadtest.rate_search import RateSearch
from relay.loadtest.scenario import SSRC_BASE, fanout
from relay.loadtest.traffic import Traffic
from relay.loadtest.traffic_lib import lib


def _read_all(sock: socket.socket, count: int) -> list[bytes]:
    out = []
    while len(out) < count:
        ready, _, _ = select.select([sock], [], [], 5)
        assert ready, f"got {len(out)} of {count}"
        out.append(sock.recv(2048))
    return out


def _drain_until(traffic: Traffic, predicate) -> None:
    for _ in range(500):
        traffic.drain(10)
        if predicate(traffic.counts()):
            return
    raise AssertionError(f"counts never matched: {traffic.counts()}")


def test_sink_counts_duplicates_stale_malformed_and_rtcp_apart():
    traffic = Traffic(fanout("audio", 1), srtp_suite=None)
    middle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    middle.bind(("127.0.0.1", 0))
    try:
        traffic.set_destination(0, middle.getsockname())
        sink = traffic.sink_address(0)
        traffic.begin_step(100)
        t0 = lib.lt_now_ns()
        assert traffic.generate(t0, t0 + 50_000_000, 100.0) == 6  # 100 pkt/s for 50 ms, +1
        packets = _read_all(middle, 6)
        assert all(len(p) == 200 for p in packets)
        assert {struct.unpack("!I", p[8:12])[0] for p in packets} == {SSRC_BASE}
        for p in packets:
            middle.sendto(p, sink)
        middle.sendto(packets[2], sink)  # a duplicate
        middle.sendto(b"\x80\x6f" + b"\x00" * 20, sink)  # RTP without a stamp
        middle.sendto(b"\x81\xc8\x00\x06" + b"\x00" * 24, sink)  # an RTCP sender report
        _drain_until(traffic, lambda c: c.received + c.duplicates + c.malformed + c.rtcp == 9)
        counts = traffic.counts()
        assert (counts.sent, counts.received, counts.per_consumer) == (6, 6, [6])
        assert (counts.duplicates, counts.malformed, counts.rtcp, counts.stale) == (1, 1, 1, 0)
        assert counts.late_per_consumer == [0]
        assert 0 <= counts.latency_us["p50"] <= counts.latency_us["max"]
        traffic.begin_step(100)  # a new step: the old packet is stale, not a delivery
        middle.sendto(packets[0], sink)
        _drain_until(traffic, lambda c: c.stale == 1)
        assert traffic.counts().received == 0
    finally:
        middle.close()
        traffic.close()


def test_rate_search_retries_a_failure_and_bisects():
    search = RateSearch(1000, 100000, 0.05, 30)
    blip = {2000}  # one transient failure at 2000
    rates = []
    while not search.done:
        rate = search.next_rate()
        rates.append(rate)
        passed = rate <= 5000 and rate not in blip
        blip.discard(rate)
        search.record(rate, passed)
    assert rates[:3] == [1000, 2000, 2000]  # retried, then passed
    assert search.best == 5000 and search.first_failing == 5250
    assert (search.first_failing - search.best) <= 0.05 * search.first_failing


def test_rate_search_stops_at_the_cap_and_at_max_steps():
    search = RateSearch(1000, 3000, 0.05, 30)
    while not search.done:
        search.record(search.next_rate(), True)
    assert search.best == 3000 and search.first_failing is None and search.steps == 3
    search = RateSearch(1000, 100000, 0.05, 2)
    while not search.done:
        search.record(search.next_rate(), False)
    assert search.steps == 2 and search.best is None
