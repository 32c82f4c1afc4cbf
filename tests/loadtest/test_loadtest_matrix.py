"""relay-loadtest's matrix (--scenarios x --srtp-suites in one run), before/after against
another checkout (--compare-tree), latency at half the best rate and RSS per consumer: the
CLI end to end at tiny rates, and the options' checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_loadtest_cli import REPO_ROOT, run_cli

from relay.loadtest.config import ConfigError, from_args, matrix_cells


def _checkout_copy(tmp_path: Path) -> Path:
    """Another checkout: this one's packages, compiled modules included."""
    tree = tmp_path / "before"
    for package in ("relay", "worker_proto"):
        shutil.copytree(REPO_ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_matrix_before_and_after_with_latency_and_rss_in_one_run(tmp_path):
    tree = _checkout_copy(tmp_path)
    proc, data = run_cli(
        tmp_path, "--scenarios", "audio2,video2x2", "--srtp-suites", "plain,AEAD_AES_128_GCM",
        "--send-mode", "copy", "--transport-cc", "on", "--search", "--start-rate", "200",
        "--max-rate", "200", "--max-steps", "1", "--step-duration", "0.4",
        "--half-rate-latency", "--half-rate-duration", "0.6", "--rss-per-consumer", "8",
        "--compare-tree", str(tree),
        # what is tested is the plumbing, not the rate: a loaded CI machine still passes
        "--threshold", "0.5", "--late-after-ms", "2000", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert data["errors"] == [] and not data["interrupted"]
    cells = [(c["scenario"], c["srtp"]) for c in data["cells"]]
    assert cells == [("audio2", "plain"), ("audio2", "AEAD_AES_128_GCM"),
                     ("video2x2", "plain"), ("video2x2", "AEAD_AES_128_GCM")]
    for cell in data["cells"]:
        result = cell["result"]
        assert result["scenario"]["srtp"] == (None if cell["srtp"] == "plain" else cell["srtp"])
        assert list(result["modes"]) == ["copy before", "copy after"]  # the baseline first
        labels = [s["mode"] for s in result["modes"]["copy before"]["steps"]]
        assert set(labels) == {"copy before"}
        for label, entry in result["modes"].items():
            # each worker ran from its own checkout: the ring module it mapped says which
            ring = entry["tree"]["ringModule"]
            assert ring.startswith(str(tree if label == "copy before" else REPO_ROOT) + "/")
            assert entry["search"]["bestRate"] == 200  # tiny rates: every step passes
            half = entry["halfRate"]
            assert half["rate"] == 100 and half["passed"]
            # its own duration, not the search step's, and the generator's late rounds
            assert 0.6 <= half["duration"] < 1.0 and half["step"]["duration"] == half["duration"]
            assert half["generatorLateRounds"] == half["step"]["generatorLateRounds"] >= 0
            lat = half["latencyUs"]
            assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
            assert half["step"]["packetsOut"] > 0
            tcc = entry["transportCc"]
            assert tcc["producersNegotiated"] == tcc["producers"] > 0
            # video consumers are numbered (send history); the router offers audio
            # consumers no transport-wide sequence number, as mediasoup's does not
            numbered = tcc["consumers"] if cell["scenario"].startswith("video") else 0
            assert tcc["consumersNumbered"] == numbered
    rows = data["rows"]
    assert len(rows) == 8 and all(r["bestForwardedPps"] for r in rows)
    rss = data["rssPerConsumer"]
    assert [(r["srtp"], r["label"]) for r in rss] == [
        ("plain", "copy before"), ("plain", "copy after"),
        ("AEAD_AES_128_GCM", "copy before"), ("AEAD_AES_128_GCM", "copy after")]
    for r in rss:
        assert r["consumers"] == 8 and r["packetsDeliveredInLastStep"] > 0
        assert r["rssWithConsumersBytes"] > r["rssWithoutConsumersBytes"]
        assert r["rssPerConsumerBytes"] == round(
            (r["rssWithConsumersBytes"] - r["rssWithoutConsumersBytes"]) / 8)
    out = proc.stdout
    assert "copy after/before" in out and "One-way latency at half" in out
    assert all(r["halfRateGeneratorLateRounds"] is not None for r in rows)
    assert "compared checkout" in out and "workers mapped" in out
    assert "RSS per consumer" in out and "video2x2" in out


def test_the_issue14_preset_and_what_overrides_it():
    cfg = from_args(["--matrix", "issue14"])
    assert (cfg.send_mode, cfg.transport_cc, cfg.search, cfg.half_rate_latency,
            cfg.rss_per_consumer) == ("auto,zerocopy,copy,socket", "on", True, True, 100)
    cells = matrix_cells(cfg)
    assert [(spec, suite) for spec, suite, _ in cells][:3] == [
        ("audio10", "plain"), ("audio10", "AES_CM_128_HMAC_SHA1_80"),
        ("audio10", "AEAD_AES_256_GCM")]
    assert len(cells) == 12
    by_spec = {spec: cell for spec, _, cell in cells}
    # searches start where 20k pkt/s are forwarded
    assert [by_spec[s].start_rate for s in ("audio10", "audio40", "video10x10", "rooms5x4")] \
        == [2000, 500, 2000, 6667]
    assert (by_spec["video10x10"].kind, by_spec["video10x10"].streams) == ("video", 10)
    assert (by_spec["rooms5x4"].rooms, by_spec["rooms5x4"].participants) == (5, 4)
    assert [v.mode for v in cells[0][2].variants] == ["auto", "zerocopy", "copy", "socket"]
    assert all(v.transport_cc for _, _, c in cells for v in c.variants)
    assert [c.srtp for _, _, c in cells[:3]] == [False, True, True]
    cfg = from_args(["--matrix", "issue14", "--send-mode", "copy", "--start-rate", "3000",
                     "--no-half-rate-latency", "--transport-cc", "off"])
    assert (cfg.send_mode, cfg.half_rate_latency, cfg.transport_cc) == ("copy", False, "off")
    assert {c.start_rate for _, _, c in matrix_cells(cfg)} == {3000}


@pytest.mark.parametrize("args, message", [
    (["--scenarios", "audio10,choir7"], "'choir7' is not audioN"),
    (["--srtp-suites", "plain,ROT13"], "'ROT13' is not plain"),
    (["--srtp-suites", "plain,plain"], "listed twice"),
    (["--transport", "webrtc", "--srtp-suites", "plain"], "always SRTP"),
    (["--srtp-suites", "plain", "--soak", "60"], "--soak watches one worker"),
    (["--half-rate-latency"], "needs --search"),
    (["--search", "--half-rate-latency", "--half-rate-duration", "0"],
     "--half-rate-duration must be a positive"),
    (["--rss-per-consumer", "5000"], "--rss-per-consumer must be in"),
    (["--compare-tree", "/nonexistent"], "no relay checkout there"),
    (["--compare-tree", str(REPO_ROOT)], "is this checkout"),
    (["--send-mode", "copy,copy"], "listed twice"),
    (["--scenarios", "audio10", "--plot", "x.png"], "--plot draws one scenario"),
])
def test_bad_matrix_options_are_clear_messages(args, message):
    with pytest.raises(ConfigError, match=message):
        from_args(args)


def test_a_compare_tree_without_its_compiled_ring_says_how_to_build_it(tmp_path):
    (tmp_path / "relay" / "worker").mkdir(parents=True)
    (tmp_path / "relay" / "uring").mkdir()
    (tmp_path / "relay" / "worker" / "__main__.py").write_text("")
    with pytest.raises(ConfigError, match="no compiled _ring"):
        from_args(["--compare-tree", str(tmp_path)])
