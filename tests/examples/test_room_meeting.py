"""A browser meeting that stays up (issue 11): three headless Chromium pages of the room
demo (examples/room, fake camera as three simulcast layers 320/640/1280 wide + fake
microphone), each publishing and subscribing to the other two through relay, for 60 s from
the moment all have joined (one first, the other two 3 s later at once). Every page is sampled once a second (room_meeting_driver.mjs: Chrome's getStats
and relay's producer/consumer stats); then, from the samples:

- every publisher's bandwidth estimate (the selected candidate pair's
  availableOutgoingBitrate) is above the issue's 1.5 Mbps in every sample from 20 s on;
- (strict only) every publisher sends its 1280x720 layer (frames and bytes grow) in every
  5-s window from 20 s on; smaller only while Chrome says it is short of CPU (its own
  adaptation scales the input down: the machine's doing, not relay's), and even then the
  top layer is sent;
- every video subscription (3 pages x 2 others) decodes frames and every audio subscription
  receives packets in every 5-s window from 10 s on;
- Chrome limits no publisher for bandwidth (qualityLimitationReason "bandwidth") in more
  than 30 % of the samples from 10 s on ("none" on an idle machine, "cpu" on
  a busy one).

A relay that advertises feedback it never sends (transport-cc) fails all of these: Chrome's
estimate falls to ~85 kbps, the upper layers stop and the subscriptions freeze. The
per-second samples and a per-window table go to artifacts/room-meeting.json (the table is
printed too), a screenshot of one page to artifacts/room-meeting.png. Needs what
`bash scripts/dev.sh setup` installs (as test_room_demo.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from room_server import ARTIFACTS, missing_browser_setup, page_problems, room_server

DRIVER = Path(__file__).with_name("room_meeting_driver.mjs")
SECONDS = 60
WINDOW = 5  # s
SUBSCRIBED_AFTER = 10  # s: joining, ICE/DTLS and the first key frames come before
ESTIMATE_AFTER = 20  # s: Chrome's estimate ramps up from its 1 Mbps start bitrate
# The issue's targets: an estimate above 1.5 Mbps (the three layers' maxBitrates add up to
# 1.85 Mbps) and at most 30 % of samples bandwidth-limited hold in CI (2026-12-02, two
# fresh-clone runs: every publisher 2.0-4.4 Mbps from 15 s on). The 720p layer in every
# window stays behind RELAY_MEETING_STRICT=1: three Chromium encoders on 2 cores run short
# of CPU (qualityLimitationReason "cpu") and scale their input down, which relay cannot change.
STRICT = os.environ.get("RELAY_MEETING_STRICT") == "1"
MIN_ESTIMATE = 1_500_000  # bps
TOP_LAYER = "1280x720"
TOP_LAYER_RID = "r2"  # mediasoup-client names the encodings r0..r2, lowest first
MAX_BANDWIDTH_LIMITED_SHARE = 0.3  # of the samples from SUBSCRIBED_AFTER on


# -- reading the samples ----------------------------------------------------------------------

def senders(sample: dict) -> dict[str, dict]:
    """Chrome's side of every publisher, by peer id."""
    return {page["peer"]: page["sender"] or {"availableOutgoingBitrate": None, "outbound": []}
            for page in sample["pages"]}


def video_layers(sender: dict) -> dict[str, dict]:
    """A publisher's outbound-rtp video streams by rid (r0 320, r1 640, r2 1280 wide)."""
    return {o["rid"]: o for o in sender["outbound"] if o["kind"] == "video"}


def relay_received(sample: dict) -> dict[str, dict[str, int]]:
    """Packets relay received per simulcast layer (rid) of every publisher's camera."""
    return {page["peer"]: {s["rid"]: s["packetsReceived"] for p in page["relay"]["published"]
                           if p["kind"] == "video" for s in p["stats"]}
            for page in sample["pages"]}


def subscriptions(sample: dict) -> dict[str, dict]:
    """Every subscription by name, Chrome's inbound-rtp figures joined with relay's consumer
    (as relay_*): 'peer2>peer1 video' is peer1 receiving peer2's camera."""
    found = {}
    for page in sample["pages"]:
        relay = {(c["peerId"], c["kind"]): c for c in page["relay"]["consumers"]}
        for sub in page["receiver"]:
            consumer = relay.get((sub["peerId"], sub["kind"]), {})
            found[f"{sub['peerId']}>{page['peer']} {sub['kind']}"] = sub | {
                "relay_packets": consumer.get("packetCount") or 0,
                "relay_layer": (consumer.get("currentLayers") or {}).get("spatialLayer"),
                "relay_waiting": consumer.get("waitingForKeyFrame")}
    return found


def limitation(sender: dict) -> str:
    """Chrome's qualityLimitationReason for a publisher's camera: the worst of its layers."""
    reasons = {o["qualityLimitationReason"] for o in video_layers(sender).values()}
    for reason in ("bandwidth", "cpu", "other"):
        if reason in reasons:
            return reason
    return "none" if reasons == {"none"} else "-"


def window_summary(samples: list[dict], start: int) -> dict[str, Any]:
    """What happened between the samples at `start` and `start + WINDOW` seconds."""
    first, last = samples[start], samples[start + WINDOW]
    span = samples[start:start + WINDOW + 1]
    seconds = last["t"] - first["t"]
    row: dict[str, Any] = {"window": f"{start}-{start + WINDOW} s", "start": start,
                           "t": [first["t"], last["t"]], "publishers": {}, "subscriptions": {}}
    received_before, received = relay_received(first), relay_received(last)
    for peer, sender in sorted(senders(last).items()):
        before = video_layers(senders(first)[peer])
        estimates = [e for e in (senders(s)[peer]["availableOutgoingBitrate"] for s in span)
                     if e is not None]
        reasons = [limitation(senders(s)[peer]) for s in span[1:]]
        layers = {}
        for rid, o in sorted(video_layers(sender).items()):
            was = before.get(rid, {})
            layers[rid] = {
                "size": f"{o['frameWidth']}x{o['frameHeight']}",
                "frames": o["framesEncoded"] - was.get("framesEncoded", 0),
                "kbps": round((o["bytesSent"] - was.get("bytesSent", 0)) * 8 / 1000 / seconds, 1),
                "relay_packets": received.get(peer, {}).get(rid, 0)
                - received_before.get(peer, {}).get(rid, 0)}
        row["publishers"][peer] = {
            "estimate_kbps": [round(min(estimates) / 1000, 1), round(max(estimates) / 1000, 1)]
            if estimates else None,
            "layers": layers,
            "limitation": {r: reasons.count(r) for r in sorted(set(reasons))},
            "limitation_at_end": reasons[-1],
        }
    subs_before = subscriptions(first)
    for name, sub in sorted(subscriptions(last).items()):
        was = subs_before.get(name, {})
        entry = {"packets": sub["packetsReceived"] - was.get("packetsReceived", 0),
                 "relay_packets": sub["relay_packets"] - was.get("relay_packets", 0)}
        if sub["kind"] == "video":
            entry |= {"frames": sub["framesDecoded"] - was.get("framesDecoded", 0),
                      "framesDecoded": [was.get("framesDecoded", 0), sub["framesDecoded"]],
                      "size": f"{sub['frameWidth']}x{sub['frameHeight']}",
                      "relay_layer": sub["relay_layer"], "relay_waiting": sub["relay_waiting"]}
        row["subscriptions"][name] = entry
    return row


def table(windows: list[dict]) -> list[str]:
    """The windows as text: per publisher 'estimate min-max kbps, the widest layer that
    encoded frames (+frames), samples by limitation (n none, c cpu, b bandwidth)'; per
    subscription '+frames@width' (video) or '+packets' (audio)."""
    peers = sorted(windows[0]["publishers"])
    subs = sorted({name for w in windows for name in w["subscriptions"]},
                  key=lambda n: (n.endswith("audio"), n))
    lines = ["publishers: estimate kbps min-max | widest layer encoded (+frames) | "
             "qualityLimitationReason per sample (n none, c cpu, b bandwidth)",
             "window   " + "".join(f"{p:<36}" for p in peers)]
    for w in windows:
        cells = []
        for p in peers:
            pub = w["publishers"][p]
            est = pub["estimate_kbps"]
            sending = [o for o in pub["layers"].values() if o["frames"] > 0]
            top = max(sending, key=lambda o: int(o["size"].split("x")[0]), default=None)
            layer = f"{top['size']} +{top['frames']}" if top else "none"
            est_text = f"{est[0]:.0f}-{est[1]:.0f}" if est else "-"
            reasons = "".join(f"{n}{r[0]}" for r, n in pub["limitation"].items())
            cells.append(f"{est_text:>11} {layer:<16} {reasons:<7}")
        lines.append(f"{w['window']:<9}" + "".join(cells))
    lines.append("subscriptions (publisher>subscriber): video +framesDecoded@frameWidth, "
                 "audio +packets")
    lines.append("window   " + "".join(f"{n.replace(' video', 'V').replace(' audio', 'A'):<14}"
                                       for n in subs))
    for w in windows:
        cells = []
        for n in subs:
            s = w["subscriptions"].get(n)
            if s is None:
                cells.append("absent")
            elif "frames" in s:
                cells.append(f"+{s['frames']}@{s['size'].split('x')[0]}")
            else:
                cells.append(f"+{s['packets']}")
        lines.append(f"{w['window']:<9}" + "".join(f"{c:<14}" for c in cells))
    return lines


# -- the promises -------------------------------------------------------------------------------

def failures(samples: list[dict], windows: list[dict]) -> list[str]:
    """Every broken promise, each naming the stream, the window or second, and the value."""
    found: list[str] = page_problems(samples)
    peers = sorted(senders(samples[0]))
    expected = {f"{a}>{b} {kind}" for a in peers for b in peers if a != b
                for kind in ("audio", "video")}
    for s in samples[SUBSCRIBED_AFTER:]:
        missing = expected - set(subscriptions(s))
        if missing:
            found.append(f"at {s['t']:.0f} s the subscriptions {sorted(missing)} do not exist")
            break

    for peer in peers:
        low = [(s["t"], senders(s)[peer]["availableOutgoingBitrate"])
               for s in samples[ESTIMATE_AFTER:]]
        low = [(t, e or 0) for t, e in low if e is None or e <= MIN_ESTIMATE]
        if low:
            worst = min(low, key=lambda x: x[1])
            found.append(
                f"publisher {peer}: availableOutgoingBitrate {low[0][1] / 1000:.1f} kbps at "
                f"{low[0][0]:.0f} s; at or under {MIN_ESTIMATE // 1000} kbps in {len(low)} of "
                f"{len(samples) - ESTIMATE_AFTER} samples from {ESTIMATE_AFTER} s on (lowest "
                f"{worst[1] / 1000:.1f} kbps at {worst[0]:.0f} s)")

    for peer in peers if STRICT else ():
        missed = []
        for w in windows:
            pub = w["publishers"][peer]
            layers = pub["layers"].values()
            sent = [o for o in layers if o["frames"] > 0 and o["kbps"] > 0]
            # Short of CPU, Chrome scales its input down: the top layer is smaller, no fault
            # of relay's, but it is still sent.
            top = TOP_LAYER_RID in pub["layers"] and pub["layers"][TOP_LAYER_RID] in sent
            if w["start"] >= ESTIMATE_AFTER and not any(o["size"] == TOP_LAYER for o in sent) \
                    and not (top and pub["limitation_at_end"] == "cpu"):
                missed.append(w)
        if missed:
            detail = "; ".join(
                f"{w['window']} (limitation {w['publishers'][peer]['limitation']}: " + ", ".join(
                    f"{rid} {o['size']} +{o['frames']} frames {o['kbps']} kbps, relay got "
                    f"+{o['relay_packets']} packets"
                    for rid, o in w["publishers"][peer]["layers"].items()) + ")"
                for w in missed[:2])
            found.append(f"publisher {peer}: its {TOP_LAYER} layer not sent in {len(missed)} "
                         f"windows from {ESTIMATE_AFTER} s on: {detail}"
                         + ("; ..." if len(missed) > 2 else ""))

    stalled: dict[str, list[str]] = {}
    for w in windows:
        if w["start"] < SUBSCRIBED_AFTER:
            continue
        for name, sub in w["subscriptions"].items():
            if "frames" in sub and sub["frames"] <= 0:
                stalled.setdefault(f"{name}: framesDecoded", []).append(
                    f"{w['window']} ({sub['framesDecoded'][0]} -> {sub['framesDecoded'][1]}, "
                    f"last frame {sub['size']}; Chrome received +{sub['packets']} packets, "
                    f"relay sent +{sub['relay_packets']} on layer {sub['relay_layer']}, "
                    f"waiting for a key frame: {sub['relay_waiting']})")
            elif "frames" not in sub and sub["packets"] <= 0:
                stalled.setdefault(f"{name}: packetsReceived", []).append(
                    f"{w['window']} (+{sub['packets']}; relay sent +{sub['relay_packets']})")
    for what, missed in sorted(stalled.items()):
        found.append(f"subscription {what} did not grow in {len(missed)} windows: "
                     + "; ".join(missed if len(missed) <= 2 else [missed[0], "...", missed[-1]]))

    counted = samples[SUBSCRIBED_AFTER + 1:]
    for peer in peers:
        reasons = [limitation(senders(s)[peer]) for s in counted]
        limited = reasons.count("bandwidth") / len(reasons)
        if limited > MAX_BANDWIDTH_LIMITED_SHARE:
            first = SUBSCRIBED_AFTER + 1 + reasons.index("bandwidth")
            found.append(f"publisher {peer}: qualityLimitationReason 'bandwidth' in {limited:.0%}"
                         f" of the samples from {SUBSCRIBED_AFTER} s on (at most "
                         f"{MAX_BANDWIDTH_LIMITED_SHARE:.0%}; first at {first} s; all: "
                         f"{ {r: reasons.count(r) for r in sorted(set(reasons))} })")
    return found


@pytest.mark.timeout(120)
def test_three_browsers_meet_for_a_minute_through_relay():
    missing = missing_browser_setup()
    assert not missing, f"run `bash scripts/dev.sh setup` first; missing: {missing}"
    began = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "room-meeting.png"
    with room_server(47000, 47999, ARTIFACTS / "room-meeting-server.log") as url, \
            tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
        raw = Path(profile) / "samples.json"
        run = subprocess.run(["node", str(DRIVER), url, str(SECONDS), str(raw), str(screenshot),
                              str(Path(profile) / "chromium")],
                             capture_output=True, text=True, timeout=100)
        result = json.loads(raw.read_text()) if raw.exists() else {"samples": []}
    samples = result["samples"]
    complete = len(samples) == SECONDS + 1
    windows = [window_summary(samples, start) for start in range(0, SECONDS, WINDOW)] \
        if complete else []
    lines = table(windows) if windows else []
    (ARTIFACTS / "room-meeting.json").write_text(json.dumps({
        "peers": result.get("peers"), "joinedAfter": result.get("joinedAfter"),
        "driverError": result.get("error"), "table": lines, "windows": windows,
        "samples": samples}, indent=1))
    print("\n".join(lines))
    print(f"room-meeting: {time.monotonic() - began:.0f} s in all")
    assert run.returncode == 0 and "error" not in result and complete, (
        f"driver: rc {run.returncode}, {result.get('error')}, {len(samples)} samples\n"
        + run.stderr[-2000:])
    found = failures(samples, windows)
    assert not found, "\n".join(found)  # the table is in the captured output
    assert screenshot.stat().st_size > 0
