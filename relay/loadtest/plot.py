"""--plot: per-consumer delivery and worker CPU against input rate, one line per mode."""

from __future__ import annotations


def write_plot(path: str, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
