"""``python -m benchmarks --plot FILE.png``: the run's table as a chart (needs matplotlib).

One group of bars per case: each implementation's time (and, with valgrind, its
instructions) per operation divided by bare Django's, measured in the same run, so
compiled, pure and upstream django-prometheus 2.5.0 are compared on one scale
(1.0 = no overhead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"compiled": "#1b9e77", "pure": "#7570b3", "upstream": "#d95f02"}


def plot(cases: list[str], results: dict[tuple[str, str], Any], path: Path, title: str = "") -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from exc

    impls = [i for i in COLOURS if any(results[c, i].ns is not None for c in cases)]
    metrics = [("ns", "time per operation / bare Django (median)")]
    if any(results[c, i].instr is not None for c in cases for i in impls):
        metrics.append(("instr", "instructions per operation / bare Django (callgrind)"))

    fig, axes = plt.subplots(
        1, len(metrics), figsize=(6.5 * len(metrics), 0.2 * len(cases) * len(impls) + 1.6)
    )
    axes = [axes] if len(metrics) == 1 else list(axes)
    height = 0.8 / max(1, len(impls))
    for ax, (attr, label) in zip(axes, metrics, strict=True):
        for k, impl in enumerate(impls):
            ys, widths = [], []
            for j, case in enumerate(cases):
                value, bare = getattr(results[case, impl], attr), getattr(results[case, "bare"], attr)
                if value is None or not bare:
                    continue
                ys.append(j + (k - (len(impls) - 1) / 2) * height)
                widths.append(value / bare)
            bars = ax.barh(ys, widths, height=height, color=COLOURS[impl], label=impl)
            ax.bar_label(bars, labels=[f"{w:.2f}×" for w in widths], padding=2, fontsize=7)
        ax.set_yticks(range(len(cases)), cases, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.axvline(1, color="black", linewidth=0.8)  # bare Django
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", fontsize=8, ncols=len(impls))
    fig.suptitle(
        title or "django-prometheus vs bare Django, same run (1.0 = no overhead; lower is better)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the legend below
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
