"""One host's relay application for a producer piped from one host to another.

Each host runs its own controller and worker; the two applications exchange the pipe
transports' parameters themselves (here: JSON lines over one TCP connection), which is all
that `router.pipe_to_router()` does for two routers of one controller:

    edge host   (10.0.0.2):  python node.py edge   --ip 10.0.0.2 --signal-port 7000 \\
                                                   --deliver-to 10.0.0.2:5004
    origin host (10.0.0.1):  python node.py origin --ip 10.0.0.1 --edge 10.0.0.2:7000

The origin takes Opus RTP (SSRC 11111111, payload type 111) on a plain transport (comedia:
send to the port it prints) and pipes the producer to the edge with SRTP (AEAD_AES_256_GCM,
a random key per side) unless `--no-srtp`, with batching (several packets per datagram:
both ends are relay, and each says so in its parameters). The edge re-creates the producer with the same
id and sends it to `--deliver-to`. Pause, resume and close on the origin follow across.

Each node prints JSON lines on stdout ({"event": ...}) and takes commands on stdin: "stats"
(its pipe transport's), and on the origin "pause", "resume", "close" (the producer); it
stops on end of input or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import relay

MEDIA_CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
                {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}]
OPUS_PARAMETERS = {
    "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                "channels": 2}],
    "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1}],
    "encodings": [{"ssrc": 11111111}], "rtcp": {"cname": "origin"}}


def say(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Link:
    """JSON lines over a TCP connection: the applications' own signalling."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, **message: Any) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()

    async def receive(self) -> dict | None:
        line = await self.reader.readline()
        return json.loads(line) if line else None


async def origin(args: argparse.Namespace, worker: relay.Worker, state: dict) -> None:
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    ingress = await router.create_plain_transport(listen_ip=args.ip, comedia=True)
    producer = await ingress.produce(kind="audio", rtp_parameters=OPUS_PARAMETERS)
    state["producer"] = producer
    pipe = await router.create_pipe_transport(listen_info={"ip": args.ip},
                                              enable_srtp=not args.no_srtp,
                                              enable_batching=True)
    state["pipe"] = pipe
    edge_host, edge_port = host_port(args.edge)
    link = Link(*await asyncio.open_connection(edge_host, edge_port))
    await link.send(type="pipe", tuple=pipe.tuple, srtpParameters=pipe.srtp_parameters,
                    batching=pipe.batching)
    answer = await link.receive()
    if answer is None:
        raise SystemExit("the edge hung up")
    # (batching: both ends are relay; a mediasoup edge would leave it out)
    await pipe.connect(ip=answer["tuple"]["localAddress"], port=answer["tuple"]["localPort"],
                       srtp_parameters=answer["srtpParameters"],
                       batching=answer.get("batching", False))
    consumer = await pipe.consume(producer_id=producer.id)
    await link.send(type="produce", id=producer.id, kind=consumer.kind,
                    rtpParameters=consumer.rtp_parameters, paused=consumer.producer_paused)
    for event in ("producerpause", "producerresume", "producerclose"):
        consumer.on(event, lambda e=event: asyncio.ensure_future(
            link.send(type=e, id=producer.id)))
    say("ready", rtpIp=args.ip, rtpPort=ingress.tuple["localPort"], producerId=producer.id,
        srtp=pipe.srtp_parameters is not None)
    await link.receive()  # until the edge hangs up


async def edge(args: argparse.Namespace, worker: relay.Worker, state: dict) -> None:
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    deliver_ip, deliver_port = host_port(args.deliver_to)
    done = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await follow(Link(reader, writer))
        except Exception as exc:  # noqa: BLE001 - the node stops with it
            if not done.done():
                done.set_exception(exc)
        if not done.done():
            done.set_result(None)

    async def follow(link: Link) -> None:
        """What the origin asks for: a pipe transport, producers, their pause/resume/close."""
        pipe = None
        producers: dict[str, relay.Producer] = {}
        while (message := await link.receive()) is not None:
            kind = message.get("type")
            if kind == "pipe" and pipe is None:
                pipe = await router.create_pipe_transport(
                    listen_info={"ip": args.ip},
                    enable_srtp=message["srtpParameters"] is not None,
                    enable_batching=True)
                state["pipe"] = pipe
                await pipe.connect(ip=message["tuple"]["localAddress"],
                                   port=message["tuple"]["localPort"],
                                   srtp_parameters=message["srtpParameters"],
                                   batching=message.get("batching", False))
                await link.send(type="pipe", tuple=pipe.tuple,
                                srtpParameters=pipe.srtp_parameters, batching=pipe.batching)
            elif kind == "produce" and pipe is not None:
                producer = await pipe.produce(id=message["id"], kind=message["kind"],
                                              rtp_parameters=message["rtpParameters"],
                                              paused=message["paused"])
                producers[producer.id] = producer
                egress = await router.create_plain_transport(listen_ip=args.ip)
                await egress.connect(ip=deliver_ip, port=deliver_port)
                consumer = await egress.consume(producer_id=producer.id,
                                                rtp_capabilities=router.rtp_capabilities)
                say("consuming", producerId=producer.id,
                    ssrc=consumer.rtp_parameters["encodings"][0]["ssrc"])
            elif kind in ("producerpause", "producerresume") and message["id"] in producers:
                producer = producers[message["id"]]
                await (producer.pause() if kind == "producerpause" else producer.resume())
                say(kind, producerId=producer.id)
            elif kind == "producerclose" and message["id"] in producers:
                producers.pop(message["id"]).close()
                say(kind, producerId=message["id"])

    server = await asyncio.start_server(serve, args.ip, args.signal_port)
    say("listening", ip=args.ip, signalPort=server.sockets[0].getsockname()[1])
    async with server:
        await done


async def commands(state: dict) -> None:
    """stdin, a command a line: "stats" prints the pipe transport's stats; on the origin,
    "pause", "resume" and "close" act on the producer. End of input stops the node."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = line.decode().strip()
        pipe, producer = state.get("pipe"), state.get("producer")
        if command == "stats" and pipe is not None:
            say("stats", stats=(await pipe.get_stats())[0])
        elif command in ("pause", "resume") and producer is not None:
            await (producer.pause() if command == "pause" else producer.resume())
            say(command)
        elif command == "close" and producer is not None:
            producer.close()
            say(command)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("origin", "edge"))
    parser.add_argument("--ip", required=True, help="this host's address for RTP and the pipe")
    parser.add_argument("--edge", help="origin: the edge's signalling address, ip:port")
    parser.add_argument("--signal-port", type=int, default=7000, help="edge: listen here")
    parser.add_argument("--deliver-to", help="edge: send the piped producer to ip:port")
    parser.add_argument("--no-srtp", action="store_true", help="an unencrypted pipe")
    args = parser.parse_args()
    if (args.role == "origin") != bool(args.edge) or (args.role == "edge") != bool(args.deliver_to):
        parser.error("origin needs --edge; edge needs --deliver-to")
    worker = await relay.create_worker(rtc_min_port=40000, rtc_max_port=40999)
    state: dict = {}
    role = asyncio.ensure_future((origin if args.role == "origin" else edge)(args, worker,
                                                                             state))
    stop = asyncio.ensure_future(commands(state))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.cancel)
    try:
        await asyncio.wait({role, stop}, return_when=asyncio.FIRST_COMPLETED)
        if role.done():
            role.result()  # raise what failed
    finally:
        for task in (role, stop):
            task.cancel()
        worker.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.wait_closed(), 5)
        say("stopped")

if __name__ == "__main__":
    asyncio.run(main())
