"""The tables Python writes for the C fan-out core are what the core reads, after every
control action: consume, pause/resume (consumer and producer), SRTP keys arriving, a
simulcast layer switch (VP8 PictureID rewriting, in the core too), consumer and transport
close, a route moving to an ICE-TCP connection. Each check rebuilds the expected groups from the consumers' state and compares them
with the C structs field by field, then sends a packet and checks who got it."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import pytest
from media_harness import MAPPED_SSRC, rtp

from relay.transport.tcp_framing import FrameDecoder
from relay.transport.webrtc_sockets import TcpConnection
from relay.uring import fanout_core
from relay.worker.fanout import build_groups

pytestmark = pytest.mark.skipif(not fanout_core.ENABLED, reason=fanout_core.REASON)
ffi = fanout_core.ffi


def check_tables(producer) -> set[str]:
    """Compare the producer's core tables with its consumers' state; the ids in them."""
    ring = producer._ring
    seen: set[str] = set()
    for index in range(len(producer.streams)):
        expected = [] if producer.paused else build_groups(producer.consumers, index)
        core = producer._core[index]
        python = producer._fanout[index]
        want_core = [(t, tuple(c for c in cs if c.in_core), m, tcc) for t, cs, m, tcc in expected]
        want_core = [g for g in want_core if g[1]]
        want_python = [(t, tuple(c for c in cs if not c.in_core), m, tcc)
                       for t, cs, m, tcc in expected]
        assert list(python) == [g for g in want_python if g[1]]
        if not want_core:
            assert core is None
            continue
        table = core.table
        assert table.count == len(want_core)
        for g, (ext, consumers, max_tid, tcc_id) in enumerate(want_core):
            group = table.groups[g]
            assert bytes(ffi.buffer(group.ext_table, 256)) == ext
            assert (group.max_tid, group.tcc_id, group.nconsumers) == (
                max_tid, tcc_id, len(consumers))
            for k, consumer in enumerate(consumers):
                c = group.consumers[k]
                assert c == consumer.core
                # the core reads the consumer's own rewriter (the one C struct, no copy)
                assert c.rw == consumer.rewriter.c
                assert c.rw.ssrc == consumer.ssrc
                assert bytes(ffi.buffer(c.rw.payload_types, 128)) == consumer.rewriter.payload_types
                assert c.fd == consumer.fd
                assert c.addressed == 1
                assert bytes(ffi.buffer(c.addr, 32)) == ring.address(consumer.addr)
                if consumer.srtp is None:
                    assert c.srtp == ffi.NULL
                else:
                    assert c.srtp == consumer.srtp.core
                    assert c.srtp.ctx != ffi.NULL
                seen.add(consumer.id)
    return seen


def test_tables_follow_every_control_action(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        sender = media.peer()
        media.connect("tp", sender)
        media.produce("tp")
        producer = media.ctx.handlers["p1"]
        receivers = {}
        for i in range(3):
            options = {"enableSrtp": True} if i == 2 else {}
            media.transport(f"tc{i}", **options)
            receivers[f"c{i}"] = media.peer()
            if i < 2:
                media.connect(f"tc{i}", receivers[f"c{i}"])
            media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i)
        seq = 0

        async def step(expect_core: set[str]) -> None:
            """Check the tables, send one packet, check who got it."""
            nonlocal seq
            assert check_tables(producer) == expect_core
            for r in receivers.values():
                r.received.clear()
                r.drain()
                r.received.clear()
            seq += 1
            sender.send(rtp(seq, seq * 960), tp["tuple"])
            await media.wait_for(lambda: producer.packets_received == seq)
            await media.settle()
            got = {cid for cid, r in receivers.items() if r.drain()}
            assert got == expect_core
            # what the core counted is what the consumers report
            for cid in got:
                stats = media.request(cid, "consumer.getStats")[0]
                assert stats["packetCount"] == media.ctx.handlers[cid].core.packets_sent > 0

        # c2's transport has no remote (and no keys) yet: not in the tables
        await step({"c0", "c1"})
        # SRTP keys and the remote arrive: c2 joins with its session's srtp_t
        srtp = media.request("tc2", "transport.dump")["srtpParameters"]
        media.connect("tc2", receivers["c2"], srtpParameters=srtp)
        assert media.ctx.handlers["c2"].srtp is not None
        await step({"c0", "c1", "c2"})
        media.request("c0", "consumer.pause")
        await step({"c1", "c2"})
        media.request("c0", "consumer.resume")
        await step({"c0", "c1", "c2"})
        media.request("p1", "producer.pause")
        await step(set())
        media.request("p1", "producer.resume")
        await step({"c0", "c1", "c2"})
        media.request("c1", "consumer.close")
        del receivers["c1"]
        await step({"c0", "c2"})
        media.request("tc2", "transport.close")
        del receivers["c2"]
        await step({"c0"})

    run_media(body)


def test_vp8_picture_id_rewriting_consumers_are_in_the_core(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        media.request("tp", "transport.produce", {
            "producerId": "p1", "kind": "video",
            "rtpParameters": {
                "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
                "encodings": [{"ssrc": 2001}, {"ssrc": 2002}]},
            "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                           "encodings": [{"ssrc": 2001, "mappedSsrc": MAPPED_SSRC},
                                         {"ssrc": 2002, "mappedSsrc": MAPPED_SSRC + 1}]},
        })
        media.request("tc", "transport.consume", {
            "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000}],
                              "encodings": [{"ssrc": 9999}]},
            "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}, {"ssrc": MAPPED_SSRC + 1}],
            "preferredLayers": {"spatialLayer": 1},
        })
        consumer = media.ctx.handlers["c1"]
        assert consumer.vp8 is not None and consumer.in_core
        assert consumer.core.rw.vp8 == 1  # the core rewrites its PictureIDs
        producer = media.ctx.handlers["p1"]
        assert check_tables(producer) == set()  # (waiting for a key frame)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0})
        assert check_tables(producer) == set()

    run_media(body)


def test_a_route_moving_to_ice_tcp_stays_in_the_core_framed_on_the_connection(run_media):
    """As when a WebRTC transport's selected tuple becomes an ICE-TCP connection: the
    consumer's struct points at the connection's media buffer, the fan-out is rebuilt with
    the connection to flush, and the packets arrive on the TCP socket, RFC 4571 framed."""
    async def body(media):
        tp, _, sender, _ = media.publish_subscribe()
        media.produce("tp")
        media.consume("tc", "c1", ssrc=7001)
        producer = media.ctx.handlers["p1"]
        consumer = media.ctx.handlers["c1"]
        server = socket.create_server(("127.0.0.1", 0))
        peer = socket.create_connection(server.getsockname())
        sock, addr = server.accept()
        server.close()
        sock.setblocking(False)
        peer.setblocking(False)
        listener = SimpleNamespace(ip="127.0.0.1", port=0, announced=None, on_frame=None,
                                   forget=lambda conn: None, on_claimed=lambda conn: None)
        conn = TcpConnection(media.ctx, sock, addr, listener)
        try:
            transport = consumer.transport
            transport.media_stream = conn  # what WebRtcTransport._update_routes sets
            transport.media_send = conn.media_send
            transport.route = lambda: (conn.fd, conn.addr, None)
            consumer.update_route()
            assert consumer.in_core and consumer.media_stream is conn
            assert producer._core[0].streams == (conn,)
            assert producer._core[0].table.groups[0].consumers[0].stream == \
                conn.media_buffer.c
            decoder = FrameDecoder()
            frames = []
            for seq in range(1, 6):  # one at a time: each must be written on its own
                sender.send(rtp(seq, seq * 960), tp["tuple"])
                while len(frames) < seq:
                    await media.wait_for(lambda: _readable(peer))
                    frames += decoder.feed(peer.recv(65536))
            await media.settle()
            assert [struct.unpack_from("!HI", f, 2)[0] for f in frames] == [1, 2, 3, 4, 5]
            assert {struct.unpack_from("!I", f, 8)[0] for f in frames} == {consumer.ssrc}
            assert consumer.packets_sent == 5 and not len(conn.media_buffer)
            # the producer's transport drained them through the C receive core, which told
            # the connection to write (RX_QUEUED), as the Python fan-out call does
            core = media.ctx.handlers["tp"].receive_core
            assert core is not None and core.packets_taken >= 3, core and core.stats()
        finally:
            conn.close()
            peer.close()

    run_media(body)


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
