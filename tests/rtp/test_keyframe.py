import fractions

import pytest

from relay.rtp.keyframe import (
    Vp8Descriptor,
    is_h264_keyframe,
    is_keyframe,
    is_vp8_keyframe,
    is_vp9_keyframe,
    parse_vp8_descriptor,
    supports_keyframe_detection,
)

# Payloads (prefixes) captured from aiortc 1.16's encoders (libvpx VP8, libx264 via PyAV),
# 160x120: the first packets of a forced key frame and of the next (delta) frame.
VP8_KEY = bytes.fromhex("90809d10307a009d012aa0007800390300001c2216162266")
VP8_KEY_CONT = bytes.fromhex("80809d10025e42d796dc0b24bec46a23c36d59f56b19ec99")
VP8_DELTA = bytes.fromhex("90809d11f13900e3c2e810218be06d80bdb3fffff61efa4f")
# STAP-A: SPS (22 bytes) and PPS (4 bytes); the SEI that followed is cut off.
H264_KEY_STAP_A = bytes.fromhex("780016" "6742c01fd902847e5840000003004000000f23c60c92" "000468cb8cb2")
H264_KEY_FU_A_IDR_START = bytes.fromhex("7c8588840abc318005e00020060b75e5d028515575c7bc00")
H264_DELTA_FU_A_START = bytes.fromhex("5c8188886bc31800200cce607da8304ebbb42aa800380991")
H264_DELTA_FU_A_MIDDLE = bytes.fromhex("5c01e7ff786caa864852fe004a2dce23ee4a085751679090")


def test_vp8_real_payloads():
    assert is_vp8_keyframe(VP8_KEY)
    assert not is_vp8_keyframe(VP8_KEY_CONT)  # same frame, not the start of partition 0
    assert not is_vp8_keyframe(VP8_DELTA)
    assert is_keyframe("video/VP8", VP8_KEY)
    assert is_keyframe("vp8", VP8_KEY)


def test_vp8_descriptor_of_real_payload():
    desc = parse_vp8_descriptor(VP8_KEY)
    assert desc == Vp8Descriptor(
        non_reference=False,
        start_of_partition=True,
        partition_index=0,
        picture_id=0x1D10,  # M set: 15 bits of 0x9d10
        picture_id_bits=15,
        tl0_pic_idx=None,
        tid=None,
        layer_sync=None,
        key_idx=None,
        size=4,
    )
    assert VP8_KEY[desc.size + 3 : desc.size + 6] == b"\x9d\x01\x2a"  # key-frame start code


def test_vp8_descriptor_all_fields():
    # X S, PID 0; I L T K; 7-bit PictureID 0x12; TL0PICIDX 0x34; TID 2, Y 1, KEYIDX 5
    payload = bytes([0x90, 0xF0, 0x12, 0x34, 0b10_1_00101, 0x00])
    desc = parse_vp8_descriptor(payload)
    assert desc is not None
    assert (desc.picture_id, desc.picture_id_bits, desc.tl0_pic_idx) == (0x12, 7, 0x34)
    assert (desc.tid, desc.layer_sync, desc.key_idx, desc.size) == (2, True, 5, 5)
    assert is_vp8_keyframe(payload)  # payload header 0x00: P = 0

    # N set, partition 3, K only (no TID): KEYIDX 31
    desc = parse_vp8_descriptor(bytes([0xA3, 0x10, 0x1F]))
    assert desc is not None
    assert (desc.non_reference, desc.start_of_partition, desc.partition_index) == (True, False, 3)
    assert (desc.tid, desc.layer_sync, desc.key_idx, desc.size) == (None, None, 31, 3)

    # no extension at all
    desc = parse_vp8_descriptor(bytes([0x10, 0x30]))
    assert desc is not None and desc.size == 1 and desc.picture_id is None
    assert is_vp8_keyframe(bytes([0x10, 0x30, 0x7A, 0x00, 0x9D, 0x01, 0x2A]))
    assert not is_vp8_keyframe(bytes([0x10, 0x31]))  # P = 1
    assert not is_vp8_keyframe(bytes([0x11, 0x30]))  # partition 1


@pytest.mark.parametrize(
    "truncated",
    [b"", b"\x90", b"\x90\x80", b"\x90\x80\x80", b"\x90\x40", b"\x90\x20", b"\x90\x10"],
)
def test_vp8_truncated(truncated):
    assert parse_vp8_descriptor(truncated) is None
    assert not is_vp8_keyframe(truncated)


def test_vp8_descriptor_without_payload_is_not_keyframe():
    assert parse_vp8_descriptor(b"\x90\x80\x05") is not None
    assert not is_vp8_keyframe(b"\x90\x80\x05")


def test_vp9_non_flexible():
    # I L B; PictureID 5; TID 0 U 0 SID 0 D 0; TL0PICIDX 7; then VP9 data
    key = bytes([0xA8, 0x05, 0x00, 0x07, 0x82, 0x49, 0x83])
    assert is_vp9_keyframe(key)
    assert is_keyframe("video/VP9", key)
    assert not is_vp9_keyframe(bytes([0xE8]) + key[1:])  # P set: inter-predicted
    assert not is_vp9_keyframe(bytes([0xA0]) + key[1:])  # B clear: not a frame start
    assert not is_vp9_keyframe(key[:2] + bytes([0x02]) + key[3:])  # SID 1: upper layer
    assert not is_vp9_keyframe(key[:3])  # TL0PICIDX missing


def test_vp9_flexible():
    assert is_vp9_keyframe(bytes([0x98, 0x80, 0x01, 0xAA]))  # I F B, 15-bit PictureID
    # I P F B: two reference indices (N chains), then data: inter-predicted
    delta = bytes([0xD8, 0x01, 0x03, 0x02, 0xAA])
    assert not is_vp9_keyframe(delta)
    assert not is_vp9_keyframe(bytes([0xD8, 0x01, 0x03]))  # reference chain truncated
    # I L F B with SID 0: flexible layer octet has no TL0PICIDX
    assert is_vp9_keyframe(bytes([0xB8, 0x01, 0x00]))
    assert not is_vp9_keyframe(bytes([0xB8, 0x01]))


def test_vp9_scalability_structure():
    # B V; SS: N_S=0, Y, G; 640x480; N_G 1; group T0 U0 R1 + one P_DIFF
    key = bytes([0x0A, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x04, 0x01])
    assert is_vp9_keyframe(key)
    for cut in range(1, len(key)):
        assert not is_vp9_keyframe(key[:cut]), cut


def test_h264_real_payloads():
    assert is_h264_keyframe(H264_KEY_STAP_A)  # STAP-A carrying SPS
    assert is_h264_keyframe(H264_KEY_FU_A_IDR_START)  # FU-A start of an IDR slice
    assert not is_h264_keyframe(H264_DELTA_FU_A_START)  # FU-A start of a non-IDR slice
    assert not is_h264_keyframe(H264_DELTA_FU_A_MIDDLE)
    assert is_keyframe("video/H264", H264_KEY_STAP_A)


def test_h264_constructed():
    assert is_h264_keyframe(b"\x65\x88")  # single NAL, IDR
    assert is_h264_keyframe(b"\x67\x42")  # single NAL, SPS
    assert not is_h264_keyframe(b"\x41\x9a")  # single NAL, non-IDR slice
    assert not is_h264_keyframe(b"\x68\xce")  # PPS alone
    stap_pps_idr = b"\x18" + b"\x00\x02\x68\xce" + b"\x00\x03\x65\x88\x84"
    assert is_h264_keyframe(stap_pps_idr)
    stap_delta = b"\x18" + b"\x00\x02\x06\x05" + b"\x00\x02\x41\x9a"
    assert not is_h264_keyframe(stap_delta)
    assert not is_h264_keyframe(b"\x18\x00\x09\x67")  # size overruns
    assert not is_h264_keyframe(b"\x18\x00\x00\x67")  # zero size
    assert not is_h264_keyframe(b"\x7c\x05\x00")  # FU-A middle of an IDR
    assert not is_h264_keyframe(b"\x7c")  # FU-A without its header
    assert not is_h264_keyframe(b"")


def test_unknown_codecs():
    assert not is_keyframe("audio/opus", b"\x00")
    assert not supports_keyframe_detection("video/AV1")
    assert supports_keyframe_detection("video/h264")


def encode_two_frames(mime: str) -> tuple[list[bytes], list[bytes]]:
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from av import VideoFrame

    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96))
    frames = []
    for i in range(2):
        frame = VideoFrame(160, 120, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 40 + 16) & 0xFF]) * plane.buffer_size)
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=(i == 0))
        frames.append(payloads)
    return frames[0], frames[1]


def test_live_vp8_encoder():
    key, delta = encode_two_frames("video/VP8")
    assert [is_vp8_keyframe(p) for p in key] == [True] + [False] * (len(key) - 1)
    assert not any(is_vp8_keyframe(p) for p in delta)


def test_live_h264_encoder():
    key, delta = encode_two_frames("video/H264")
    assert is_h264_keyframe(key[0])
    assert not any(is_h264_keyframe(p) for p in delta)
