"""--plot: per-consumer delivery and worker CPU against input rate, one line per mode; with
--soak, the worker's RSS and free send-ring slots over time instead."""

from __future__ import annotations


def write_plot(path: str, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if any(entry.get("soak") for entry in result["modes"].values()):
        _plot_soak(plt, path, result)
        return

    fig, (ax_delivery, ax_cpu) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    series = dict(result["modes"])
    if result.get("selfTest"):
        series["reflector (self-test)"] = result["selfTest"]
    for name, entry in series.items():
        steps = sorted((s for s in entry["steps"] if not s["interrupted"]),
                       key=lambda s: s["rate"])
        if not steps:
            continue
        rates = [s["rate"] for s in steps]
        ax_delivery.plot(rates, [100 * s["perConsumerMinRatio"] for s in steps], "o-",
                         label=name)
        cpu = [s["workerCpuPercent"] for s in steps]
        if any(c is not None for c in cpu):
            ax_cpu.plot(rates, [c if c is not None else float("nan") for c in cpu], "o-",
                        label=name)
    threshold = 100 * result["config"]["threshold"]
    ax_delivery.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax_delivery.set_ylabel("delivery, worst consumer (%)")
    ax_delivery.set_title(result["scenario"]["description"])
    ax_delivery.legend()
    ax_delivery.grid(True, alpha=0.3)
    ax_cpu.set_ylabel("worker CPU (% of one core)")
    ax_cpu.set_xlabel("input rate (packets/s)")
    ax_cpu.grid(True, alpha=0.3)
    ax_cpu.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_soak(plt, path: str, result: dict) -> None:
    fig, (ax_rss, ax_slots) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for name, entry in result["modes"].items():
        soak = entry.get("soak")
        if not soak:
            continue
        samples = [s for s in soak["samples"] if s["rssBytes"] is not None]
        times = [s["t"] for s in samples]
        ax_rss.plot(times, [s["rssBytes"] / 1e6 for s in samples], "o-", markersize=3,
                    label=name)
        ax_slots.plot(times, [s["slotsFree"] for s in samples], "o-", markersize=3,
                      label=f"{name} free")
        start, end = soak["trafficSeconds"]
        for ax in (ax_rss, ax_slots):
            ax.axvspan(start, end, color="grey", alpha=0.08)
        total = soak["freeSlots"]["total"]
        if total:
            ax_slots.axhline(total, color="grey", linestyle="--", linewidth=1,
                             label=f"{name} total")
            ax_slots.set_ylim(0, total * 1.05)  # slots held are seen against the whole ring
        baseline = soak["rss"].get("baselineBytes")
        if baseline:
            ax_rss.axhline(baseline / 1e6, color="grey", linestyle=":", linewidth=1)
    ax_rss.set_ylabel("worker RSS (MB)")
    ax_rss.set_title(f"soak at {result['config']['rate']:,.0f} pkt/s: "
                     f"{result['scenario']['description']} (shaded: traffic)")
    ax_rss.grid(True, alpha=0.3)
    ax_rss.legend()
    ax_slots.set_ylabel("free send-ring slots")
    ax_slots.set_xlabel("time (s)")
    ax_slots.grid(True, alpha=0.3)
    ax_slots.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
