"""A bar chart of the ratios versus the baseline, drawn with matplotlib.

matplotlib is optional: :func:`matplotlib_missing` says why it cannot be
used, and the CLI reports that instead of drawing.  The file format follows
the extension (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tress.bench.model import STDLIB, TRESS
from tress.bench.results import ScenarioResult

FORMATS = (".png", ".svg", ".pdf")


def matplotlib_missing() -> str | None:
    """``None`` if matplotlib can be imported, else a message saying so."""
    if importlib.util.find_spec("matplotlib") is None:
        return (
            "matplotlib is not installed, so no chart can be drawn "
            "(install it with `pip install matplotlib`, or `pip install tress[plot]`)"
        )
    return None


def draw(scenarios: list[ScenarioResult], path: str | Path, title: str) -> None:
    """Draw every case's ratios (tress and peers versus stdlib) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    series: dict[str, list[float]] = {}
    targets: list[float | None] = []
    cases = [(s, c) for s in scenarios for c in s.cases]
    names: list[str] = []
    for scenario in scenarios:
        for impl in scenario.implementations:
            if impl.name != scenario.baseline and impl.name not in names:
                names.append(impl.name)
    for name in names:
        series[name] = []
    for scenario, case in cases:
        labels.append(f"{scenario.name}/{case.case.name}")
        case_target = case.case.target
        targets.append(case_target.ratio if case_target is not None else None)
        for name in names:
            ratio = case.ratio(name)
            series[name].append(ratio if ratio is not None else float("nan"))

    fig_width = max(6.0, 0.75 * len(labels) * max(1, len(names)) + 2)
    fig, ax = plt.subplots(figsize=(fig_width, 5.0))
    width = 0.8 / max(1, len(names))
    positions = range(len(labels))
    colors: dict[str, Any] = {TRESS: "tab:orange"}
    for index, name in enumerate(names):
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        bars = ax.bar(offsets, series[name], width, label=f"{name} / {STDLIB}",
                      color=colors.get(name))
        ax.bar_label(bars, labels=[_label(v) for v in series[name]], fontsize=7)
        for offset, value in zip(offsets, series[name], strict=True):
            if value != value:  # NaN: skipped or failed
                ax.text(offset, 1.0, f"{name}: n/a", ha="center", va="bottom",
                        rotation=90, fontsize=7, color="grey")
    for position, target in zip(positions, targets, strict=True):
        if target is not None:
            ax.hlines(target, position - 0.45, position + 0.45, colors="tab:red",
                      linestyles="dashed", linewidth=1)
    if any(t is not None for t in targets):
        ax.plot([], [], color="tab:red", linestyle="dashed", label="target")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"throughput ratio versus {STDLIB} (log scale)")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def _label(value: float) -> str:
    if value != value:  # NaN: not measured
        return ""
    return f"{value:.2g}x" if value < 10 else f"{value:.0f}x"
