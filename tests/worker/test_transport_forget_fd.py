"""Closing a transport forgets its sockets in the send ring (relay.uring forget_fd): plain
(with and without RTCP mux), pipe and WebRTC transports opened and closed many times leave
no per-fd entries behind, also when a media send is still queued at the close."""

from __future__ import annotations

import asyncio

from media_harness import Media

ROUNDS = 40  # x 4 transports, 5 sockets


def _sockets(media: Media, transport_id: str) -> list:
    t = media.ctx.handlers[transport_id]
    if hasattr(t, "udp_sockets"):
        return [u.sock for u in t.udp_sockets]
    return [s for s in (getattr(t, "_sock", None), getattr(t, "_rtcp_sock", None)) if s]


def test_closed_transports_leave_no_entries_in_the_send_ring(run_media):
    async def body(media: Media):
        media.router()
        peer = media.peer()
        ring = media.ctx.ring
        listen = {"listenInfo": {"protocol": "udp", "ip": "127.0.0.1"}}
        made = 0
        for i in range(ROUNDS):
            ids = [f"plain{i}", f"nomux{i}", f"pipe{i}", f"webrtc{i}"]
            media.transport(ids[0])
            media.transport(ids[1], rtcpMux=False)
            media.request("r1", "router.createPipeTransport", {"transportId": ids[2], **listen})
            media.request("r1", "router.createWebRtcTransport", {
                "transportId": ids[3], "listenInfos": [{"protocol": "udp", "ip": "127.0.0.1"}]})
            for tid in ids:
                for sock in _sockets(media, tid):
                    # what a consumer's or RTCP send leaves: an entry for the socket; every
                    # other round the send is still queued when the transport closes
                    assert ring.send(sock.fileno(), b"rtp", ("127.0.0.1", peer.port))
                    made += 1
                if i % 2:
                    ring.flush()
                media.request(tid, "transport.close")
            await asyncio.sleep(0)
        await media.wait_for(lambda: ring.stats()["slotsInFlight"] == 0)
        st = ring.stats()
        assert made == ROUNDS * 5 and st["sendsQueued"] == made
        assert st["fdTableEntries"] == 0 and st["fdTableEvictions"] == 0
        assert st["cqeErrors"] == 0
        await media.wait_for(lambda: len(peer.drain()) == made)

    run_media(body, ring_mode="copy")
