"""Every fuzz harness by name: its target and seed corpus (built in code), the modules whose
coverage guides it, the longest input worth trying, and how many inputs the CI run gives it
(sized so the whole suite stays well under a minute on the 2-core CI machine).

Targets are named, not imported, here: the fuzzing child must import them inside atheris's
instrumentation hook, which only instruments modules imported after it is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Harness:
    name: str
    target_path: str  # "module:function" in tests.fuzz
    modules: tuple[str, ...]  # instrumented for coverage
    max_len: int
    ci_runs: int
    what: str

    def _resolve(self, attribute: str) -> Callable:
        module, _ = self.target_path.split(":")
        return getattr(importlib.import_module(f"tests.fuzz.{module}"), attribute)

    @property
    def target(self) -> Callable[[bytes], None]:
        return self._resolve(self.target_path.split(":")[1])

    def seeds(self) -> list[bytes]:
        return self._resolve(self.target_path.split(":")[1].replace("fuzz_", "seeds_", 1))()


CI_SEED = 1729  # CI runs are reproducible: the same inputs every time
_RTP = ("relay.rtp.packet",)
HARNESSES: dict[str, Harness] = {h.name: h for h in (
    Harness("rtp_header", "targets_rtp:fuzz_rtp_header",
            _RTP + ("relay.rtp.nack_buffer", "relay.rtp.audio_level"), 1500, 3_000,
            "RTP validation, extension walk and id rewrite (packet.py), cross-checked with "
            "nack_buffer's and audio_level's walkers"),
    Harness("rewriter", "targets_rtp:fuzz_rewriter", ("relay.rtp.rewriter", "relay.uring.rewriter", "relay.worker.fanout"), 600, 3_000,
            "seq/ts rewriting across pauses and SSRC changes (rewriter.py)"),
    Harness("rtx", "targets_rtp:fuzz_rtx", _RTP + ("relay.rtp.nack_buffer",), 1500, 20_000,
            "RTX unwrap and wrap (nack_buffer.py)"),
    Harness("keyframe", "targets_rtp:fuzz_keyframe", ("relay.rtp.keyframe",), 256, 10_000,
            "VP8 descriptor, VP8/VP9/H264 key-frame detection (keyframe.py)"),
    Harness("audio_level", "targets_rtp:fuzz_audio_level", _RTP + ("relay.rtp.audio_level",),
            1500, 20_000, "ssrc-audio-level extension lookup (audio_level.py)"),
    Harness("rtcp", "targets_rtcp:fuzz_rtcp", _RTP + ("relay.rtp.rtcp",), 1500, 8_000,
            "compound RTCP parse and parse -> build -> parse (rtcp.py, packet.iter_rtcp)"),
    Harness("stun_parse", "targets_stun:fuzz_stun_parse",
            ("aioice.stun", "relay.transport.ice_lite", "relay.transport.webrtc_server"),
            1500, 20_000, "aioice's parser behind relay's guards (ice_lite, webrtc_server)"),
    Harness("stun_ice_lite", "targets_stun:fuzz_stun_ice_lite",
            ("relay.transport.ice_lite", "aioice.stun"), 4096, 3_000,
            "ICE-lite request handling and state machine (ice_lite.py)"),
    Harness("tcp_framing", "targets_framing:fuzz_tcp_framing",
            ("relay.transport.tcp_framing",), 4096, 5_000,
            "RFC 4571 framing of ICE-TCP (tcp_framing.py)"),
    Harness("proto_framing", "targets_framing:fuzz_proto_framing", ("worker_proto.framing",),
            4096, 5_000, "the worker pipe's frame reader (worker_proto/framing.py)"),
    Harness("proto_messages", "targets_framing:fuzz_proto_messages",
            ("worker_proto.messages",), 4096, 20_000,
            "the protocol's message decoder and parsers (worker_proto/messages.py)"),
)}
