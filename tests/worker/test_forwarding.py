"""1 → N forwarding through real UDP on 127.0.0.1: exact SSRC, payload type, sequence number,
timestamp and header-extension checks, including across pause/resume and an SSRC change."""

from __future__ import annotations

import struct
import time

from media_harness import MAPPED_SSRC, PRODUCER_SSRC, rtp

from relay.rtp.packet import parse_extensions, rtp_payload_offset
from relay.worker import producer as producer_module

N_CONSUMERS = 4


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    """(marker, pt, seq, ts, ssrc)"""
    b1, seq, ts, ssrc = struct.unpack_from("!BHII", packet, 1)
    return b1 >> 7, b1 & 0x7F, seq, ts, ssrc


async def build(media, n=N_CONSUMERS, kind="audio", producer_ssrc=PRODUCER_SSRC):
    media.router()
    media.transport("tp")
    sender = media.peer()
    media.connect("tp", sender)
    media.produce("tp", kind=kind, ssrc=producer_ssrc)
    receivers = []
    for i in range(n):
        media.transport(f"tc{i}")
        peer = media.peer()
        media.connect(f"tc{i}", peer)
        assert media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i, kind=kind) == {
            "paused": False, "producerPaused": False}
        receivers.append(peer)
    tuple_ = media.request("tp", "transport.dump")["tuple"]
    return sender, tuple_, receivers


def test_one_to_many_exact_headers_and_extensions(run_media):
    async def body(media):
        sender, tp, receivers = await build(media)
        sent = []
        for k in range(20):  # crosses the 16-bit sequence wrap
            seq = (65530 + k) & 0xFFFF
            ts = (0xFFFFFF00 + 960 * k) & 0xFFFFFFFF  # crosses the 32-bit timestamp wrap
            packet = rtp(seq, ts, marker=(k % 5 == 0), payload=bytes([k]) * 50,
                         extensions={1: b"\x90", 3: b"\x01\x02\x03", 4: b"a"})
            sent.append((seq, ts, k % 5 == 0, packet))
            sender.send(packet, tp)
        await media.wait_for(lambda: all(len(r.drain()) == 20 for r in receivers))
        for i, receiver in enumerate(receivers):
            for (seq, ts, marker, original), got in zip(sent, receiver.received, strict=True):
                assert len(got) == len(original)
                assert header(got) == (int(marker), 100, seq, ts, 7000 + i)
                offset = rtp_payload_offset(got, len(got))
                assert got[offset:] == original[rtp_payload_offset(original, len(original)):]
                # producer ids 1, 3 → consumer ids 10, 2; mid (4) not negotiated: neutralised
                assert parse_extensions(got, len(got)) == {10: b"\x90", 2: b"\x01\x02\x03"}
        stats = media.request("c0", "consumer.getStats")[0]
        assert stats["packetCount"] == 20 and stats["ssrc"] == 7000
        pstats = media.request("p1", "producer.getStats")[0]
        assert pstats["packetCount"] == 20 and pstats["mappedSsrc"] == MAPPED_SSRC

    run_media(body)


def test_two_byte_extensions_are_rewritten(run_media):
    async def body(media):
        sender, tp, receivers = await build(media, n=1)
        packet = rtp(10, 1000, extensions={1: b"", 3: b"\x05" * 20, 4: b"x"},
                     two_byte_extensions=True)
        sender.send(packet, tp)
        await media.wait_for(lambda: len(receivers[0].drain()) == 1)
        got = receivers[0].received[0]
        assert parse_extensions(got, len(got)) == {10: b"", 2: b"\x05" * 20}

    run_media(body)


def test_consumer_pause_resume_keeps_seq_and_ts_continuous(run_media):
    async def body(media):
        sender, tp, (a, b) = await build(media, n=2)

        async def burst(first_seq, count):
            for k in range(count):
                seq = first_seq + k
                sender.send(rtp(seq, 3000 + 960 * seq), tp)
            await media.wait_for(lambda: len(b.drain()) == first_seq + count - 100)

        await burst(100, 10)
        media.request("c0", "consumer.pause")
        await burst(110, 10)  # b gets these, a must not
        assert len(a.drain()) == 10
        media.request("c0", "consumer.resume")
        await burst(120, 10)
        await media.wait_for(lambda: len(a.drain()) == 20)
        seqs = [header(p)[2] for p in a.received]
        stamps = [header(p)[3] for p in a.received]
        # no gap and never backwards: 100..109 then 110..119 (resumed right after the last)
        assert seqs == list(range(100, 120))
        # same input stream: the timestamp offset is kept, so the output timestamp advances by
        # the paused time (what the jitter buffer expects) and never goes backwards
        assert stamps[:10] == [3000 + 960 * s for s in range(100, 110)]
        assert stamps[10:] == [3000 + 960 * s for s in range(120, 130)]
        # the other consumer was never paused: identity mapping for all 30
        assert [header(p)[2] for p in b.received] == list(range(100, 130))
        stats = media.request("c0", "consumer.getStats")[0]
        assert stats["packetCount"] == 20

    run_media(body)


def test_producer_pause_resume_notifies_and_keeps_continuity(run_media):
    async def body(media):
        sender, tp, (a,) = await build(media, n=1)
        for seq in range(1, 6):
            sender.send(rtp(seq, seq * 960), tp)
        await media.wait_for(lambda: len(a.drain()) == 5)
        media.request("p1", "producer.pause")
        assert ("c0", "producerpause", None) in media.notifications
        assert media.request("c0", "consumer.dump")["producerPaused"] is True
        for seq in range(6, 11):
            sender.send(rtp(seq, seq * 960), tp)
        await media.wait_for(
            lambda: media.request("p1", "producer.getStats")[0]["packetCount"] == 10)
        assert len(a.drain()) == 5
        assert media.request("p1", "producer.getStats")[0]["dropped"]["paused"] == 5
        media.request("p1", "producer.resume")
        assert ("c0", "producerresume", None) in media.notifications
        for seq in range(11, 16):
            sender.send(rtp(seq, seq * 960), tp)
        await media.wait_for(lambda: len(a.drain()) == 10)
        assert [header(p)[2] for p in a.received] == list(range(1, 11))
        assert [header(p)[3] for p in a.received] == [s * 960 for s in (*range(1, 6), *range(11, 16))]

    run_media(body)


def test_producer_ssrc_change_continues_the_output(run_media, monkeypatch):
    monkeypatch.setattr(producer_module, "SSRC_SWITCH_SILENCE", 0.02)

    async def body(media):
        # A producer without a signalled SSRC takes it from the first packet with its PT.
        sender, tp, (a,) = await build(media, n=1, producer_ssrc=None)
        for k in range(5):
            sender.send(rtp(1000 + k, 50_000 + 960 * k, ssrc=0xAAAA), tp)
        await media.wait_for(lambda: len(a.drain()) == 5)
        # While the first SSRC is live, another one is not taken over (dropped, counted).
        sender.send(rtp(7, 7, ssrc=0xBBBB), tp)
        await media.settle()
        assert len(a.drain()) == 5
        # After it went quiet, the sender "restarts" with a new SSRC, seq and ts.
        await media.settle()
        for k in range(5):
            sender.send(rtp(40_000 + k, 9_000_000 + 960 * k, ssrc=0xBBBB), tp)
        await media.wait_for(lambda: len(a.drain()) == 10)
        seqs = [header(p)[2] for p in a.received]
        stamps = [header(p)[3] for p in a.received]
        assert {header(p)[4] for p in a.received} == {7000}
        assert seqs == list(range(1000, 1010))
        last_old = stamps[4]
        assert 0 < stamps[5] - last_old < 48_000 * 5  # forward, by about the silence
        assert stamps[5:] == [stamps[5] + 960 * k for k in range(5)]
        assert media.request("p1", "producer.getStats")[0]["ssrc"] == 0xBBBB

    run_media(body)


def test_reordered_packet_from_before_a_resume_is_dropped(run_media):
    async def body(media):
        sender, tp, (a, b) = await build(media, n=2)
        for seq in range(1, 6):
            sender.send(rtp(seq, seq), tp)
        await media.wait_for(lambda: len(a.drain()) == 5)
        media.request("c0", "consumer.pause")
        for seq in range(6, 9):
            sender.send(rtp(seq, seq), tp)
        await media.wait_for(lambda: len(b.drain()) == 8)
        media.request("c0", "consumer.resume")
        sender.send(rtp(10, 10), tp)  # sync point: out seq 6
        await media.wait_for(lambda: len(a.drain()) == 6)
        sender.send(rtp(9, 9), tp)  # older than the sync point: would reuse seq 5 → dropped
        sender.send(rtp(11, 11), tp)
        await media.wait_for(lambda: len(b.drain()) == 11)
        await media.wait_for(lambda: len(a.drain()) == 7)
        assert [header(p)[2] for p in a.received] == [1, 2, 3, 4, 5, 6, 7]
        assert media.request("c0", "consumer.getStats")[0]["dropped"] == 1

    run_media(body)


def test_paused_consumer_sends_nothing_from_the_start(run_media):
    async def body(media):
        sender, tp, (a, b) = await build(media, n=2)
        media.consume("tc0", "cx", ssrc=9999, paused=True)
        sender.send(rtp(1, 1), tp)
        await media.wait_for(lambda: len(b.drain()) == 1)
        await media.settle()
        assert [header(p)[4] for p in a.drain()] == [7000]  # c0 only; cx is paused

    run_media(body)


def test_ring_modes_forward(run_media):
    for mode in ("socket", "copy"):
        async def body(media):
            sender, tp, receivers = await build(media, n=2)
            for seq in range(50):
                sender.send(rtp(seq, seq * 960), tp)
            await media.wait_for(lambda: all(len(r.drain()) == 50 for r in receivers))
            return media.ctx.ring.mode

        assert run_media(body, ring_mode=mode) in (mode, "socket")


def test_one_submit_per_drained_batch(run_media):
    async def body(media):
        sender, tp, receivers = await build(media, n=2)
        ring = media.ctx.ring
        before = ring.stats()
        for seq in range(50):  # all queued on the socket before the loop gets to read it
            sender.send(rtp(seq, seq), tp)
        await media.wait_for(lambda: all(len(r.drain()) == 50 for r in receivers))
        after = ring.stats()
        assert after["sendsQueued"] - before["sendsQueued"] == 100
        assert after["submits"] - before["submits"] == 1
        assert after["sqesSubmitted"] - before["sqesSubmitted"] == 100

    run_media(body)


def test_transports_drained_in_one_loop_turn_share_one_submit(run_media):
    """A room: four publishers on their own transports, one subscriber of all four. Packets
    that wait on all four sockets when the loop polls leave with one submit, not four."""
    async def body(media):
        media.router()
        senders, tuples = [], []
        for k in range(4):
            media.transport(f"tp{k}")
            senders.append(media.peer())
            media.connect(f"tp{k}", senders[-1])
            media.produce(f"tp{k}", producer_id=f"p{k}", ssrc=1000 + k)
            tuples.append(media.request(f"tp{k}", "transport.dump")["tuple"])
        media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        for k in range(4):
            media.consume("tc", f"c{k}", ssrc=7000 + k, producer_id=f"p{k}")
        ring = media.ctx.ring
        for rnd in range(3):
            before = ring.stats()
            for k in range(4):
                senders[k].send(rtp(rnd, rnd * 960, ssrc=1000 + k), tuples[k])
            time.sleep(0.02)  # the loop is busy here: all four sockets are readable at once
            await media.wait_for(lambda n=4 * (rnd + 1): len(receiver.drain()) == n)
            after = ring.stats()
            assert after["sendsQueued"] - before["sendsQueued"] == 4
            assert after["submits"] - before["submits"] == 1
            assert after["sqesSubmitted"] - before["sqesSubmitted"] == 4

    run_media(body, ring_mode="copy")


def test_packet_too_large_for_a_ring_slot_is_dropped(run_media):
    async def body(media):
        sender, tp, (a,) = await build(media, n=1)
        sender.send(rtp(1, 1, payload=b"\x00" * 1600), tp)
        sender.send(rtp(2, 2), tp)
        await media.wait_for(lambda: len(a.drain()) == 1)
        assert media.request("tp", "transport.getStats")[0]["dropped"] == {"tooLarge": 1}

    run_media(body)


def test_the_publishers_mid_is_not_forwarded(run_media):
    """A consumer that negotiated the MID extension gets it blanked, not the publisher's
    value: a browser routes packets by MID to its own m-line of that MID (the wrong one),
    and with the value gone it matches the consumer's signalled SSRC."""
    async def body(media):
        media.router()
        media.transport("tp")
        sender = media.peer()
        media.connect("tp", sender)
        media.produce("tp")  # sender ids: audio level 1, abs-send-time 3, mid 4
        media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        media.consume("tc", "c0", ssrc=7000, extensions=[
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 10},
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 9}])
        tuple_ = media.request("tp", "transport.dump")["tuple"]
        sender.send(rtp(1, 960, extensions={1: b"\x90", 4: b"1"}), tuple_)
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        got = receiver.received[0]
        assert parse_extensions(got, len(got)) == {10: b"\x90"}

    run_media(body)
