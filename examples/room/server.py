"""The room's signalling server: aiohttp serves the page (public/, with the bundle built by
`npm run build`) and a WebSocket per participant, and drives relay's controller API.

    python examples/room/server.py --host 127.0.0.1 --port 8080

Messages (JSON): requests {id, method, data} → responses {id, ok, data | error};
notifications {notification, data}: "newProducer" {producerId, peerId, kind},
"producerClosed" {producerId}. Methods: join, createWebRtcTransport {direction},
connectTransport {transportId, dtlsParameters}, produce {transportId, kind, rtpParameters},
consume {transportId, producerId, rtpCapabilities} (the consumer starts paused),
resumeConsumer {consumerId}, producerStats {producerId} (one of the peer's own producers:
relay's per-encoding stats, which show the simulcast layers the browser sends by RID),
consumerStats {consumerId} (one of the peer's consumers as relay sees it: packets sent,
current and target simulcast layer, waiting for a key frame, resends), transportStats
{transportId} (one of the peer's transports: the selected ICE tuple, relay's estimate of the
bitrate it may send there).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

import relay

HERE = Path(__file__).resolve().parent
PUBLIC = HERE / "public"
MEDIA_CODECS = [
    {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000},
]
logger = logging.getLogger("room")


class Peer:
    def __init__(self, peer_id: str, ws: web.WebSocketResponse) -> None:
        self.id = peer_id
        self.ws = ws
        self.transports: dict[str, Any] = {}
        self.producers: dict[str, Any] = {}
        self.consumers: dict[str, Any] = {}

    async def notify(self, notification: str, data: dict) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps({"notification": notification, "data": data}))

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()  # closes its producers and consumers too


class Room:
    def __init__(self, router: Any, listen_ip: str, announced: str | None,
                 webrtc_server: Any) -> None:
        self.router = router
        self.listen_ip = listen_ip
        self.announced = announced
        self.webrtc_server = webrtc_server
        self.peers: dict[str, Peer] = {}
        self._ids = itertools.count(1)

    def new_peer(self, ws: web.WebSocketResponse) -> Peer:
        peer = Peer(f"peer{next(self._ids)}", ws)
        self.peers[peer.id] = peer
        return peer

    async def leave(self, peer: Peer) -> None:
        self.peers.pop(peer.id, None)
        closed = list(peer.producers)
        peer.close()
        for other in self.peers.values():
            for producer_id in closed:
                await other.notify("producerClosed", {"producerId": producer_id})

    async def handle(self, peer: Peer, method: str, data: dict) -> Any:
        if method == "join":
            return {
                "peerId": peer.id,
                "routerRtpCapabilities": self.router.rtp_capabilities,
                "producers": [{"producerId": p.id, "peerId": other.id, "kind": p.kind}
                              for other in self.peers.values() if other is not peer
                              for p in other.producers.values()],
            }
        if method == "createWebRtcTransport":
            if self.webrtc_server is not None:
                transport = await self.router.create_webrtc_transport(
                    webrtc_server=self.webrtc_server, enable_udp=True, enable_tcp=True,
                    prefer_udp=True)
            else:
                transport = await self.router.create_webrtc_transport(
                    listen_infos=[{"protocol": "udp", "ip": self.listen_ip,
                                   "announcedAddress": self.announced}])
            peer.transports[transport.id] = transport
            return {"id": transport.id, "iceParameters": transport.ice_parameters,
                    "iceCandidates": transport.ice_candidates,
                    "dtlsParameters": transport.dtls_parameters}
        if method == "connectTransport":
            transport = peer.transports[data["transportId"]]
            await transport.connect(dtls_parameters=data["dtlsParameters"])
            return {}
        if method == "produce":
            transport = peer.transports[data["transportId"]]
            producer = await transport.produce(kind=data["kind"],
                                               rtp_parameters=data["rtpParameters"])
            peer.producers[producer.id] = producer
            for other in self.peers.values():
                if other is not peer:
                    await other.notify("newProducer", {"producerId": producer.id,
                                                       "peerId": peer.id, "kind": producer.kind})
            return {"id": producer.id}
        if method == "consume":
            transport = peer.transports[data["transportId"]]
            consumer = await transport.consume(producer_id=data["producerId"],
                                               rtp_capabilities=data["rtpCapabilities"],
                                               paused=True)
            peer.consumers[consumer.id] = consumer
            return {"id": consumer.id, "kind": consumer.kind,
                    "rtpParameters": consumer.rtp_parameters}
        if method == "resumeConsumer":
            await peer.consumers[data["consumerId"]].resume()
            return {}
        if method == "producerStats":
            return [{"rid": s["rid"], "ssrc": s["ssrc"], "packetsReceived": s["packetsReceived"],
                     "score": s["score"]}
                    for s in await peer.producers[data["producerId"]].get_stats()]
        if method == "consumerStats":
            consumer = peer.consumers[data["consumerId"]]
            stats = (await consumer.get_stats())[0]
            return {key: stats.get(key) for key in (
                "packetCount", "byteCount", "waitingForKeyFrame", "keyFrameRequests", "pliCount",
                "score", "producerScore", "dropped", "bitrate", "retransmittedPackets",
                "retransmittedBytes", "nackCount", "nackPacketCount", "nackMisses", "nackSuppressed",
                "retransmissionShare")} | {
                "currentLayers": consumer.current_layers,
                "targetLayers": (await consumer.dump()).get("targetLayers")}
        if method == "transportStats":
            transport = peer.transports[data["transportId"]]
            stats = (await transport.get_stats())[0]
            return {"iceSelectedTuple": transport.ice_selected_tuple} | {
                key: stats.get(key) for key in (
                    "availableOutgoingBitrate", "bytesSent", "rtpPacketsSent", "probes")}
        raise ValueError(f"unknown method {method!r}")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    room: Room = request.app["room"]
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    peer = room.new_peer(ws)
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(message.data)
                result = await room.handle(peer, body["method"], body.get("data") or {})
                reply = {"id": body["id"], "ok": True, "data": result}
            except Exception as exc:  # noqa: BLE001 - a bad request gets an error, not a crash
                logger.warning("%s: request failed: %s", peer.id, exc)
                reply = {"id": body.get("id") if isinstance(body, dict) else None,
                         "ok": False, "error": str(exc)}
            await ws.send_str(json.dumps(reply))
    finally:
        await room.leave(peer)
    return ws


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PUBLIC / "index.html")


async def make_app(host: str, announced: str | None, use_webrtc_server: bool,
                   rtc_min_port: int, rtc_max_port: int) -> web.Application:
    if not (PUBLIC / "bundle.js").exists():
        raise SystemExit("public/bundle.js is missing: run `npm ci && npm run build` in "
                         f"{HERE} (or `bash scripts/dev.sh demo`)")
    worker = await relay.create_worker(rtc_min_port=rtc_min_port, rtc_max_port=rtc_max_port)
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    server = None
    if use_webrtc_server:
        server = await worker.create_webrtc_server(listen_infos=[
            {"protocol": "udp", "ip": host, "announcedAddress": announced},
            {"protocol": "tcp", "ip": host, "announcedAddress": announced}])
    app = web.Application()
    app["room"] = Room(router, host, announced, server)
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/", PUBLIC)

    async def close_worker(_: web.Application) -> None:
        worker.close()
        await worker.wait_closed()

    app.on_cleanup.append(close_worker)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="HTTP and media address")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--announced-address", default=None,
                        help="the address browsers reach the media ports on (NAT)")
    parser.add_argument("--webrtc-server", action="store_true",
                        help="all transports share one UDP and one TCP port")
    parser.add_argument("--rtc-min-port", type=int, default=40000)
    parser.add_argument("--rtc-max-port", type=int, default=49999)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    async def app_factory() -> web.Application:
        return await make_app(args.host, args.announced_address, args.webrtc_server,
                              args.rtc_min_port, args.rtc_max_port)

    print(f"room: open http://{args.host}:{args.port}/ in two browser tabs", flush=True)
    web.run_app(app_factory(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    sys.exit(main())
