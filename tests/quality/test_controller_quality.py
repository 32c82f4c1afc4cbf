"""Through the controller API and a real worker process: a video consumer gets RTX and NACK
by default (audio doesn't), answers its peer's NACK with RTX, and "score" events arrive."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from relay_controller_support import MEDIA_CODECS, running_worker, wait_until  # noqa: E402

from relay.rtp.nack_buffer import parse_rtx_packet  # noqa: E402
from relay.rtp.rtcp import Nack, ReceiverReport, ReportBlock  # noqa: E402

VP8_PARAMS = {
    "codecs": [
        {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
         "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}},
    ],
    "encodings": [{"ssrc": 2222, "rtx": {"ssrc": 2223}}],
    "rtcp": {"cname": "camera"},
}
KEY = b"\x10\x00\x9d\x01\x2a" + b"\x55" * 100


class Peer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.media: list[bytes] = []

    def poll(self) -> list[bytes]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.media
            if not 64 <= data[1] & 0x7F <= 95:
                self.media.append(data)


def test_video_consumer_rtx_and_score_events():
    asyncio.run(asyncio.wait_for(_video_consumer_rtx_and_score_events(), 30))


async def _video_consumer_rtx_and_score_events():
    async with running_worker(rtc_min_port=46000, rtc_max_port=46999) as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        send = await router.create_plain_transport(listen_ip="127.0.0.1")
        recv = await router.create_plain_transport(listen_ip="127.0.0.1")
        sender, receiver = Peer(), Peer()
        try:
            await send.connect(ip="127.0.0.1", port=sender.port)
            await recv.connect(ip="127.0.0.1", port=receiver.port)
            producer = await send.produce(kind="video", rtp_parameters=VP8_PARAMS)
            consumer = await recv.consume(producer_id=producer.id,
                                          rtp_capabilities=router.rtp_capabilities)
            params = consumer.rtp_parameters
            media_pt = params["codecs"][0]["payloadType"]
            rtx_codec = next(c for c in params["codecs"] if c["mimeType"] == "video/rtx")
            assert rtx_codec["parameters"]["apt"] == media_pt
            assert {"type": "nack", "parameter": ""} in params["codecs"][0]["rtcpFeedback"]
            ssrc = params["encodings"][0]["ssrc"]
            rtx_ssrc = params["encodings"][0]["rtx"]["ssrc"]
            scores: list[dict] = []
            consumer.on("score", scores.append)

            target = (send.tuple["localIp"], send.tuple["localPort"])
            for seq in range(1, 6):
                sender.sock.sendto(struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 2222) + KEY, target)
            await wait_until(lambda: len(receiver.poll()) == 5)
            out_seqs = [struct.unpack_from("!H", p, 2)[0] for p in receiver.media]

            dest = (recv.tuple["localIp"], recv.tuple["localPort"])
            receiver.sock.sendto(Nack(1, ssrc, [out_seqs[2]]).serialize(), dest)
            await wait_until(lambda: len(receiver.poll()) == 6)
            rtx = receiver.media[5]
            assert rtx[1] & 0x7F == rtx_codec["payloadType"]
            assert struct.unpack_from("!I", rtx, 8)[0] == rtx_ssrc
            assert parse_rtx_packet(rtx, media_pt, ssrc) == receiver.media[2]

            block = ReportBlock(ssrc, fraction_lost=128, highest_sequence=out_seqs[-1])
            receiver.sock.sendto(ReceiverReport(1, [block]).serialize(), dest)
            await wait_until(lambda: scores != [])
            assert scores[-1]["score"] == 1 and consumer.score == scores[-1]
            stats = (await consumer.get_stats())[0]
            assert stats["retransmittedPackets"] == 1 and stats["nackCount"] == 1

            # audio consumers get neither RTX nor NACK unless asked
            audio = await send.produce(kind="audio", rtp_parameters={
                "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                            "channels": 2}], "encodings": [{"ssrc": 3333}]})
            audio_consumer = await recv.consume(producer_id=audio.id,
                                                rtp_capabilities=router.rtp_capabilities)
            assert "rtx" not in audio_consumer.rtp_parameters["encodings"][0]
        finally:
            sender.sock.close()
            receiver.sock.close()
            await asyncio.sleep(0)


def test_simulcast_consumer_through_the_controller():
    asyncio.run(asyncio.wait_for(_simulcast_consumer(), 30))


async def _simulcast_consumer():
    async with running_worker(rtc_min_port=46000, rtc_max_port=46999) as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        send = await router.create_plain_transport(listen_ip="127.0.0.1")
        recv = await router.create_plain_transport(listen_ip="127.0.0.1")
        sender, receiver = Peer(), Peer()
        try:
            await send.connect(ip="127.0.0.1", port=sender.port)
            await recv.connect(ip="127.0.0.1", port=receiver.port)
            producer = await send.produce(kind="video", rtp_parameters={
                "codecs": [VP8_PARAMS["codecs"][0]],
                "encodings": [{"ssrc": 5001}, {"ssrc": 5002}, {"ssrc": 5003}]})
            assert producer.type == "simulcast"
            consumer = await recv.consume(producer_id=producer.id,
                                          rtp_capabilities=router.rtp_capabilities,
                                          preferred_layers={"spatialLayer": 1})
            assert consumer.type == "simulcast" and consumer.current_layers is None
            changes: list = []
            consumer.on("layerschange", changes.append)
            target = (send.tuple["localIp"], send.tuple["localPort"])
            for ssrc in (5001, 5002, 5003):  # a key frame on every layer
                sender.sock.sendto(struct.pack("!BBHII", 0x80, 96, 1, 3000, ssrc) + KEY, target)
            await wait_until(lambda: len(receiver.poll()) == 1 and changes != [])
            assert changes == [{"spatialLayer": 1, "temporalLayer": None}]
            await consumer.set_preferred_layers(spatial_layer=2)
            assert consumer.preferred_layers == {"spatialLayer": 2, "temporalLayer": None}
            sender.sock.sendto(struct.pack("!BBHII", 0x80, 96, 2, 6000, 5003) + KEY, target)
            await wait_until(lambda: len(changes) == 2 and len(receiver.poll()) == 2)
            assert consumer.current_layers == {"spatialLayer": 2, "temporalLayer": None}
            seqs = [struct.unpack_from("!H", p, 2)[0] for p in receiver.media]
            assert (seqs[1] - seqs[0]) & 0xFFFF == 1
        finally:
            sender.sock.close()
            receiver.sock.close()
