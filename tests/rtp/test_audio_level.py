import struct

import pytest

from relay.rtp.audio_level import (
    ActiveSpeakerCore,
    AudioLevelEvent,
    AudioLevelObserverCore,
    ProducerVolume,
    audio_level_from_packet,
    find_header_extension,
    parse_audio_level,
)


def rtp_with_extension(profile: int, ext_body: bytes, payload: bytes = b"\xf8\xff") -> bytes:
    assert len(ext_body) % 4 == 0
    header = struct.pack("!BBHII", 0x90, 111, 1, 960, 0x1234)
    return header + struct.pack("!HH", profile, len(ext_body) // 4) + ext_body + payload


def test_parse_audio_level():
    assert parse_audio_level(b"\x85") == (True, 5)
    assert parse_audio_level(b"\x7f") == (False, 127)
    assert parse_audio_level(b"") is None


def test_one_byte_extensions():
    # id 1 (mid, 2 bytes "ab"), a padding octet, id 3 (audio level, V=1 level 42), padding
    body = bytes([0x11]) + b"ab" + b"\x00" + bytes([0x30, 0x80 | 42]) + b"\x00\x00"
    packet = rtp_with_extension(0xBEDE, body)
    assert find_header_extension(packet, 1) == b"ab"
    assert audio_level_from_packet(packet, 3) == (True, 42)
    assert audio_level_from_packet(packet, 4) is None


def test_two_byte_extensions():
    body = bytes([1, 2]) + b"ab" + bytes([3, 1, 30]) + b"\x00"
    packet = rtp_with_extension(0x1000, body)
    assert find_header_extension(packet, 1) == b"ab"
    assert audio_level_from_packet(packet, 3) == (False, 30)


def test_extension_with_csrcs():
    header = struct.pack("!BBHII", 0x92, 111, 1, 960, 0x1234) + b"\x00\x00\x00\x01" * 2
    packet = header + bytes.fromhex("bede0001") + bytes([0x10, 0x8A, 0, 0]) + b"\xf8"
    assert audio_level_from_packet(packet, 1) == (True, 10)


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        struct.pack("!BBHII", 0x80, 111, 1, 960, 0x1234),  # no extension
        struct.pack("!BBHII", 0x90, 111, 1, 960, 0x1234) + b"\xbe\xde",  # truncated
        rtp_with_extension(0xBEDE, b"")[:-2] + b"\x00\x05",  # length overruns
        rtp_with_extension(0xBEDE, bytes([0x33, 0x80, 0, 0])),  # id 3 says 4 bytes, has 3
        rtp_with_extension(0xBEDE, bytes([0xF0, 0x80, 0, 0])),  # id 15: stop
        rtp_with_extension(0x1000, bytes([3, 9, 0, 0])),  # two-byte item overruns
        rtp_with_extension(0x1234, bytes([0x30, 0x80, 0, 0])),  # unknown profile
    ],
)
def test_malformed_extensions_give_none(packet):
    assert audio_level_from_packet(packet, 3) is None


def test_observer_volumes_and_silence():
    obs = AudioLevelObserverCore(max_entries=2, threshold=-80, interval=1.0)
    for producer in ("a", "b", "c", "d"):
        obs.add_producer(producer)
    assert obs.on_interval() is None  # silent from the start: no event
    for level in (10, 20):
        obs.on_level("a", level)  # mean 15 -> -15 dBov
    for level in (50, 51):
        obs.on_level("b", level)  # mean 50.5 -> -51 dBov (half away from zero)
    obs.on_level("c", 90)  # -90 dBov: below the threshold
    obs.on_level("d", 5)  # -5: the loudest, though added last
    obs.on_level("unknown", 0)  # ignored
    assert obs.on_interval() == AudioLevelEvent(
        "volumes", [ProducerVolume("d", -5), ProducerVolume("a", -15)]  # b: beyond max_entries
    )
    for level in (50, 51):
        obs.on_level("b", level)
    assert obs.on_interval() == AudioLevelEvent("volumes", [ProducerVolume("b", -51)])
    assert obs.on_interval() == AudioLevelEvent("silence", [])
    assert obs.on_interval() is None  # silence is reported once
    obs.on_level("c", 80)  # exactly the threshold counts
    assert obs.on_interval() == AudioLevelEvent("volumes", [ProducerVolume("c", -80)])


def test_observer_pause_and_remove():
    obs = AudioLevelObserverCore(threshold=-127)
    obs.add_producer("a")
    obs.pause()
    obs.on_level("a", 5)
    assert obs.on_interval() is None
    obs.resume()
    obs.on_level("a", 5)
    assert obs.on_interval() == AudioLevelEvent("volumes", [ProducerVolume("a", -5)])
    obs.remove_producer("a")
    obs.on_level("a", 5)
    assert obs.on_interval() == AudioLevelEvent("silence", [])


def test_observer_rejects_bad_arguments():
    with pytest.raises(ValueError):
        AudioLevelObserverCore(max_entries=0)
    with pytest.raises(ValueError):
        AudioLevelObserverCore(threshold=10)
    with pytest.raises(ValueError):
        AudioLevelObserverCore(interval=0)


def speak(core: ActiveSpeakerCore, producer: str, level: int, packets: int = 15) -> None:
    for _ in range(packets):
        core.on_level(producer, level, voice=True)


def test_active_speaker_switches_with_hysteresis():
    core = ActiveSpeakerCore(interval=0.3)  # floor -70, smoothing 0.5, ratio 1.5, 2 intervals
    core.add_producer("a")
    core.add_producer("b")
    speak(core, "a", 20)  # activity 50
    assert core.on_interval() is None  # score 25: a candidate for 1 interval
    speak(core, "a", 20)
    assert core.on_interval() == "a"  # score 37.5, 2 intervals: dominant
    assert core.dominant == "a"
    speak(core, "b", 10)  # activity 60; a silent: a 18.75, b 30 >= 1.5 * 18.75
    assert core.on_interval() is None
    speak(core, "b", 10)  # a 9.375, b 45
    assert core.on_interval() == "b"
    assert core.scores == {"a": 9.375, "b": 45.0}


def test_active_speaker_ignores_a_cough():
    core = ActiveSpeakerCore()
    core.add_producer("a")
    core.add_producer("b")
    for _ in range(4):
        speak(core, "a", 30)
        core.on_interval()
    assert core.dominant == "a"
    speak(core, "a", 30)
    speak(core, "b", 0)  # one loud interval from b
    assert core.on_interval() is None
    speak(core, "a", 30)
    assert core.on_interval() is None
    assert core.dominant == "a"


def test_active_speaker_quiet_room_and_removal():
    core = ActiveSpeakerCore(switch_intervals=1)
    core.add_producer("a")
    core.add_producer("b")
    speak(core, "a", 75)  # below the -70 dBov floor: no activity
    assert core.on_interval() is None
    speak(core, "a", 30)
    assert core.on_interval() == "a"
    for _ in range(5):  # a falls silent: stays dominant, nobody else speaks
        assert core.on_interval() is None
    assert core.dominant == "a"
    speak(core, "b", 60)  # activity 10: score 5 = min_score
    core.remove_producer("a")
    assert core.on_interval() == "b"
