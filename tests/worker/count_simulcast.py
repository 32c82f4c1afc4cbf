"""Per-inbound-packet instruction count of a VP8 simulcast producer's packet path (not a test).

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python3 tests/worker/count_simulcast.py PACKETS --toggle [--consumers 10] [--tl0]

Like count_fanout.py, with a VP8 producer of three encodings and simulcast consumers of its
lowest one: PACKETS 1000-byte packets of stream 0 with Chrome's VP8 descriptor (15-bit
PictureID, TL0PICIDX, TID in L1T3 order 0, 2, 1, 2; the first frame a key frame;
`--per-frame K` packets per frame, default 1) go through Producer.receive(). `--tl0`: the consumers take temporal layer 0 only (the producer then
parses every packet's TID for its fan-out too). Take (instructions(1200) -
instructions(200)) / 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import uvloop

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from media_harness import Media  # noqa: E402

from relay.rtp.packet import build_rtp  # noqa: E402
from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.uring import SendRing  # noqa: E402

SSRCS = [2001, 2002, 2003]
MAPPED = [6001, 6002, 6003]
TIDS = [0, 2, 1, 2]


def vp8_packet(seq: int, per_frame: int) -> bytes:
    frame, index = divmod(seq, per_frame)
    tid = TIDS[frame % 4]
    picture_id = 0x8000 | frame
    start = 0x10 if index == 0 else 0  # S: the frame's first packet
    descriptor = bytes([0x80 | start, 0xE0, picture_id >> 8, picture_id & 0xFF,
                        frame // 4 & 0xFF, tid << 6 | (0x20 if tid else 0)])
    vp8 = bytes([0x00 if frame == 0 else 0x01]) + b"\x9d\x01\x2a"
    payload = descriptor + vp8 + b"\x00" * (1000 - 12 - len(descriptor) - len(vp8))
    return build_rtp(payload_type=96, sequence_number=seq, timestamp=3000 * frame,
                     ssrc=SSRCS[0], payload=payload)


async def drive(packets: int, consumers: int, tl0: bool, per_frame: int, toggle: bool) -> None:
    loop = asyncio.get_running_loop()
    ring = SendRing(mode="copy")
    ring.attach(loop)
    media = Media(loop, ring, PortAllocator(44000, 44999))
    media.router()
    media.transport("tp")
    media.connect("tp", media.peer())
    media.request("tp", "transport.produce", {
        "producerId": "p1", "kind": "video",
        "rtpParameters": {
            "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
            "encodings": [{"ssrc": s} for s in SSRCS]},
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                       "encodings": [{"ssrc": s, "mappedSsrc": m}
                                     for s, m in zip(SSRCS, MAPPED, strict=True)]},
    })
    for i in range(consumers):
        media.transport(f"tc{i}")
        media.connect(f"tc{i}", media.peer())
        media.request(f"tc{i}", "transport.consume", {
            "consumerId": f"c{i}", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000}],
                              "encodings": [{"ssrc": 7000 + i}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
            "preferredLayers": {"spatialLayer": 0, "temporalLayer": 0 if tl0 else None},
        })
    producer = media.ctx.handlers["p1"]
    buf = bytearray(2048)
    view = memoryview(buf)
    frames = [vp8_packet(seq, per_frame) for seq in range(packets + per_frame)]
    n = len(frames[0])
    first = frames[0]
    buf[:n] = first
    for seq in range(per_frame):  # the key frame: consumers start
        buf[:n] = frames[seq]
        producer.receive(view, n, 0, SSRCS[0], seq, 0, 0.0)
    ring.flush()
    if toggle:  # count only the packets (run under --instr-atstart=no: set-up runs fast)
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
                       capture_output=True)
    for seq in range(per_frame, packets + per_frame):
        buf[:n] = frames[seq]
        producer.receive(view, n, 0, SSRCS[0], seq, 3000 * (seq // per_frame), 0.0)
        if seq % 32 == 0:
            ring.flush()
            await asyncio.sleep(0)
    ring.flush()
    if toggle:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True,
                       capture_output=True)
    sent = sum(media.ctx.handlers[f"c{i}"].packets_sent for i in range(consumers))
    expected = ((packets // per_frame // 4 + 1) * per_frame if tl0 else packets + per_frame) * consumers
    assert sent == expected, (sent, expected)
    receiver = producer.receivers[0]
    counted = getattr(receiver, "_tid_bytes", None)
    print(f"packets={packets} consumers={consumers} tl0={tl0} per_frame={per_frame} sent={sent} "
          f"tid_bytes={counted}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("packets", type=int)
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--tl0", action="store_true")
    parser.add_argument("--per-frame", type=int, default=1, help="packets per frame")
    parser.add_argument("--toggle", action="store_true",
                        help="switch callgrind's instrumentation on for the packets only")
    args = parser.parse_args()
    uvloop.run(drive(args.packets, args.consumers, args.tl0, args.per_frame, args.toggle))


if __name__ == "__main__":
    main()
