"""The suite's figures as a picture (matplotlib, PNG): enrollments/s and
p50/p90/p99 latency per scenario, side by side."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScenarioFigures:
    name: str
    rate: float  # enrollments/s
    p50: float | None  # ms
    p90: float | None
    p99: float | None


def write_png(path: Path, rows: list[ScenarioFigures], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    names = [r.name for r in rows]
    positions = range(len(rows))
    fig, (rate_ax, lat_ax) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    bars = rate_ax.bar(positions, [r.rate for r in rows], color="tab:blue")
    rate_ax.bar_label(bars, fmt="%.0f")
    rate_ax.set_title("throughput")
    rate_ax.set_ylabel("enrollments/s")
    width = 0.27
    for i, (field, color) in enumerate((("p50", "tab:green"), ("p90", "tab:orange"), ("p99", "tab:red"))):
        values = [getattr(r, field) or 0.0 for r in rows]
        lat_ax.bar([p + (i - 1) * width for p in positions], values, width, label=field, color=color)
    lat_ax.set_title("latency")
    lat_ax.set_ylabel("ms")
    lat_ax.legend()
    for ax in (rate_ax, lat_ax):
        ax.set_xticks(list(positions), names, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
