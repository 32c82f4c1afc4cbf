"""Audio level and active speaker observers through the controller API and a real worker,
fed with synthetic ssrc-audio-level header extensions (RFC 6464)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from relay_controller_support import MEDIA_CODECS, running_worker, wait_until  # noqa: E402

from relay.rtp.packet import build_rtp  # noqa: E402
from worker_proto.errors import ArgumentError  # noqa: E402

AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def opus_params(ssrc: int) -> dict:
    return {"codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                        "channels": 2}],
            "headerExtensions": [{"uri": AUDIO_LEVEL, "id": 1}],
            "encodings": [{"ssrc": ssrc}]}


class Talker:
    """Sends 20 ms opus-like packets whose audio-level extension says `level` (-dBov)."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.level: int | None = 127
        self.seq = 0
        self.target: tuple[str, int] | None = None

    def send(self) -> None:
        if self.level is None or self.target is None:
            return
        self.seq += 1
        self.sock.sendto(build_rtp(payload_type=111, sequence_number=self.seq,
                                   timestamp=self.seq * 960, ssrc=self.ssrc, payload=b"\x00" * 40,
                                   extensions={1: bytes([0x80 | self.level])}), self.target)


def test_audio_level_and_active_speaker_events():
    asyncio.run(asyncio.wait_for(_audio_observers(), 30))


async def _audio_observers():
    async with running_worker(rtc_min_port=47000, rtc_max_port=47999) as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        alice, bob = Talker(1001), Talker(1002)
        producers = []
        for talker in (alice, bob):
            transport = await router.create_plain_transport(listen_ip="127.0.0.1")
            await transport.connect(ip="127.0.0.1", port=talker.port)
            talker.target = (transport.tuple["localIp"], transport.tuple["localPort"])
            producers.append(await transport.produce(kind="audio", rtp_parameters=opus_params(talker.ssrc)))
        p_alice, p_bob = producers
        levels = await router.create_audio_level_observer(max_entries=2, threshold=-70, interval=250)
        speaker = await router.create_active_speaker_observer(interval=100)
        volumes: list[list[dict]] = []
        silences: list[bool] = []
        dominant: list[str] = []
        levels.on("volumes", volumes.append)
        levels.on("silence", lambda: silences.append(True))
        speaker.on("dominantspeaker", lambda d: dominant.append(d["producer"].id))
        for observer in (levels, speaker):
            await observer.add_producer(producer_id=p_alice.id)
            await observer.add_producer(producer_id=p_bob.id)
        with pytest.raises(ArgumentError):
            await levels.add_producer(producer_id="nobody")

        async def talk_until(condition) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not condition():
                assert loop.time() < deadline, "no event in time"
                alice.send()
                bob.send()
                await asyncio.sleep(0.01)

        # Alice loud (-20 dBov), Bob quiet (-60): both reported, loudest first; Alice dominates.
        alice.level, bob.level = 20, 60
        await talk_until(lambda: volumes and dominant)
        first = volumes[-1]
        assert [(v["producer"].id, v["volume"]) for v in first] == [(p_alice.id, -20), (p_bob.id, -60)]
        assert dominant == [p_alice.id]

        # Bob under the threshold: only Alice is reported.
        bob.level = 90
        count = len(volumes)
        await talk_until(lambda: len(volumes) > count + 1)
        assert [(v["producer"].id, v["volume"]) for v in volumes[-1]] == [(p_alice.id, -20)]

        # Alice falls silent, Bob speaks up: the dominant speaker moves to Bob.
        alice.level, bob.level = 127, 10
        await talk_until(lambda: dominant[-1] == p_bob.id)
        assert dominant == [p_alice.id, p_bob.id]

        # Nobody sends: one "silence".
        alice.level = bob.level = None
        await wait_until(lambda: silences == [True])

        # A removed producer is not heard ...
        await levels.remove_producer(producer_id=p_alice.id)
        alice.level, bob.level = 5, 30
        count = len(volumes)
        await talk_until(lambda: len(volumes) > count)
        assert [v["producer"].id for v in volumes[-1]] == [p_bob.id]
        assert (await levels.dump())["producerIds"] == [p_bob.id]
        # ... nor a paused one: with Bob paused too, the observer hears silence.
        await p_bob.pause()
        await talk_until(lambda: silences == [True, True])

        await levels.pause()
        assert levels.paused
        await levels.resume()
        closed: list[bool] = []
        speaker.on("routerclose", lambda: closed.append(True))
        levels.close()
        assert levels.closed
        router.close()
        assert closed == [True] and speaker.closed
        alice.sock.close()
        bob.sock.close()
