"""Each subscriber gets what its own downlink carries (issues 13 and 16), in browsers: three
headless Chromium pages of the room demo (examples/room): one publishes its fake camera as
three simulcast layers (r0..r2, lowest first) + microphone, two only watch (?publish=0).
Once both watchers' receive transports are connected (t = 0), the test holds watcher 1's
downlink to RATE (350 kbit/s, see there) from LIMIT_AT to LIFT_AT: a token bucket (`tc` tbf) in an htb class on
loopback, and a u32 filter that sends there only UDP to watcher 1's port (the browser's side
of its receive transport, from relay's iceSelectedTuple). Every page is sampled once a
second (room_downlink_driver.mjs); then:

- watcher 1 is on the lowest spatial layer (relay's consumer currentLayers, and new frames of
  r0's width in Chrome) within STEP_DOWN_WITHIN of the limit; from then until the lift never
  on the top layer, and on the lowest in at least 90 % of the seconds (MAX_OFF_LOWEST);
- neither watcher goes WINDOW seconds without a new decoded frame from DECODING_AFTER on
  (checked in every second: no WINDOW-long run of samples without new frames);
- watcher 2's target (what relay's bandwidth allocation allows it) is the top layer in every
  sample from LIMIT_AT on, and it is on the top layer (r2) whenever the publisher sends r2
  (on a busy 2-core machine Chrome stops encoding r2 for seconds, or scales it to 960x540,
  for CPU: not relay's doing; `top_flowing`);
- watcher 1 is back on the top layer for good (relay's layer, then Chrome decoding r2's
  width) within COME_BACK_WITHIN of the lift;
- while limited, resends are under MAX_RETRANSMISSION_SHARE of what relay sends watcher 1
  (relay's retransmittedBytes / byteCount, and Chrome's retransmittedBytesReceived /
  bytesReceived: by bytes, as Chrome counts relay's padding-only probes as retransmitted
  packets), and the bottleneck drops at most MAX_DROPS_PER_DELIVERED packets per packet it
  delivers (`tc -s`: a sender that answers congestion with resends made it ~9).

The per-second samples, the tc counters and a per-second table go to
artifacts/room-downlink.json (the table is printed too). Runs as root (tc); needs what
`bash scripts/dev.sh setup` installs (as test_room_demo.py).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from room_server import ARTIFACTS, missing_browser_setup, page_problems, room_server

DRIVER = Path(__file__).with_name("room_downlink_driver.mjs")
SECONDS = 69  # the lift, COME_BACK_WITHIN, and 4 s on the top layer to show it stays
# s: both watchers have ramped up to the top layer by then (~11 s), and a stall of the busy
# machine while three pages start their encoders and decoders (seen at 6-9 s: relay's
# estimate drops, and holds a watcher low for UPGRADE_HOLD) is over
LIMIT_AT = 20
LIFT_AT = 45  # s
# The issue says about 600 kbit/s, sized for a camera's layers (r1 500-700 kbit/s), so that
# only the lowest layer fits. Chrome's fake camera encodes r0/r1/r2 at ~170/~390/~750 kbit/s:
# 600 kbit/s carries r1 and audio, and relay rightly tried r1 now and then (measured in 5 of
# 5 runs, with no frame gap). 350 kbit/s keeps the point: r0 and audio (~230 kbit/s)
# fit, r1 and audio (~430) do not.
RATE = "350kbit"
# A token bucket of a few packets and a queue of 150 ms at the rate: a home router's uplink.
TBF = ["rate", RATE, "burst", "4500", "latency", "150ms"]
WINDOW = 5  # s
DECODING_AFTER = 10  # s
STEP_DOWN_WITHIN = 5  # s after LIMIT_AT
# s after LIFT_AT, as the issue asks. Relay holds a spatial up-switch 10 s after a bandwidth
# downgrade (the one at the limit, LIFT_AT - LIMIT_AT earlier), then the next probe round (every 5 s while
# the consumers want more) finds the room: measured 2 s.
COME_BACK_WITHIN = 20
MAX_RETRANSMISSION_SHARE = 0.2
MAX_DROPS_PER_DELIVERED = 1.0
TOP, LOWEST = 2, 0  # spatial layers: r2, r0
# While limited, after the step down: never the top layer (what the probe overshoot did: 2-3 s
# without frames each try), and the lowest layer in at least 90 % of the seconds. When the
# busy machine starves Chrome's encoder, r1 drops to ~260 kbit/s and with audio nearly fits
# 350 kbit/s; the estimate (~0.85-1.1 x the limit) then lets relay try it for a second or two.
MAX_OFF_LOWEST = 0.1


# -- the bottleneck -------------------------------------------------------------------------

def tc(*args: str) -> str:
    run = subprocess.run(["tc", *args], capture_output=True, text=True)
    assert run.returncode == 0, f"tc {' '.join(args)}: {run.stderr.strip()}"
    return run.stdout


def bottleneck_counters() -> dict[str, int] | None:
    """The token bucket's counters (sent packets, drops, backlog), None without it."""
    for q in json.loads(tc("-s", "-j", "qdisc", "show", "dev", "lo")):
        if q.get("kind") == "tbf":
            return {"packets": q["packets"], "bytes": q["bytes"], "drops": q["drops"],
                    "backlog": q.get("backlog", 0), "qlen": q.get("qlen", 0)}
    return None


@contextmanager
def loopback_root_qdisc() -> Iterator[None]:
    """Owns lo's root qdisc for the test (it must be free: noqueue) and removes it, with all
    its children and filters, however the test ends."""
    roots = [q for q in json.loads(tc("-j", "qdisc", "show", "dev", "lo")) if q.get("root")]
    assert all(q["kind"] == "noqueue" for q in roots), f"lo already has a qdisc: {roots}"
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)


def limit_downlink(port: int) -> None:
    """An htb root without a default class (unclassified packets pass directly, as before),
    one class for UDP to `port`, and the token bucket in that class. (This kernel has htb,
    tbf and u32; no prio, netem or fq_codel.)"""
    tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb")
    tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
    tc("qdisc", "add", "dev", "lo", "parent", "1:1", "handle", "30:", "tbf", *TBF)
    tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
       "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(port), "0xffff",
       "flowid", "1:1")


def lift_limit() -> None:
    tc("qdisc", "del", "dev", "lo", "root")


# -- reading the samples --------------------------------------------------------------------

def publisher_frames(sample: dict) -> dict[str, int]:
    """Frames encoded so far on every layer the publisher sends, by rid."""
    sender = sample["pages"][0]["sender"] or {"outbound": []}
    return {o["rid"]: o["framesEncoded"] for o in sender["outbound"] if o["kind"] == "video"}


def top_flowing(samples: list[dict], i: int) -> bool:
    """Whether the publisher encoded r2 frames in each of the 3 seconds up to sample i. On a
    busy 2-core machine Chrome stops encoding r2 for seconds (CPU); relay then rightly moves
    every consumer of it down until r2 comes back with a key frame. Not relay's doing."""
    if i < 3:
        return False
    frames = [publisher_frames(samples[j]).get("r2", 0) for j in range(i - 3, i + 1)]
    return all(b > a for a, b in zip(frames, frames[1:], strict=False))


def publisher_widths(sample: dict) -> dict[str, int]:
    """The width of every layer the publisher encodes, by rid."""
    sender = sample["pages"][0]["sender"] or {"outbound": []}
    return {o["rid"]: o["frameWidth"] for o in sender["outbound"] if o["kind"] == "video"}


def watcher(sample: dict, n: int) -> dict[str, Any]:
    """Watcher n's (1 or 2) video subscription: Chrome's inbound-rtp joined with relay's
    consumer (relay_*) and its receive transport's estimate."""
    page = sample["pages"][n]
    chrome = next((s for s in page["receiver"] if s["kind"] == "video"), {})
    relay = next((c for c in page["relay"]["consumers"] if c["kind"] == "video"), {})
    transport = page["relay"]["recvTransport"] or {}
    return {
        "t": sample["t"],
        "layer": (relay.get("currentLayers") or {}).get("spatialLayer"),
        "target": (relay.get("targetLayers") or {}).get("spatialLayer"),
        "width": chrome.get("frameWidth", 0),
        "framesDecoded": chrome.get("framesDecoded", 0),
        "packetsReceived": chrome.get("packetsReceived", 0),
        "retransmittedPacketsReceived": chrome.get("retransmittedPacketsReceived"),
        "bytesReceived": chrome.get("bytesReceived", 0),
        "retransmittedBytesReceived": chrome.get("retransmittedBytesReceived"),
        "relay_bytes": relay.get("byteCount") or 0,
        "relay_packets": relay.get("packetCount") or 0,
        "relay_rtx_bytes": relay.get("retransmittedBytes") or 0,
        "relay_rtx_packets": relay.get("retransmittedPackets") or 0,
        "nackSuppressed": relay.get("nackSuppressed") or 0,
        "nack_misses": relay.get("nackMisses") or 0,
        "retransmissionShare": relay.get("retransmissionShare"),
        "estimate": transport.get("availableOutgoingBitrate"),
        "probe_clusters": (transport.get("probes") or {}).get("clustersSent", 0),
        "transport_bytes": transport.get("bytesSent") or 0,
    }


def per_second_table(samples: list[dict]) -> list[str]:
    lines = ["t  | publisher r0/r1/r2 width | watcher: relay layer>target, Chrome width, "
             "+frames, estimate kbps, kbps sent, rtx share"]
    for prev, s in zip(samples, samples[1:], strict=False):
        widths = publisher_widths(s)
        cells = []
        for n in (1, 2):
            a, b = watcher(prev, n), watcher(s, n)
            seconds = (b["t"] - a["t"]) or 1
            est = f"{b['estimate'] / 1000:.0f}" if b["estimate"] else "-"
            share = b["retransmissionShare"]
            cells.append(f"{b['layer']}>{b['target']} {b['width']:>4} "
                         f"+{b['framesDecoded'] - a['framesDecoded']:<3} {est:>5} "
                         f"{(b['transport_bytes'] - a['transport_bytes']) * 8 / 1000 / seconds:>6.0f} "
                         f"{'-' if share is None else f'{share:.2f}'}")
        phase = "L" if LIMIT_AT < s["t"] <= LIFT_AT else " "
        lines.append(f"{s['t']:5.1f}{phase} {widths.get('r0', 0):>4}/{widths.get('r1', 0):>4}/"
                     f"{widths.get('r2', 0):>4} | w1 {cells[0]} | w2 {cells[1]}")
    return lines


# -- the promises ---------------------------------------------------------------------------

def first_time(samples: list[dict], since: float, until: float, ok) -> float | None:
    """The first t in [since, until] at which ok(sample) holds (None if never)."""
    return next((s["t"] for s in samples if since <= s["t"] <= until and ok(s)), None)


def settled_time(samples: list[dict], since: float, ok) -> float | None:
    """The first t from `since` from which ok(sample) holds in every later sample (None if
    it does not hold at the end)."""
    settled = None
    for s in samples:
        if s["t"] >= since:
            settled = (settled if settled is not None else s["t"]) if ok(s) else None
    return settled


def measure(samples: list[dict], counters: list[dict]) -> dict[str, Any]:
    def decodes(s: dict, rid: str) -> bool:
        return watcher(s, 1)["width"] == publisher_widths(s).get(rid)

    def decoding(since: float, rid: str) -> float | None:
        """The first second from `since` in which Chrome decoded new frames of rid's width."""
        return next((b["t"] for a, b in zip(samples, samples[1:], strict=False)
                     if b["t"] >= since and decodes(b, rid)
                     and watcher(b, 1)["framesDecoded"] > watcher(a, 1)["framesDecoded"]), None)

    def after(t: float | None, since: float) -> float | None:
        return None if t is None else round(t - since, 1)

    down = first_time(samples, LIMIT_AT, LIFT_AT, lambda s: watcher(s, 1)["layer"] == LOWEST)
    down_decoded = decoding(LIMIT_AT, "r0")
    # Back means back for good: relay may try the top layer once and step down again.
    flowing = {id(s): top_flowing(samples, i) for i, s in enumerate(samples)}
    back = settled_time(samples, LIFT_AT, lambda s: watcher(s, 1)["layer"] == TOP
                        or not flowing[id(s)])
    back_decoded = decoding(back, "r2") if back is not None else None
    limited = [s for s in samples if LIMIT_AT <= s["t"] <= LIFT_AT]
    # Once stepped down, while still limited: seconds on another layer (by relay or by what
    # Chrome decodes), and seconds in which Chrome decoded no frame.
    held = [(a, b) for a, b in zip(samples, samples[1:], strict=False)
            if down is not None and down < b["t"] <= LIFT_AT]
    # relay's layer from the step down on; Chrome's width from its first r0 frame on
    off_lowest = [round(b["t"]) for a, b in held
                  if watcher(b, 1)["layer"] != LOWEST
                  or (down_decoded is not None and b["t"] >= down_decoded
                      and not decodes(b, "r0"))]
    on_top = [round(b["t"]) for a, b in held if watcher(b, 1)["layer"] == TOP]
    frozen = [round(b["t"]) for a, b in held
              if watcher(b, 1)["framesDecoded"] == watcher(a, 1)["framesDecoded"]]
    a, b = watcher(limited[0], 1), watcher(limited[-1], 1)
    rtx_share = (b["relay_rtx_bytes"] - a["relay_rtx_bytes"]) / max(
        1, b["relay_bytes"] - a["relay_bytes"])
    chrome_rtx = None
    if b["retransmittedBytesReceived"] is not None:  # absent until the first one came
        chrome_rtx = (b["retransmittedBytesReceived"] - (a["retransmittedBytesReceived"] or 0)
                      ) / max(1, b["bytesReceived"] - a["bytesReceived"])
    last = counters[-1]["tbf"] if counters else None
    return {
        "step_down_s": after(down, LIMIT_AT),
        "step_down_decoded_s": after(down_decoded, LIMIT_AT),
        "come_back_s": after(back, LIFT_AT),
        "come_back_decoded_s": after(back_decoded, LIFT_AT),
        "limited_seconds_off_lowest": off_lowest,
        "limited_seconds_on_top": on_top,
        "limited_seconds_held": len(held),
        "limited_seconds_frozen": frozen,
        "longest_gap_s": longest_gap(samples, 1),
        "relay_retransmission_share": round(rtx_share, 3),
        "chrome_retransmitted_share": None if chrome_rtx is None else round(chrome_rtx, 3),
        "nack_suppressed": b["nackSuppressed"] - a["nackSuppressed"],
        # NACKed packets relay could not resend (not in its history), from the limit on
        "nack_misses": watcher(samples[-1], 1)["nack_misses"] - a["nack_misses"],
        "tc_delivered": last and last["packets"], "tc_drops": last and last["drops"],
        "probe_clusters_limited": watcher(limited[-1], 1)["probe_clusters"]
        - watcher(limited[0], 1)["probe_clusters"],
        "estimate_limited_kbps": [None if watcher(s, 1)["estimate"] is None
                                  else round(watcher(s, 1)["estimate"] / 1000) for s in limited],
    }


def longest_gap(samples: list[dict], n: int) -> float:
    """The longest time from DECODING_AFTER on between two samples with the same
    framesDecoded of watcher n (0: a new frame every second)."""
    longest, since = 0.0, None
    for a, b in zip(samples, samples[1:], strict=False):
        if b["t"] < DECODING_AFTER:
            continue
        if watcher(b, n)["framesDecoded"] == watcher(a, n)["framesDecoded"]:
            since = a["t"] if since is None else since
            longest = max(longest, b["t"] - since)
        else:
            since = None
    return round(longest, 1)


def failures(samples: list[dict], figures: dict[str, Any]) -> list[str]:
    found = page_problems(samples)
    if figures["step_down_s"] is None or figures["step_down_s"] > STEP_DOWN_WITHIN:
        found.append(f"watcher 1 not on layer {LOWEST} within {STEP_DOWN_WITHIN} s of the "
                     f"limit ({figures['step_down_s']} s)")
    if figures["step_down_decoded_s"] is None \
            or figures["step_down_decoded_s"] > STEP_DOWN_WITHIN + 2:
        found.append(f"watcher 1 does not decode the r0 width within {STEP_DOWN_WITHIN + 2} s "
                     f"of the limit ({figures['step_down_decoded_s']} s)")
    if figures["limited_seconds_on_top"]:
        found.append(f"watcher 1 went back to layer {TOP} while limited, at "
                     f"{figures['limited_seconds_on_top']} s")
    if len(figures["limited_seconds_off_lowest"]) > MAX_OFF_LOWEST * figures["limited_seconds_held"]:
        found.append(f"watcher 1 left layer {LOWEST} while limited, at "
                     f"{figures['limited_seconds_off_lowest']} s; no frame decoded at "
                     f"{figures['limited_seconds_frozen']} s")
    if figures["come_back_s"] is None or figures["come_back_s"] > COME_BACK_WITHIN:
        found.append(f"watcher 1 not back on layer {TOP} within {COME_BACK_WITHIN} s of the "
                     f"lift ({figures['come_back_s']} s)")
    if figures["come_back_decoded_s"] is None \
            or figures["come_back_decoded_s"] > COME_BACK_WITHIN + 2:
        found.append(f"watcher 1 does not decode the r2 width within {COME_BACK_WITHIN + 2} s "
                     f"of the lift ({figures['come_back_decoded_s']} s)")
    for n in (1, 2):
        if longest_gap(samples, n) >= WINDOW:
            found.append(f"watcher {n} decoded no frame for {longest_gap(samples, n)} s "
                         f"(from {DECODING_AFTER} s on)")
    # Watcher 2: relay's target (what the bandwidth allows it) is the top layer in every
    # sample, and it is on it (and Chrome decodes r2's width) whenever the publisher sends r2.
    low_target = [(s["t"], watcher(s, 2)["target"]) for s in samples
                  if s["t"] >= LIMIT_AT and watcher(s, 2)["target"] != TOP]
    if low_target:
        found.append(f"watcher 2's target left layer {TOP} in {len(low_target)} samples from "
                     f"{LIMIT_AT} s on (t, target): {low_target[:5]}")
    off_top = [(s["t"], watcher(s, 2)["layer"], watcher(s, 2)["width"])
               for i, s in enumerate(samples)
               if s["t"] >= LIMIT_AT and watcher(s, 2)["layer"] != TOP and top_flowing(samples, i)]
    if off_top:
        found.append(f"watcher 2 left layer {TOP} while r2 flowed in {len(off_top)} samples from "
                     f"{LIMIT_AT} s on (t, layer, width): {off_top[:5]}")
    wrong_width = [(s["t"], watcher(s, 2)["width"], publisher_widths(s).get("r2"))
                   for i, s in enumerate(samples)
                   if s["t"] >= LIMIT_AT + 2 and top_flowing(samples, i)
                   and watcher(s, 2)["width"] not in (publisher_widths(s).get("r2"), 0)]
    if len(wrong_width) > 0.1 * (SECONDS - LIMIT_AT):
        found.append(f"watcher 2 decodes other than the r2 width in {len(wrong_width)} samples "
                     f"(t, decoded, r2): {wrong_width[:5]}")
    stalled = [round(s["t"]) for i, s in enumerate(samples)
               if s["t"] >= LIMIT_AT and not top_flowing(samples, i)]
    if len(stalled) > 0.25 * (SECONDS - LIMIT_AT):
        found.append(f"the publisher encoded no r2 frame in some second around {stalled}: "
                     "the machine is too busy for this test")
    if figures["relay_retransmission_share"] > MAX_RETRANSMISSION_SHARE:
        found.append(f"relay's resends to watcher 1 while limited: "
                     f"{figures['relay_retransmission_share']:.0%} of its bytes")
    if (figures["chrome_retransmitted_share"] or 0) > MAX_RETRANSMISSION_SHARE:
        found.append(f"Chrome's retransmitted bytes while limited: "
                     f"{figures['chrome_retransmitted_share']:.0%} of those received")
    if figures["tc_delivered"] is None:
        found.append("no bottleneck counters")
    elif figures["tc_drops"] > MAX_DROPS_PER_DELIVERED * figures["tc_delivered"]:
        found.append(f"the bottleneck dropped {figures['tc_drops']} packets beside "
                     f"{figures['tc_delivered']} delivered")
    return found


class LineReader:
    """The driver's stdout, line by line, with a time-out."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def get(self, timeout: float) -> str:
        return self.lines.get(timeout=timeout)


@pytest.mark.timeout(150)
def test_a_limited_subscriber_steps_down_and_comes_back():
    missing = missing_browser_setup()
    assert not missing, f"run `bash scripts/dev.sh setup` first; missing: {missing}"
    assert os.geteuid() == 0, "tc needs root"
    began = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    counters: list[dict] = []
    ports = None
    with room_server(48000, 48999, ARTIFACTS / "room-downlink-server.log") as url, \
            tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile, \
            loopback_root_qdisc():
        raw = Path(profile) / "samples.json"
        stderr = (ARTIFACTS / "room-downlink-driver.log").open("w")
        driver = subprocess.Popen(["node", str(DRIVER), url, str(SECONDS), str(raw),
                                   str(Path(profile) / "chromium")],
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            out = LineReader(driver.stdout)
            ready = json.loads(out.get(timeout=60))
            t0 = time.monotonic()
            ports = ready.get("ports")
            assert ports and ports[0]["protocol"] == "udp", f"driver: {ready}"
            time.sleep(max(0.0, t0 + LIMIT_AT - time.monotonic()))
            limit_downlink(ports[0]["port"])
            counters.append({"t": time.monotonic() - t0, "tbf": bottleneck_counters()})
            while time.monotonic() < t0 + LIFT_AT:
                time.sleep(min(1.0, max(0.0, t0 + LIFT_AT - time.monotonic())))
                counters.append({"t": time.monotonic() - t0, "tbf": bottleneck_counters()})
            lift_limit()
            driver.wait(timeout=SECONDS - LIFT_AT + 30)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            stderr.close()
        result = json.loads(raw.read_text()) if raw.exists() else {"samples": []}
    samples = result["samples"]
    complete = len(samples) == SECONDS + 1
    lines = per_second_table(samples) if samples else []
    figures = measure(samples, counters) if complete else {}
    (ARTIFACTS / "room-downlink.json").write_text(json.dumps({
        "peers": result.get("peers"), "ports": ports, "driverError": result.get("error"),
        "figures": figures, "tc": counters, "table": lines, "samples": samples}, indent=1))
    print("\n".join(lines))
    print(f"figures: {figures}")
    print(f"tc: {counters[-1] if counters else None}")
    print(f"room-downlink: {time.monotonic() - began:.0f} s in all")
    assert driver.returncode == 0 and "error" not in result and complete, (
        f"driver: rc {driver.returncode}, {result.get('error')}, {len(samples)} samples")
    found = failures(samples, figures)
    assert not found, "\n".join(found)  # the table is in the captured output
