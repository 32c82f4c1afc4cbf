"""relay-loadtest --transport-cc: the generator numbers every packet per send transport, the
worker records every number and sends feedback, and the harness counts the feedback that
comes back; with it off, none of that happens. Exact counts at low rates."""

from __future__ import annotations

import select
import socket
import struct

import pytest
from test_loadtest_cli import assert_exact, run_cli

from relay.loadtest.scenario import (
    AUDIO_LEVEL_EXT_ID,
    SSRC_BASE,
    TRANSPORT_CC_EXT_ID,
    fanout,
    rooms,
)
from relay.loadtest.traffic import TRANSPORT_CC_FIRST_SEQ, Traffic
from relay.loadtest.traffic_lib import lib
from relay.rtp.transport_cc import extension_value_offset, read_transport_seq


def assert_transport_cc(entry: dict, on: bool, consumers: int, numbered: bool | None = None
                        ) -> None:
    """One worker's run: exact counts, and transport-cc negotiated, every packet's number
    recorded and feedback sent and received back when on; none of it when off (``numbered``:
    whether the generator numbers packets all the same; default: only when on)."""
    (step,) = entry["steps"]
    assert_exact(step, consumers)
    check = dict(entry["transportCc"])
    # what the worker numbers when forwarding: video consumers, whenever the producers
    # declare the extension (the router offers audio consumers none)
    assert check.pop("consumers") == consumers
    assert check.pop("consumersNumbered") in (0, consumers)
    assert check == {
        "requested": "on" if on else "off", "producersNegotiated": 1 if on else 0,
        "producers": 1, "sendTransportsWithTransportCc": 1 if on else 0,
        "sendTransports": 1, "generatorNumbersPackets": on if numbered is None else numbered}
    feedback = step["receiveFeedback"]
    assert feedback["rtpPacketsReceived"] == step["packetsIn"]
    assert feedback["rembPacketsSent"] == 0
    assert feedback["transportCcDuplicates"] == feedback["transportCcRefused"] == 0
    assert feedback["transportCcEvicted"] == 0
    assert step["rtcpAtSenders"] <= step["rtcpPackets"]
    if on:
        assert feedback["types"] == ["transport-cc"]
        # every packet's transport-wide number reached the worker's receiver, once
        assert feedback["transportCcPackets"] == step["packetsIn"] > 0
        # feedback every 50-250 ms, and it came back to the generator's socket
        assert feedback["feedbackPacketsSent"] >= step["duration"] / 0.25 - 1
        assert 0 < step["transportCcFeedbackPackets"] <= feedback["feedbackPacketsSent"]
        assert step["transportCcFeedbackPackets"] <= step["rtcpAtSenders"]
    else:
        assert feedback["types"] == [None]
        assert feedback["transportCcPackets"] == feedback["feedbackPacketsSent"] == 0
        assert step["transportCcFeedbackPackets"] == 0


def test_transport_cc_both_feeds_back_every_packet_only_when_on(tmp_path):
    proc, data = run_cli(tmp_path, "--rate", "300", "--duration", "1", "--consumers", "2",
                         "--kind", "video", "--send-mode", "copy", "--transport-cc", "both")
    assert proc.returncode == 0, proc.stderr
    assert list(data["modes"]) == ["copy transport-cc-off", "copy transport-cc-on"]
    assert len({entry["workerPid"] for entry in data["modes"].values()}) == 2
    for label, entry in data["modes"].items():
        # both: the off worker's packets carry the numbers too (only the feedback differs)
        assert_transport_cc(entry, label.endswith("-on"), 2, numbered=True)
        assert entry["transportCc"]["consumersNumbered"] == 2  # video: both, either way
    assert "transport-cc on: 1 of 1 producers negotiated it" in proc.stdout
    assert data["comparison"]["baseline"] == "copy transport-cc-off"


def test_quality_and_transport_cc_both_make_four_workers_off_off_first(tmp_path):
    proc, data = run_cli(tmp_path, "--rate", "200", "--duration", "1", "--consumers", "1",
                         "--kind", "audio", "--srtp", "--send-mode", "copy",
                         "--quality", "both", "--transport-cc", "both")
    assert proc.returncode == 0, proc.stderr
    assert list(data["modes"]) == [
        "copy quality-off transport-cc-off", "copy quality-off transport-cc-on",
        "copy quality-on transport-cc-off", "copy quality-on transport-cc-on"]
    for label, entry in data["modes"].items():
        _, quality, tcc = label.split()
        assert entry["quality"]["requested"] == quality.rsplit("-", 1)[1]
        assert_transport_cc(entry, tcc == "transport-cc-on", 1, numbered=True)
        assert entry["transportCc"]["consumersNumbered"] == 0  # audio


def test_transport_cc_over_webrtc_comes_back_to_the_producer_peers_socket(tmp_path):
    proc, data = run_cli(tmp_path, "--transport", "webrtc", "--rate", "300", "--duration", "1",
                         "--consumers", "2", "--transport-cc", "on")
    assert proc.returncode == 0, proc.stderr
    (entry,) = data["modes"].values()
    assert_transport_cc(entry, True, 2)


def _read(sock: socket.socket, count: int) -> list[bytes]:
    out = []
    while len(out) < count:
        ready, _, _ = select.select([sock], [], [], 5)
        assert ready, f"got {len(out)} of {count}"
        out.append(sock.recv(2048))
    return out


@pytest.mark.parametrize("scenario, groups", [
    (rooms("audio", 1, 3), [[0], [1], [2]]),  # three send transports, a counter each
    (fanout("video", 2, streams=2), [[0, 1]]),  # one transport, its two streams share one
], ids=["rooms-audio", "fanout-video-2-streams"])
def test_generator_numbers_every_packet_per_send_transport_across_the_wrap(scenario, groups):
    traffic = Traffic(scenario, srtp_suite=None)
    middle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    middle.bind(("127.0.0.1", 0))
    try:
        for stream in range(scenario.streams):
            traffic.set_destination(stream, middle.getsockname())
        traffic.enable_transport_cc(TRANSPORT_CC_EXT_ID)
        seen: dict[int, list[int]] = {}  # stream -> transport-wide numbers in send order
        order: list[int] = []  # streams in send order
        for _ in range(2):  # two steps: the counters carry on across them
            traffic.begin_step(1000)
            t0 = lib.lt_now_ns()
            for tick in range(9):  # 100 pkt/s per stream for 1.6 s, read every 0.2 s
                sent = traffic.generate(t0, t0 + tick * 200_000_000, 100.0)
                for packet in _read(middle, sent):
                    stream = struct.unpack("!I", packet[8:12])[0] - SSRC_BASE
                    seq = read_transport_seq(packet, len(packet), TRANSPORT_CC_EXT_ID)
                    assert seq is not None and len(packet) == scenario.packet_size
                    if scenario.kind == "audio":  # the audio level is still there
                        level = extension_value_offset(packet, len(packet),
                                                       AUDIO_LEVEL_EXT_ID, 1)
                        assert level > 0 and packet[level] == 0x90
                    seen.setdefault(stream, []).append(seq)
                    order.append(stream)
        for group in groups:
            numbers = [seen[s].pop(0) for s in order if s in group]
            assert len(numbers) > 256  # past the wrap from the first number
            assert numbers == [(TRANSPORT_CC_FIRST_SEQ + i) & 0xFFFF
                               for i in range(len(numbers))]
    finally:
        middle.close()
        traffic.close()


def test_sinks_count_transport_cc_feedback_at_the_generator_apart_from_other_rtcp():
    traffic = Traffic(fanout("audio", 1), srtp_suite=None)
    worker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the worker
    worker.bind(("127.0.0.1", 0))
    feedback = bytes([0x8F, 205, 0, 4]) + b"\x00" * 16  # RTPFB FMT 15
    nack = bytes([0x81, 205, 0, 3]) + b"\x00" * 12  # RTPFB FMT 1: not transport-cc
    report = b"\x81\xc9\x00\x01" + b"\x00" * 4  # a receiver report
    try:
        traffic.begin_step(10)
        generator = traffic.generator.getsockname()
        for datagram in (feedback, feedback, nack, report):
            worker.sendto(datagram, generator)
        worker.sendto(feedback, traffic.sink_address(0))  # at a consumer: RTCP, not uplink
        for _ in range(500):
            traffic.drain(10)
            if traffic.counts().rtcp == 5:
                break
        c = traffic.counts()
        assert (c.rtcp, c.rtcp_at_senders, c.transport_cc_feedback) == (5, 4, 2)
        assert c.received == c.malformed == c.unknown == 0
        assert c.kernel_timestamps == 5
    finally:
        worker.close()
        traffic.close()
