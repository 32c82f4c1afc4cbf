from relay.transport.demux import PacketKind, classify, is_rtcp


def test_ranges_follow_rfc_7983() -> None:
    expected = {}
    for first in range(256):
        if first <= 3:
            expected[first] = PacketKind.STUN
        elif 20 <= first <= 63:
            expected[first] = PacketKind.DTLS
        elif 128 <= first <= 191:
            expected[first] = PacketKind.RTP
        else:
            expected[first] = PacketKind.UNKNOWN
    for first, kind in expected.items():
        assert classify(bytes([first, 0, 0])) is kind, first


def test_boundaries() -> None:
    assert classify(b"\x03") is PacketKind.STUN
    assert classify(b"\x04") is PacketKind.UNKNOWN
    assert classify(b"\x13") is PacketKind.UNKNOWN  # 19: ZRTP, unused
    assert classify(b"\x14") is PacketKind.DTLS  # 20: change_cipher_spec
    assert classify(b"\x3f") is PacketKind.DTLS
    assert classify(b"\x40") is PacketKind.UNKNOWN  # 64: TURN channel, unused
    assert classify(b"\x7f") is PacketKind.UNKNOWN
    assert classify(b"\x80") is PacketKind.RTP
    assert classify(b"\xbf") is PacketKind.RTP
    assert classify(b"\xc0") is PacketKind.UNKNOWN


def test_empty_and_buffer_types() -> None:
    assert classify(b"") is PacketKind.UNKNOWN
    assert classify(bytearray(b"\x16\xfe\xfd")) is PacketKind.DTLS
    assert classify(memoryview(b"\x00\x01")) is PacketKind.STUN


def test_is_rtcp() -> None:
    assert is_rtcp(bytes([0x80, 200]))  # sender report
    assert is_rtcp(bytes([0x81, 205]))  # transport feedback
    assert not is_rtcp(bytes([0x80, 96]))  # RTP, PT 96
    assert not is_rtcp(bytes([0x80, 96 | 0x80]))  # RTP, PT 96 with marker
    assert not is_rtcp(b"\x80")
