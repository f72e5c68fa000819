"""The site's figures, drawn on matplotlib's Agg canvas and saved as PNG files.

Two figures per track: the **privacy–utility plot** (each defense's knob curve, x = utility, y = privacy score,
95% intervals on both; the reference as a star; a dashed line at the utility budget; the selected settings drawn
larger with a dark edge) and the **attack × defense heatmap** (each defense's selected setting against every
attack, coloured by leakage on the attack family's scale, annotated with the value). Every defense keeps one
colour across all figures and pages (:func:`defense_colors`). Figures are built on a
:class:`~matplotlib.figure.Figure` with an Agg canvas, never through pyplot's global state, and with math text
parsing off, so a name full of ``$`` or ``\\`` is drawn as it is.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, hsv_to_rgb, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.scoring.intervals import Estimate

# Okabe and Ito's colour-blind-safe set (without its yellow and black, which vanish on white or read as grey)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#7B3294")
HEATMAP_CMAP = "YlOrRd"
REFERENCE_COLOR = "#4a4a4a"
INK = "#1f2328"
MUTED = "#6e7781"
GRID = "#e6e8eb"
DPI = 144
STYLE = {
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": "#c9ced4",
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "savefig.facecolor": "white",
}


def defense_colors(names: list[str], references: set[str]) -> dict[str, str]:
    """A colour per defense, stable for the whole site: references in dark grey, the others from a palette that
    stays distinguishable for colour-blind readers (evenly spaced hues where there are more defenses than it has)."""
    others = sorted(set(names) - set(references))
    if len(others) <= len(PALETTE):
        palette = list(PALETTE)
    else:  # evenly spaced hues, as many as needed
        palette = [to_hex(hsv_to_rgb((i / len(others), 0.65, 0.78))) for i in range(len(others))]
    colors = {n: palette[i] for i, n in enumerate(others)}
    colors.update({r: REFERENCE_COLOR for r in references if r in names})
    return colors


@dataclasses.dataclass
class Point:
    """One knob setting on the privacy–utility plane."""

    utility: Estimate
    privacy: Estimate
    selected: bool = False


@dataclasses.dataclass
class Curve:
    """One defense's knob settings (in knob order) in one colour; ``reference`` draws it as the reference."""

    label: str
    color: str
    points: list[Point]
    reference: bool = False


def short(label: str, limit: int = 48) -> str:
    """A label cut to ``limit`` characters with an ellipsis (figures only; the tables show names in full)."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _err(e: Estimate) -> tuple[float, float]:
    if not e.has_interval:
        return 0.0, 0.0
    return max(0.0, e.value - e.lo), max(0.0, e.hi - e.value)


def _finite(p: Point) -> bool:
    return not (math.isnan(p.utility.value) or math.isnan(p.privacy.value))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path


def privacy_utility(path: Path, curves: list[Curve], budget_at: list[float], title: str = "",
                    size: tuple[float, float] = (6.2, 4.0)) -> Path:
    """Draw the privacy–utility plot to ``path`` (PNG).

    Args:
        curves: one per defense (and source), points in knob order.
        budget_at: utilities where a dashed vertical line marks the budget (reference utility minus budget).
        title: drawn above the axes when given.
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size)
        ax = fig.add_subplot(1, 1, 1)
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        handles = []
        for c in curves:
            pts = [p for p in c.points if _finite(p)]
            if not pts:
                continue
            xs = np.array([p.utility.value for p in pts])
            ys = np.array([p.privacy.value for p in pts])
            if len(pts) > 1:
                ax.plot(xs, ys, "-", color=c.color, linewidth=1.6, alpha=0.75, zorder=2)
            xerr = np.array([_err(p.utility) for p in pts]).T
            yerr = np.array([_err(p.privacy) for p in pts]).T
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=c.color, elinewidth=1.0, alpha=0.45,
                        capsize=2.5, zorder=1)
            for p, x, y in zip(pts, xs, ys):
                if c.reference:
                    ax.plot(x, y, marker="*", markersize=15, color=c.color, markeredgecolor="white",
                            markeredgewidth=0.8, zorder=4, linestyle="none")
                elif p.selected:
                    ax.plot(x, y, marker="o", markersize=9, color=c.color, markeredgecolor=INK,
                            markeredgewidth=1.6, zorder=4, linestyle="none")
                else:
                    ax.plot(x, y, marker="o", markersize=5.5, color=c.color, markeredgecolor="white",
                            markeredgewidth=0.7, zorder=3, linestyle="none")
            handles.append(Line2D([], [], color=c.color, marker="*" if c.reference else "o", linewidth=1.6,
                                  markersize=9 if c.reference else 5.5,
                                  label=short(c.label) + (" (reference)" if c.reference else "")))
        for i, x in enumerate(sorted(set(budget_at))):
            if math.isnan(x):
                continue
            ax.axvline(x, color=MUTED, linestyle="--", linewidth=1.0, zorder=0)
            if i == 0:
                handles.append(Line2D([], [], color=MUTED, linestyle="--", linewidth=1.0,
                                      label="utility budget"))
        handles.append(Line2D([], [], color="white", marker="o", markersize=9, markeredgecolor=INK,
                              markeredgewidth=1.6, linestyle="none", label="selected setting"))
        ax.set_xlabel("utility: top-1 accuracy on eval (higher is better)")
        ax.set_ylabel("privacy score: leakage (lower is better)")
        if title:
            ax.set_title(title, loc="left")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, handlelength=2.2,
                  borderaxespad=0.0)
        return _save(fig, path)


@dataclasses.dataclass
class CostPoint:
    """One ranked row on the privacy x client-cost plane."""

    label: str
    color: str
    cost: float       # client MACs as a ratio to the reference's
    privacy: Estimate
    pareto: bool = False
    reference: bool = False


def privacy_cost(path: Path, points: list[CostPoint], basis: str, budget: float | None = None,
                 size: tuple[float, float] = (6.2, 4.0)) -> Path:
    """Draw the privacy x client-MACs plot to ``path`` (PNG): every ranked row, the Pareto front joined by a step
    line and outlined, the suite's cost budget (if any) as a dashed vertical line."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size)
        ax = fig.add_subplot(1, 1, 1)
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        pts = [p for p in points if not (math.isnan(p.cost) or math.isnan(p.privacy.value)) and p.cost > 0]
        handles = []
        front = sorted((p for p in pts if p.pareto), key=lambda p: p.cost)
        if len(front) > 1:
            ax.step([p.cost for p in front], [p.privacy.value for p in front], where="post", color=MUTED,
                    linewidth=1.2, zorder=1)
            handles.append(Line2D([], [], color=MUTED, linewidth=1.2, label="Pareto front"))
        for p in pts:
            lo, hi = _err(p.privacy)
            ax.errorbar([p.cost], [p.privacy.value], yerr=[[lo], [hi]], fmt="none", ecolor=p.color,
                        elinewidth=1.0, alpha=0.5, capsize=2.5, zorder=2)
            ax.plot(p.cost, p.privacy.value, marker="*" if p.reference else "o",
                    markersize=15 if p.reference else (9 if p.pareto else 6), color=p.color,
                    markeredgecolor=INK if p.pareto and not p.reference else "white",
                    markeredgewidth=1.6 if p.pareto else 0.7, linestyle="none", zorder=4)
            handles.append(Line2D([], [], color=p.color, marker="*" if p.reference else "o", linestyle="none",
                                  markersize=9, label=short(p.label)))
        if budget is not None:
            ax.axvline(budget, color=MUTED, linestyle="--", linewidth=1.0, zorder=0)
            handles.append(Line2D([], [], color=MUTED, linestyle="--", linewidth=1.0, label="cost budget"))
        ax.set_xscale("log")
        ax.set_xlabel(f"client MACs / reference's ({basis}; lower is cheaper)")
        ax.set_ylabel("privacy score: leakage (lower is better)")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
        return _save(fig, path)


def leakage_heatmap(path: Path, rows: list[str], row_colors: list[str], columns: list[str],
                    values: np.ndarray, title: str = "") -> Path:
    """Draw the attack × defense heatmap to ``path`` (PNG): ``values[i, j]`` is row i's leakage under attack j on
    that attack's family scale (NaN: not run or not applicable, drawn as an empty grey cell)."""
    values = np.asarray(values, dtype=float).reshape(len(rows), len(columns))
    with matplotlib.rc_context(STYLE):
        width = max(4.2, 1.05 * len(columns) + 2.8)
        fig = Figure(figsize=(width, max(2.6, 0.42 * len(rows) + 2.0)))  # room for the slanted attack names
        ax = fig.add_subplot(1, 1, 1)
        finite = values[np.isfinite(values)]
        vmax = max(1.0, float(finite.max())) if finite.size else 1.0
        cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="#f3f4f6")
        norm = Normalize(vmin=0.0, vmax=vmax)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto",
                          interpolation="nearest")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if not np.isfinite(v):
                    ax.text(j, i, "–", ha="center", va="center", color=MUTED, fontsize=8.5)
                    continue
                r, g, b, _ = cmap(norm(v))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8.5,
                        color="white" if dark else INK)
        ax.set_xticks(range(len(columns)), labels=columns, fontsize=8, rotation=30, ha="right",
                      rotation_mode="anchor")  # slanted: long attack names side by side do not overlap
        ax.set_yticks(range(len(rows)), labels=[short(r) for r in rows], fontsize=8.5)
        ax.set_xticks(np.arange(-0.5, len(columns)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
        ax.grid(which="minor", color="white", linewidth=2.0)
        ax.tick_params(which="both", length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        for label, color in zip(ax.get_yticklabels(), row_colors):
            label.set_color(color)
            label.set_fontweight("bold")
        bar = fig.colorbar(image, ax=ax, shrink=0.85, pad=0.03)
        bar.set_label("leakage (0 = floor, 1 = all)")
        bar.outline.set_visible(False)
        if title:
            ax.set_title(title, loc="left")
        return _save(fig, path)
