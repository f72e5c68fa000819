"""The site's figures, drawn with seaborn on matplotlib's Agg canvas and saved as PNG files.

Two figures per track: the **privacy–utility plot** (each defense's knob curve, x = utility, y = privacy score,
95% intervals on both; the reference as a star; a dashed line at the utility budget; the selected settings drawn
larger with a dark edge) and the **attack × defense heatmap** (each defense's selected setting against every
attack, coloured by leakage on the attack family's scale, annotated with the value). Every defense keeps one
colour across all figures and pages (:func:`defense_colors`), handed to seaborn as the palette of every plot.

The points, knob curves and Pareto front are seaborn relational plots and the heatmap is :func:`seaborn.heatmap`;
the 95% intervals come from the records (not from resampling the plotted points, which is what seaborn's own
error bars would do), so they are drawn as error-bar overlays on the same axes. Figures are built on a
:class:`~matplotlib.figure.Figure` with an Agg canvas, never through pyplot's global state, and with math text
parsing off, so a name full of ``$`` or ``\\`` is drawn as it is (the log axis's tick labels are plain text for
the same reason).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from benchmark.measure.intervals import Estimate

# Okabe and Ito's colour-blind-safe set (without its yellow and black, which vanish on white or read as grey)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#7B3294")
HEATMAP_CMAP = "YlOrRd"
EMPTY_CELL = "#f3f4f6"
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
# marker sizes in points (a marker's diameter, as matplotlib's ``markersize``); seaborn's scatter takes the area
SMALL, SELECTED, STAR = 5.5, 9.0, 15.0


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


class _PlainLogFormatter(LogFormatter):
    """A log axis's tick labels as plain numbers ("0.5", "2"): the default formatter writes math text
    (``$\\mathdefault{10^{0}}$``), which would be drawn verbatim with math text parsing off."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _figure(size: tuple[float, float]) -> tuple[Figure, matplotlib.axes.Axes]:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)  # the Agg canvas from the start: seaborn measures tick labels while drawing
    return fig, fig.add_subplot(1, 1, 1)


def _grid(ax: matplotlib.axes.Axes) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _scatter(ax: matplotlib.axes.Axes, data: pd.DataFrame, palette: dict[str, str], marker: str, size: float,
             edge: str, edge_width: float, zorder: int) -> None:
    """Markers of one style, coloured through the shared palette (``data``: columns key, x, y)."""
    if data.empty:
        return
    sns.scatterplot(data=data, x="x", y="y", hue="key", palette=palette, marker=marker, s=size ** 2,
                    edgecolor=edge, linewidth=edge_width, zorder=zorder, legend=False, ax=ax)


def _intervals(ax: matplotlib.axes.Axes, data: pd.DataFrame, palette: dict[str, str], alpha: float,
               x: bool = True) -> None:
    """The records' 95% intervals as error bars (``data``: columns key, x, y and the lower and upper arms)."""
    for key, group in data.groupby("key", sort=False):
        ax.errorbar(group["x"], group["y"], xerr=[group["x_lo"], group["x_hi"]] if x else None,
                    yerr=[group["y_lo"], group["y_hi"]], fmt="none", ecolor=palette[key], elinewidth=1.0,
                    alpha=alpha, capsize=2.5, zorder=1)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
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
    rows, palette, handles = [], {}, []
    for i, c in enumerate(curves):
        pts = [p for p in c.points if _finite(p)]
        if not pts:
            continue
        key = f"c{i}"  # curves are told apart by position: two labels may be cut to the same text
        palette[key] = c.color
        for p in pts:
            kind = "reference" if c.reference else "selected" if p.selected else "other"
            rows.append({"key": key, "x": p.utility.value, "y": p.privacy.value, "kind": kind, "n": len(pts),
                         **dict(zip(("x_lo", "x_hi"), _err(p.utility))),
                         **dict(zip(("y_lo", "y_hi"), _err(p.privacy)))})
        handles.append(Line2D([], [], color=c.color, marker="*" if c.reference else "o", linewidth=1.6,
                              markersize=SELECTED if c.reference else SMALL,
                              label=short(c.label) + (" (reference)" if c.reference else "")))
    data = pd.DataFrame(rows, columns=["key", "x", "y", "kind", "n", "x_lo", "x_hi", "y_lo", "y_hi"])
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(size)
        _grid(ax)
        lines = data[data["n"] > 1]
        if not lines.empty:  # each curve in knob order, as given (no sorting, no aggregation)
            sns.lineplot(data=lines, x="x", y="y", hue="key", palette=palette, estimator=None, sort=False,
                         errorbar=None, linewidth=1.6, alpha=0.75, zorder=2, legend=False, ax=ax)
        _intervals(ax, data, palette, alpha=0.45)
        _scatter(ax, data[data["kind"] == "other"], palette, "o", SMALL, "white", 0.7, 3)
        _scatter(ax, data[data["kind"] == "selected"], palette, "o", SELECTED, INK, 1.6, 4)
        _scatter(ax, data[data["kind"] == "reference"], palette, "*", STAR, "white", 0.8, 4)
        for i, x in enumerate(sorted(set(budget_at))):
            if math.isnan(x):
                continue
            ax.axvline(x, color=MUTED, linestyle="--", linewidth=1.0, zorder=0)
            if i == 0:
                handles.append(Line2D([], [], color=MUTED, linestyle="--", linewidth=1.0,
                                      label="utility budget"))
        handles.append(Line2D([], [], color="white", marker="o", markersize=SELECTED, markeredgecolor=INK,
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
    rows, palette, handles = [], {}, []
    for i, p in enumerate(points):
        if math.isnan(p.cost) or math.isnan(p.privacy.value) or p.cost <= 0:
            continue
        key = f"p{i}"
        palette[key] = p.color
        kind = "reference" if p.reference else "pareto" if p.pareto else "other"
        lo, hi = _err(p.privacy)
        rows.append({"key": key, "x": p.cost, "y": p.privacy.value, "kind": kind, "pareto": p.pareto,
                     "y_lo": lo, "y_hi": hi})
        handles.append(Line2D([], [], color=p.color, marker="*" if p.reference else "o", linestyle="none",
                              markersize=SELECTED, label=short(p.label)))
    data = pd.DataFrame(rows, columns=["key", "x", "y", "kind", "pareto", "y_lo", "y_hi"])
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(size)
        ax.set_xscale("log")
        _grid(ax)
        front = data[data["pareto"].astype(bool)].sort_values("x", kind="stable")
        if len(front) > 1:
            sns.lineplot(data=front, x="x", y="y", estimator=None, sort=False, errorbar=None, color=MUTED,
                         linewidth=1.2, drawstyle="steps-post", zorder=1, legend=False, ax=ax)
            handles.insert(0, Line2D([], [], color=MUTED, linewidth=1.2, label="Pareto front"))
        _intervals(ax, data, palette, alpha=0.5, x=False)
        _scatter(ax, data[data["kind"] == "other"], palette, "o", 6.0, "white", 0.7, 4)
        _scatter(ax, data[data["kind"] == "pareto"], palette, "o", SELECTED, INK, 1.6, 4)
        for pareto, edge_width in ((False, 0.7), (True, 1.6)):
            stars = data[(data["kind"] == "reference") & (data["pareto"] == pareto)]
            _scatter(ax, stars, palette, "*", STAR, "white", edge_width, 4)
        if budget is not None:
            ax.axvline(budget, color=MUTED, linestyle="--", linewidth=1.0, zorder=0)
            handles.append(Line2D([], [], color=MUTED, linestyle="--", linewidth=1.0, label="cost budget"))
        # the log axis's own choice of labelled ticks, written as plain numbers
        ax.xaxis.set_major_formatter(_PlainLogFormatter())
        ax.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))
        ax.set_xlabel(f"client MACs / reference's ({basis}; lower is cheaper)")
        ax.set_ylabel("privacy score: leakage (lower is better)")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
        return _save(fig, path)


def leakage_heatmap(path: Path, rows: list[str], row_colors: list[str], columns: list[str],
                    values: np.ndarray, title: str = "") -> Path:
    """Draw the attack × defense heatmap to ``path`` (PNG): ``values[i, j]`` is row i's leakage under attack j on
    that attack's family scale (NaN: not run or not applicable, drawn as an empty grey cell)."""
    values = np.asarray(values, dtype=float).reshape(len(rows), len(columns))
    empty = ~np.isfinite(values)
    finite = values[~empty]
    vmax = max(1.0, float(finite.max())) if finite.size else 1.0
    with matplotlib.rc_context(STYLE):
        width = max(4.2, 1.05 * len(columns) + 2.8)
        fig, ax = _figure((width, max(2.6, 0.42 * len(rows) + 2.0)))  # room for the slanted attack names
        cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad=EMPTY_CELL)  # masked (empty) cells: grey
        sns.heatmap(values, mask=empty, ax=ax, cmap=cmap, vmin=0.0, vmax=vmax, annot=True, fmt=".2f",
                    annot_kws={"fontsize": 8.5}, linewidths=2.0, linecolor="white", xticklabels=columns,
                    yticklabels=[short(r) for r in rows],
                    cbar_kws={"shrink": 0.85, "pad": 0.03, "label": "leakage (0 = floor, 1 = all)"})
        # seaborn annotates the filled cells row by row; its switch to white ink leaves mid-orange cells hard to
        # read, so each value is inked dark unless its cell is dark
        for text, v in zip(ax.texts, values[~empty]):
            r, g, b, _ = cmap(v / vmax)
            text.set_color("white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else INK)
        for i, j in zip(*np.nonzero(empty)):
            ax.text(j + 0.5, i + 0.5, "–", ha="center", va="center", color=MUTED, fontsize=8.5)
        # slanted: long attack names side by side do not overlap
        for label in ax.get_xticklabels():
            label.set(fontsize=8, rotation=30, ha="right", rotation_mode="anchor")
        for label, color in zip(ax.get_yticklabels(), row_colors):
            label.set(fontsize=8.5, rotation=0, va="center_baseline", color=color, fontweight="bold")
        ax.tick_params(which="both", length=0)
        if title:
            ax.set_title(title, loc="left")
        return _save(fig, path)
