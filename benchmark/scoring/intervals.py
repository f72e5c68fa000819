"""Uncertainty: percentile bootstrap over eval samples (and over seeds, where there are several).

Every leaderboard figure is a statistic of per-sample outcomes. Its 95% interval comes from resampling those
outcomes with replacement: for one seed, the samples; for several seeds, first the seeds and then, within each
drawn seed, its samples (a two-level bootstrap, so that seed-to-seed variation of training counts as well as the
finite eval set). A statistic is a function of index arrays ``[B, m]`` into the pooled per-sample arrays, so each
replicate is one row and everything is vectorised.

Example:
    >>> import numpy as np
    >>> est = bootstrap(lambda idx: np.asarray([1.0, 0.0, 1.0, 1.0])[idx].mean(1), [4], replicates=200)
    >>> round(est.value, 2), est.lo <= est.value <= est.hi
    (0.75, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_REPLICATES = 1000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% interval (NaN bounds when the data cannot give one)."""

    value: float
    lo: float = math.nan
    hi: float = math.nan

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals overlap (a difference inside them is a tie)."""
        if not (self.has_interval and other.has_interval):
            return True
        return self.lo <= other.hi and other.lo <= self.hi

    def __sub__(self, other: Estimate) -> Estimate:  # pragma: no cover - convenience for notebooks
        return Estimate(self.value - other.value)


NAN = Estimate(math.nan)


def resample_indices(sizes: Sequence[int], replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``[B, sum(sizes)]`` indices into the concatenation of groups (seeds) of the given sizes.

    One group: an ordinary bootstrap of its samples. Several: each replicate draws as many groups as there are,
    with replacement, and within each drawn group as many samples as it has, with replacement. Groups of
    different sizes are allowed; the replicate's width is then that of the groups it drew, padded by repeating
    its last block, which keeps every replicate's mean an unbiased pooled mean of the drawn blocks.
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every group needs at least one sample, got sizes {sizes}")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if len(sizes) == 1:
        return rng.integers(0, sizes[0], size=(replicates, sizes[0]))
    if len(set(sizes)) == 1:
        n, g = sizes[0], len(sizes)
        groups = rng.integers(0, g, size=(replicates, g))
        within = rng.integers(0, n, size=(replicates, g, n))
        return (offsets[groups][:, :, None] + within).reshape(replicates, g * n)
    width = sum(sizes)
    out = np.empty((replicates, width), dtype=np.int64)
    for b in range(replicates):
        blocks = []
        for gi in rng.integers(0, len(sizes), size=len(sizes)):
            blocks.append(offsets[gi] + rng.integers(0, sizes[gi], size=sizes[gi]))
        row = np.concatenate(blocks)
        out[b] = np.resize(row, width)
    return out


def point_indices(sizes: Sequence[int]) -> np.ndarray:
    """The identity "replicate": every sample of every group once, ``[1, sum(sizes)]``."""
    return np.arange(int(sum(sizes)))[None, :]


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaN replicates are dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], sizes: Sequence[int],
              replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> Estimate:
    """Point estimate and percentile interval of ``statistic`` over groups of per-sample outcomes.

    Args:
        statistic: maps ``[B, m]`` index arrays into the pooled samples to ``[B]`` values.
        sizes: samples per group (seed), in the order the pooled arrays concatenate them.
        replicates: bootstrap replicates (at least 1; 1 gives no interval).
        seed: seed of the resampling, so the same data always gives the same interval.
    """
    if replicates < 1:
        raise ValueError(f"bootstrap replicates must be at least 1, got {replicates}")
    value = float(statistic(point_indices(sizes))[0])
    if replicates < 2:
        return Estimate(value)
    rng = np.random.default_rng(seed)
    lo, hi = percentile_interval(statistic(resample_indices(sizes, replicates, rng)))
    return Estimate(value, lo, hi)


def stable_seed(*parts: object) -> int:
    """A seed for a row's resampling derived from its identity (the same row always gets the same interval)."""
    import hashlib

    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def bootstrap_combined(parts: Sequence[tuple[Callable[[np.ndarray], np.ndarray], Sequence[int]]],
                       combine: Callable[[np.ndarray], np.ndarray] = lambda v: v.max(0),
                       replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> Estimate:
    """A statistic of several independently resampled parts, e.g. a privacy score = the worst of the attribute
    and the reconstruction families, which are measured on different eval samples by different attackers.

    Each part is ``(statistic, sizes)`` as for :func:`bootstrap`; ``combine`` maps the stacked ``[P, B]`` part
    values to ``[B]`` (default: the maximum over parts).
    """
    if not parts:
        return NAN
    if replicates < 1:
        raise ValueError(f"bootstrap replicates must be at least 1, got {replicates}")
    value = float(combine(np.stack([stat(point_indices(sizes)) for stat, sizes in parts]))[0])
    if replicates < 2:
        return Estimate(value)
    rng = np.random.default_rng(seed)
    reps = np.stack([stat(resample_indices(sizes, replicates, rng)) for stat, sizes in parts])
    lo, hi = percentile_interval(combine(reps))
    return Estimate(value, lo, hi)
