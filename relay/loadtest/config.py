"""Command-line options of relay-loadtest, checked into a LoadtestConfig (ConfigError with a
message that says what to change)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from relay.transport.dtls import SRTP_PROFILES
from relay.transport.srtp_session import CRYPTO_SUITES

from . import scenario as scenarios

SEND_MODES = ("zerocopy", "copy", "socket")
QUALITY_CHOICES = ("on", "off", "both")
TRANSPORT_CC_CHOICES = ("on", "off", "both")
MAX_SINKS = 2000
MAX_PACKETS_PER_FRAME = 1000
MAX_WORKERS = 16
MAX_RSS_CONSUMERS = 1000
PLAIN = "plain"  # --srtp-suites: no SRTP

# --matrix NAME: what it sets, unless given on the command line.
MATRIX_PRESETS: dict[str, dict[str, Any]] = {
    # issue 14's Show: the four scenarios, plain and both SRTP families, every send mode,
    # transport-cc numbering and send history on as browsers negotiate, latency at half the
    # best rate and the worker's RSS per consumer.
    "issue14": {"scenarios": ["audio10", "audio40", "video10x10", "rooms5x4"],
                "srtp_suites": [PLAIN, "AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"],
                "send_mode": "auto,zerocopy,copy,socket", "transport_cc": "on", "search": True,
                "half_rate_latency": True, "rss_per_consumer": 100},
}
# Where a matrix search starts when --start-rate is not given: 20k forwarded pkt/s.
MATRIX_START_FORWARDED = 20000.0


class Variant(NamedTuple):
    """One worker (or --workers group) of a run: the label keys the report and JSON;
    ``tree`` is the checkout it runs from (None: this one; --compare-tree)."""

    label: str
    mode: str
    quality: bool
    transport_cc: bool
    transport_cc_extension: bool  # the extension only, no feedback (transport-cc both)
    workers: int
    tree: str | None = None


class ConfigError(ValueError):
    """A bad option or combination of options."""


@dataclass
class LoadtestConfig:
    scenario: str = "fanout"
    kind: str = "audio"
    consumers: int = 10
    streams: int = 1
    rooms: int = 2
    participants: int = 4
    transport: str = "plain"
    srtp: bool = False
    srtp_suite: str = "AES_CM_128_HMAC_SHA1_80"
    consent_interval: float = 5.0
    search: bool = False
    rate: float = 1000.0
    duration: float = 5.0
    start_rate: float = 2000.0
    max_rate: float = 400000.0
    step_duration: float = 3.0
    precision: float = 0.05
    max_steps: int = 18
    threshold: float = 0.99
    send_mode: str = "auto"
    quality: str = "on"
    transport_cc: str = "off"
    self_test: bool = False
    warmup: float = 0.5
    poll_interval_ms: float = 1.0
    late_after_ms: float = 100.0
    port_min: int = 40000
    pin: bool = True
    soak: float | None = None
    soak_interval: float = 5.0
    soak_max_slope: float = 1.0
    soak_max_growth: float = 8.0
    json: str | None = None
    plot: str | None = None
    modes: list[str] = field(default_factory=list)
    # One target each: (label, send mode, quality on, transport-cc on, transport-cc
    # extension only, workers); the label keys the report and JSON.
    # With --workers N (> 1) each comes twice: on one worker, and spread over N.
    variants: list[Variant] = field(default_factory=list)
    workers: int = 1
    # A matrix: every scenario (see parse_scenario_spec) x SRTP variant in one run (matrix.py)
    matrix: str | None = None
    scenarios: list[str] = field(default_factory=list)
    srtp_suites: list[str] = field(default_factory=list)
    start_rate_given: bool = True
    # Before/after: the same variants also run from another checkout, interleaved.
    compare_tree: str | None = None
    compare_label: str = "before"
    tree_label: str = "after"
    half_rate_latency: bool = False
    half_rate_duration: float = 10.0
    rss_per_consumer: int = 0

    def build_scenario(self) -> scenarios.Scenario:
        if self.scenario == "fanout":
            return scenarios.fanout(self.kind, self.consumers, self.streams)
        return scenarios.rooms(self.kind, self.rooms, self.participants)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def is_matrix(self) -> bool:
        return bool(self.scenarios or self.srtp_suites)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relay-loadtest",
        description="Drive a relay worker with synthetic RTP producers and count what its "
                    "consumers receive: a fixed rate for a duration, or a search for the "
                    "highest input rate at which every consumer gets >= 99 %% of its packets.")
    g = p.add_argument_group("scenario")
    g.add_argument("--scenario", choices=("fanout", "rooms"), default="fanout",
                   help="fanout: 1 producer -> N consumers; rooms: R rooms x P participants, "
                        "everyone receives everyone (default fanout)")
    g.add_argument("--kind", choices=("audio", "video"), default="audio",
                   help="audio: 200-byte packets; video: 1200-byte packets in 30 fps frame "
                        "bursts (default audio)")
    g.add_argument("--consumers", type=int, default=10, help="fanout: consumers (default 10)")
    g.add_argument("--streams", type=int, default=1,
                   help="fanout: producers sharing the input rate (default 1)")
    g.add_argument("--rooms", type=int, default=2, help="rooms: how many (default 2)")
    g.add_argument("--participants", type=int, default=4,
                   help="rooms: participants per room (default 4)")
    g.add_argument("--transport", choices=("plain", "webrtc"), default="plain",
                   help="plain: plain RTP transports, SDES-keyed with --srtp (default); "
                        "webrtc: WebRTC transports, each driven by a synthetic peer on its "
                        "own socket (ICE + DTLS before the traffic starts, then "
                        "DTLS-SRTP: implies --srtp)")
    g.add_argument("--srtp", action="store_true", help="SRTP on every transport")
    g.add_argument("--srtp-suite", default="AES_CM_128_HMAC_SHA1_80",
                   help=f"one of {', '.join(CRYPTO_SUITES)}; with --transport webrtc, the "
                        f"DTLS-SRTP profile the peers offer (one of "
                        f"{', '.join(p.crypto_suite for p in SRTP_PROFILES)})")
    g.add_argument("--consent-interval", type=float, default=5.0,
                   help="webrtc: seconds between each peer's ICE consent checks; the worker "
                        "drops a peer after 30 s without one (default 5)")
    r = p.add_argument_group("rates")
    r.add_argument("--search", action="store_true", default=None,
                   help="search the highest input rate with >= threshold delivery")
    r.add_argument("--rate", type=float, default=1000.0,
                   help="fixed mode: input packets/s over all producers (default 1000)")
    r.add_argument("--duration", type=float, default=5.0,
                   help="fixed mode: seconds (default 5)")
    r.add_argument("--start-rate", type=float, default=None,
                   help="search: first input rate, doubled until a step fails (default 2000; "
                        "in a matrix, the input rate that forwards 20k pkt/s)")
    r.add_argument("--max-rate", type=float, default=400000.0,
                   help="search: never offer more than this (default 400000)")
    r.add_argument("--step-duration", type=float, default=3.0,
                   help="search: seconds per step (default 3)")
    r.add_argument("--precision", type=float, default=0.05,
                   help="search: stop bisecting within this fraction (default 0.05)")
    r.add_argument("--max-steps", type=int, default=18,
                   help="search: steps per mode, retries included (default 18)")
    r.add_argument("--threshold", type=float, default=0.99,
                   help="delivery every consumer must reach for a step to pass (default 0.99)")
    r.add_argument("--late-after-ms", type=float, default=100.0,
                   help="a packet later than this does not count as delivered for the "
                        "pass/fail verdict (default 100)")
    r.add_argument("--warmup", type=float, default=0.5,
                   help="seconds of unrecorded traffic before the first step (default 0.5)")
    r.add_argument("--poll-interval-ms", type=float, default=1.0,
                   help="above 20k forwarded pkt/s the harness sends and reads on this "
                        "period so each syscall moves a batch; 0 = busy loop (default 1)")
    s = p.add_argument_group("soak")
    s.add_argument("--soak", type=parse_duration, metavar="DURATION",
                   help="run --rate for DURATION (seconds, or 90s, 10m, 1h) instead of "
                        "--duration, sampling the worker's RSS and its free send-ring slots "
                        "every --soak-interval; exit 3 if RSS grows or the slots do not all "
                        "come back at idle")
    s.add_argument("--soak-interval", type=float, default=5.0, metavar="SECONDS",
                   help="soak: seconds between samples (default 5)")
    s.add_argument("--soak-max-slope", type=float, default=1.0, metavar="MB_PER_MIN",
                   help="soak: RSS growth allowed over the second half, as the slope of a "
                        "linear fit (default 1 MB/min)")
    s.add_argument("--soak-max-growth", type=float, default=8.0, metavar="MB",
                   help="soak: RSS growth allowed from the settled baseline to the end "
                        "(default 8 MB)")
    w = p.add_argument_group("worker and harness")
    w.add_argument("--send-mode", default=None, metavar="MODE",
                   help=f"the worker's send ring tier: auto, {', '.join(SEND_MODES)}; all: "
                        "one worker per tier, steps interleaved, compared side by side; or a "
                        "comma-separated list of modes, e.g. auto,copy (default auto)")
    w.add_argument("--quality", choices=QUALITY_CHOICES, default="on",
                   help="on: producers and consumers negotiate NACK (and PLI/FIR for video), "
                        "as browsers do, so the worker keeps retransmission stores and NACKs "
                        "gaps upstream; off: no RTCP feedback negotiated (SR/RR reports run "
                        "either way); both: one worker each per send mode, steps interleaved, "
                        "compared side by side (default on)")
    w.add_argument("--transport-cc", choices=TRANSPORT_CC_CHOICES, default=None,
                   help="on: producers negotiate the transport-wide sequence number extension "
                        "and transport-cc feedback, the generator numbers every packet per "
                        "send transport, and the worker records each one and sends feedback "
                        "every 50-250 ms; off: neither; both: one worker each, steps "
                        "interleaved, off first as the baseline, and its packets carry the "
                        "numbered extension too (declared, feedback not negotiated), so "
                        "only the feedback differs (default off)")
    w.add_argument("--workers", type=int, default=1, metavar="N",
                   help="also run the scenario spread over N workers (sinks round-robin, the "
                        "producers piped from the first worker's router to the others'), "
                        "next to one worker, and compare forwarded packets per worker-CPU "
                        "second (plain or WebRTC transports; the pipes between workers are "
                        "unencrypted with WebRTC, SRTP with --srtp; default 1: one worker "
                        "only)")
    w.add_argument("--self-test", action="store_true",
                   help="also run against a loopback reflector to show the harness sustains "
                        ">= 2x the rate it reports for relay")
    w.add_argument("--port-min", type=int, default=40000,
                   help="first UDP port for the workers' transports (default 40000)")
    w.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the worker and the harness to different cores")
    m = p.add_argument_group("matrix, before/after, latency and memory")
    m.add_argument("--matrix", choices=tuple(MATRIX_PRESETS),
                   help="issue14: --scenarios audio10,audio40,video10x10,rooms5x4 "
                        "--srtp-suites plain,AES_CM_128_HMAC_SHA1_80,AEAD_AES_256_GCM "
                        "--send-mode auto,zerocopy,copy,socket --transport-cc on --search --half-rate-latency "
                        "--rss-per-consumer 100 (each unless given)")
    m.add_argument("--scenarios", type=_csv, metavar="LIST",
                   help="run each of these scenarios in turn (a matrix), one table at the end: "
                        "audioN / videoN (fan-out 1 -> N), videoNxS (S streams), roomsRxP, "
                        "rooms-videoRxP; e.g. audio10,audio40,video10x10,rooms5x4")
    m.add_argument("--srtp-suites", type=_csv, metavar="LIST",
                   help=f"run each scenario with each of these (a matrix): {PLAIN} (no SRTP) "
                        f"or an SRTP suite ({', '.join(CRYPTO_SUITES)})")
    m.add_argument("--compare-tree", metavar="DIR",
                   help="also run every variant from the relay checkout in DIR (its worker "
                        "spawned with DIR first on PYTHONPATH; DIR needs its own compiled "
                        "relay/uring/_ring*.so), steps interleaved with this checkout's, "
                        "DIR's first as the baseline")
    m.add_argument("--compare-label", default="before",
                   help="the label of --compare-tree's variants (default before)")
    m.add_argument("--tree-label", default="after",
                   help="with --compare-tree, the label of this checkout's variants "
                        "(default after)")
    m.add_argument("--half-rate-latency", action=argparse.BooleanOptionalAction, default=None,
                   help="after a search, one step at half the best rate for the one-way "
                        "latency (generator's send time to the sink's kernel receive time)")
    m.add_argument("--half-rate-duration", type=parse_duration, metavar="DURATION",
                   default=None,
                   help="how long that step measures (default 10s: a p99 over a 3-s search "
                        "step rests on 30 ms of packets, one stall of this VM's)")
    m.add_argument("--rss-per-consumer", type=int, metavar="N", default=None,
                   help="also measure the worker's RSS with a producer and no consumers, "
                        "then with N consumers (each on its own plain transport), per SRTP "
                        "variant and checkout: (RSS_N - RSS_0) / N (default 0: off)")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    o.add_argument("--plot", metavar="FILE.png",
                   help="plot delivery and worker CPU against input rate per mode")
    return p


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _csv(text: str) -> list[str]:
    """A comma-separated list (argparse type)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"an empty list: {text!r}")
    return items


_FANOUT_SPEC = re.compile(r"(audio|video)(\d+)(?:x(\d+))?")
_ROOMS_SPEC = re.compile(r"rooms(?:-(audio|video))?(\d+)x(\d+)")


def parse_scenario_spec(spec: str) -> dict[str, Any]:
    """The config fields of a --scenarios item: audio10 (fan-out 1 -> 10 audio), video10x10
    (1 -> 10 video, 10 streams), rooms5x4 (5 rooms of 4, audio), rooms-video5x4."""
    if m := _FANOUT_SPEC.fullmatch(spec):
        return {"scenario": "fanout", "kind": m[1], "consumers": int(m[2]),
                "streams": int(m[3] or 1)}
    if m := _ROOMS_SPEC.fullmatch(spec):
        return {"scenario": "rooms", "kind": m[1] or "audio", "rooms": int(m[2]),
                "participants": int(m[3])}
    raise ConfigError(f"--scenarios: {spec!r} is not audioN, videoN, videoNxS, roomsRxP or "
                      f"rooms-videoRxP (e.g. audio10, video10x10, rooms5x4)")


def parse_duration(text: str) -> float:
    """Seconds from "600", "90s", "10m" or "1h" (argparse type)."""
    unit = _DURATION_UNITS.get(text[-1:].lower())
    try:
        return float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (seconds, or a number with s, m or h)") from None


def _check_output(path: str | None, what: str) -> None:
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"{what}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"{what}: directory {directory} is not writable")


def from_args(argv: list[str] | None = None) -> LoadtestConfig:
    """Parse and check; argparse exits on syntax errors, ConfigError on bad values."""
    ns = build_parser().parse_args(argv)
    given = {k for k, v in vars(ns).items() if v is not None}
    cfg = LoadtestConfig(**{k: v for k, v in vars(ns).items() if v is not None})
    if cfg.matrix:
        for key, value in MATRIX_PRESETS[cfg.matrix].items():
            if key not in given:
                setattr(cfg, key, value)
    cfg.start_rate_given = "start_rate" in given
    validate(cfg)
    return cfg


def matrix_cells(cfg: LoadtestConfig) -> list[tuple[str, str, LoadtestConfig]]:
    """(scenario spec, SRTP variant, the cell's own validated config) for every cell of a
    matrix, in run order: each scenario with each SRTP variant."""
    specs = cfg.scenarios or [_spec_of(cfg)]
    suites = cfg.srtp_suites or [cfg.srtp_suite if cfg.srtp else PLAIN]
    cells = []
    for spec in specs:
        fields = parse_scenario_spec(spec)
        for suite in suites:
            cell = dataclasses.replace(
                cfg, **fields, srtp=suite != PLAIN,
                srtp_suite=suite if suite != PLAIN else cfg.srtp_suite,
                scenarios=[], srtp_suites=[], json=None, plot=None, rss_per_consumer=0,
                variants=[], modes=[])
            if not cfg.start_rate_given:
                built = cell.build_scenario()
                cell.start_rate = round(MATRIX_START_FORWARDED * built.streams
                                        / len(built.consumers))
                cell.max_rate = max(cell.max_rate, cell.start_rate)
            validate(cell)
            cells.append((spec, suite, cell))
    return cells


def _spec_of(cfg: LoadtestConfig) -> str:
    if cfg.scenario == "fanout":
        return f"{cfg.kind}{cfg.consumers}" + (f"x{cfg.streams}" if cfg.streams > 1 else "")
    return f"rooms{'-video' if cfg.kind == 'video' else ''}{cfg.rooms}x{cfg.participants}"


def _validate_matrix(cfg: LoadtestConfig) -> None:
    if cfg.plot is not None:
        raise ConfigError("--plot draws one scenario: drop it from a matrix (the JSON has "
                          "every step of every cell)")
    if cfg.soak is not None:
        raise ConfigError("--soak watches one worker: drop --matrix, --scenarios and "
                          "--srtp-suites")
    for suite in cfg.srtp_suites:
        if suite != PLAIN and suite not in CRYPTO_SUITES:
            raise ConfigError(f"--srtp-suites: {suite!r} is not {PLAIN} or one of "
                              f"{', '.join(CRYPTO_SUITES)}")
        if suite == PLAIN and cfg.transport == "webrtc":
            raise ConfigError(f"--srtp-suites {PLAIN}: WebRTC media is always SRTP; drop "
                              f"{PLAIN} or use --transport plain")
    if len(set(cfg.scenarios)) != len(cfg.scenarios) or \
            len(set(cfg.srtp_suites)) != len(cfg.srtp_suites):
        raise ConfigError("--scenarios and --srtp-suites: an item is listed twice")
    cells = matrix_cells(cfg)
    cfg.modes = cells[0][2].modes
    cfg.variants = cells[0][2].variants


def _validate_tree(cfg: LoadtestConfig) -> None:
    """--compare-tree: a relay checkout with its compiled send ring."""
    assert cfg.compare_tree is not None
    tree = os.path.abspath(cfg.compare_tree)
    if not os.path.isfile(os.path.join(tree, "relay", "worker", "__main__.py")):
        raise ConfigError(f"--compare-tree {cfg.compare_tree}: no relay checkout there "
                          f"(relay/worker/__main__.py is missing)")
    uring = os.path.join(tree, "relay", "uring")
    if not any(name.startswith("_ring.") and name.endswith(".so")
               for name in os.listdir(uring)):
        raise ConfigError(f"--compare-tree {cfg.compare_tree}: relay/uring has no compiled "
                          f"_ring*.so; build it there first (docs/performance.md, "
                          f"\"Reproduce\")")
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.samefile(tree, here):
        raise ConfigError(f"--compare-tree {cfg.compare_tree} is this checkout")
    if cfg.compare_label == cfg.tree_label:
        raise ConfigError("--compare-label and --tree-label must differ")
    if cfg.workers > 1:
        raise ConfigError("--compare-tree with --workers: compare one worker each")
    cfg.compare_tree = tree


def validate(cfg: LoadtestConfig) -> None:
    if cfg.compare_tree is not None:
        _validate_tree(cfg)
    if cfg.half_rate_latency and not cfg.search:
        raise ConfigError("--half-rate-latency needs --search: half of the best rate found")
    if not 0 < cfg.half_rate_duration < float("inf"):
        raise ConfigError(f"--half-rate-duration must be a positive number of seconds "
                          f"(got {cfg.half_rate_duration})")
    if not 0 <= cfg.rss_per_consumer <= MAX_RSS_CONSUMERS:
        raise ConfigError(f"--rss-per-consumer must be in 0..{MAX_RSS_CONSUMERS} "
                          f"(got {cfg.rss_per_consumer})")
    if cfg.rss_per_consumer and cfg.transport != "plain":
        raise ConfigError("--rss-per-consumer builds plain transports: drop --transport webrtc")
    if cfg.is_matrix:
        _validate_matrix(cfg)
        _check_output(cfg.json, "--json")
        _check_output(cfg.plot, "--plot")
        return
    if cfg.srtp_suite not in CRYPTO_SUITES:
        raise ConfigError(f"--srtp-suite must be one of {', '.join(CRYPTO_SUITES)}")
    if cfg.transport == "webrtc":
        dtls_suites = [p.crypto_suite for p in SRTP_PROFILES]
        if cfg.srtp_suite not in dtls_suites:
            raise ConfigError(f"--transport webrtc --srtp-suite {cfg.srtp_suite}: DTLS-SRTP "
                              f"here negotiates only {', '.join(dtls_suites)}; pick one of "
                              f"those, or use --transport plain --srtp for this suite")
        if not 0 < cfg.consent_interval <= 25:
            raise ConfigError(f"--consent-interval must be in (0, 25] seconds: the worker "
                              f"drops a peer after 30 s without a check (got "
                              f"{cfg.consent_interval})")
        cfg.srtp = True  # DTLS-SRTP: the media is always encrypted
    if not 1 <= cfg.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be in 1..{MAX_WORKERS} (got {cfg.workers})")
    positive_ints = {"--consumers": cfg.consumers, "--streams": cfg.streams,
                     "--rooms": cfg.rooms, "--max-steps": cfg.max_steps}
    for name, value in positive_ints.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value})")
    if cfg.participants < 2:
        raise ConfigError(f"--participants must be at least 2: with fewer nobody receives "
                          f"anything (got {cfg.participants})")
    for name, value in (("--rate", cfg.rate), ("--duration", cfg.duration),
                        ("--start-rate", cfg.start_rate), ("--max-rate", cfg.max_rate),
                        ("--step-duration", cfg.step_duration)):
        if not value > 0 or value != value or value == float("inf"):
            raise ConfigError(f"{name} must be a positive number (got {value})")
    if not 0 <= cfg.poll_interval_ms <= 20:
        raise ConfigError(f"--poll-interval-ms must be in 0..20 (got {cfg.poll_interval_ms})")
    if not cfg.late_after_ms > 0:
        raise ConfigError(f"--late-after-ms must be positive (got {cfg.late_after_ms})")
    if cfg.warmup < 0:
        raise ConfigError(f"--warmup must not be negative (got {cfg.warmup})")
    if cfg.max_rate < cfg.start_rate:
        raise ConfigError(f"--max-rate ({cfg.max_rate:g}) is below --start-rate "
                          f"({cfg.start_rate:g})")
    if not 0 < cfg.precision < 1:
        raise ConfigError(f"--precision must be between 0 and 1 (got {cfg.precision})")
    if not 0 < cfg.threshold <= 1:
        raise ConfigError(f"--threshold must be in (0, 1] (got {cfg.threshold})")
    scenario = cfg.build_scenario()
    if scenario.sinks > MAX_SINKS:
        raise ConfigError(f"the scenario needs {scenario.sinks} receiving peers; at most "
                          f"{MAX_SINKS} are supported")
    if scenario.streams > 0xFFFF:
        raise ConfigError("too many streams (at most 65535)")
    cfg.modes = _send_modes(cfg.send_mode)
    qualities = ["off", "on"] if cfg.quality == "both" else [cfg.quality]  # baseline first
    tccs = ["off", "on"] if cfg.transport_cc == "both" else [cfg.transport_cc]
    # --compare-tree: the other checkout's worker first in each round (the baseline)
    trees: list[tuple[str | None, str]] = [(None, "")]
    if cfg.compare_tree is not None:
        trees = [(cfg.compare_tree, cfg.compare_label), (None, cfg.tree_label)]
    if cfg.soak is not None:
        _validate_soak(cfg, len(cfg.modes) * len(qualities) * len(tccs)
                       * (2 if cfg.workers > 1 else 1) * len(trees))

    def label(mode: str, quality: str, tcc: str, tree_label: str) -> str:
        return " ".join([mode] + ([f"quality-{quality}"] if len(qualities) > 1 else [])
                        + ([f"transport-cc-{tcc}"] if len(tccs) > 1 else [])
                        + ([tree_label] if tree_label else []))

    # both: the off worker gets the same numbered packets, its producers declaring the
    # extension but not the feedback, so the comparison is the feedback alone (browser
    # packets carry the extension either way; rewriting and numbering it when forwarding
    # is the fan-out's cost, not the feedback's).
    counts = [1, cfg.workers] if cfg.workers > 1 else [1]
    cfg.variants = [Variant(label(mode, quality, tcc, tree_label)
                            + (f" x{workers}" if cfg.workers > 1 else ""),
                            mode, quality == "on", tcc == "on",
                            tcc == "off" and len(tccs) > 1, workers, tree)
                    for mode in cfg.modes for quality in qualities for tcc in tccs
                    for workers in counts for tree, tree_label in trees]
    ports = port_range_size(cfg)
    last = cfg.port_min + ports * len(cfg.variants) - 1
    if not 1024 <= cfg.port_min or last > 65535:
        raise ConfigError(f"--port-min {cfg.port_min}: the workers need {ports} ports each "
                          f"({len(cfg.variants)} worker(s)), which does not fit in 1024..65535")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # WebRTC: one more socket per send transport (each producer peer has its own).
    senders = sum(len(room.send_groups) for room in scenario.rooms) \
        if cfg.transport == "webrtc" else 0
    fds_needed = (scenario.sinks + senders + 8) * (len(cfg.variants) +
                                                   (1 if cfg.self_test else 0))
    if fds_needed > soft - 64:
        raise ConfigError(f"the scenario needs about {fds_needed} sockets in the harness but "
                          f"RLIMIT_NOFILE is {soft}; raise it (ulimit -n) or shrink the scenario")
    if cfg.kind == "video":
        # A frame is one burst; past this a "frame" is several megabytes, not video.
        ceiling = MAX_PACKETS_PER_FRAME * scenario.streams * scenarios.VIDEO_FPS
        if cfg.search:
            cfg.max_rate = min(cfg.max_rate, ceiling)
        if (cfg.start_rate if cfg.search else cfg.rate) > ceiling:
            raise ConfigError(f"video: at most {MAX_PACKETS_PER_FRAME} packets per frame per "
                              f"stream ({ceiling:g} pkt/s with {scenario.streams} stream(s)); "
                              f"add --streams or lower the rate")
    _check_output(cfg.json, "--json")
    _check_output(cfg.plot, "--plot")
    if cfg.plot is not None and not cfg.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot writes a PNG: give a file name ending in .png "
                          f"(got {cfg.plot})")


def _send_modes(text: str) -> list[str]:
    """--send-mode: one tier, "all" (the three tiers), or a comma-separated list."""
    if text == "all":
        return list(SEND_MODES)
    modes = [m.strip() for m in text.split(",")]
    for mode in modes:
        if mode not in ("auto", *SEND_MODES):
            raise ConfigError(f"--send-mode: {mode!r} is not auto, {', '.join(SEND_MODES)}, "
                              f"all, or a comma-separated list of them")
    if len(set(modes)) != len(modes):
        raise ConfigError(f"--send-mode {text}: a mode is listed twice")
    return modes


def _validate_soak(cfg: LoadtestConfig, variants: int) -> None:
    assert cfg.soak is not None
    if not cfg.soak > 0 or cfg.soak == float("inf"):
        raise ConfigError(f"--soak must be a positive duration (got {cfg.soak})")
    if cfg.search or cfg.self_test:
        raise ConfigError("--soak runs one fixed --rate: drop --search and --self-test")
    if variants > 1:
        raise ConfigError("--soak watches one worker: pick one --send-mode (not all), "
                          "one --quality and one --transport-cc (not both)")
    if not 0 < cfg.soak_interval <= cfg.soak / 2:
        raise ConfigError(f"--soak-interval must be positive and at most half of --soak, so "
                          f"there are samples to compare (got {cfg.soak_interval:g} s for a "
                          f"{cfg.soak:g} s soak)")
    if not (cfg.soak_max_slope >= 0 and cfg.soak_max_growth >= 0):
        raise ConfigError("--soak-max-slope and --soak-max-growth must not be negative")
    cfg.duration = cfg.soak


def port_range_size(cfg: LoadtestConfig) -> int:
    """Ports per variant: each of its workers gets the scenario's transports, its pipe
    transports and some slack."""
    return (cfg.build_scenario().transports_needed() + 16
            + 2 * len(cfg.build_scenario().rooms)) * cfg.workers


def port_range(cfg: LoadtestConfig, index: int) -> tuple[int, int]:
    """The rtc port range of the index-th variant (split among its workers)."""
    size = port_range_size(cfg)
    low = cfg.port_min + index * size
    return low, low + size - 1
