"""Uncertainty: percentile bootstrap intervals, with seeds and eval samples **crossed**.

Every leaderboard figure is a statistic of per-sample outcomes. Every seed of a track is scored on the same eval
samples, so seeds and samples are crossed, not nested: a sample that is hard for one seed is hard for all of them.
A replicate therefore draws seeds with replacement *and*, independently, samples with replacement, and weighs
outcome ``(s, i)`` by (times seed ``s`` was drawn) x (times sample ``i`` was drawn) (the pigeonhole bootstrap of
crossed designs, Owen 2007). One such draw per track is shared by every row, every family and the reference, so
paired differences, the worst of two families and ranks are all computed within one replicate.

Eval samples are drawn **stratified** by the prefixes attacks are scored on (reconstruction attacks see the first
128 eval samples, utility all of them): each stratum is resampled within itself, so the draw restricted to the
first ``n`` samples is itself a bootstrap draw of those ``n``, and every kind sees the same draw.

A statistic is a function of a :class:`Draw` (the replicates' weights) to one value per replicate; it reaches
the per-sample outcomes only through :meth:`Draw.mean`, which is what makes one definition of every figure serve
both the point estimate (the identity draw) and the bootstrap.

Example:
    >>> import numpy as np
    >>> est = bootstrap(lambda d: d.mean(np.asarray([1.0, 0.0, 1.0, 1.0])), [4], replicates=200)
    >>> round(est.value, 2), est.lo <= est.value <= est.hi
    (0.75, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_REPLICATES = 1000
LEVEL = 0.95
#: replicates evaluated at once (bounds the memory of index draws)
CHUNK = 256


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


NAN = Estimate(math.nan)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaN replicates are dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def estimate(point: float, replicates: np.ndarray | None) -> Estimate:
    """An :class:`Estimate` from a point value and its bootstrap replicates (None: no interval)."""
    if replicates is None or len(replicates) < 2:
        return Estimate(float(point))
    return Estimate(float(point), *percentile_interval(replicates))


class Draw:
    """Bootstrap replicates as weights on per-sample outcomes; ``len`` is the number of replicates."""

    def __len__(self) -> int:
        raise NotImplementedError

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The weighted mean over the last (sample) axis, per replicate: ``[..., m]`` -> ``[..., B]``."""
        raise NotImplementedError


class IndexDraw(Draw):
    """Replicates given as index arrays ``[B, m]`` into the pooled samples (the identity for a point estimate)."""

    def __init__(self, idx: np.ndarray):
        self.idx = np.asarray(idx)

    def __len__(self) -> int:
        return len(self.idx)

    def mean(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[..., self.idx].mean(axis=-1)


class CrossedDraw(Draw):
    """Crossed replicates of ``k`` seeds x ``n`` samples, pooled seed after seed (``[..., k * n]``).

    Args:
        seed_counts: ``[B, k]`` times each seed was drawn (each row sums to k).
        sample_counts: ``[B, n]`` times each sample was drawn (each row sums to n).
    """

    def __init__(self, seed_counts: np.ndarray, sample_counts: np.ndarray):
        self.seed_counts = np.asarray(seed_counts, dtype=np.float64)
        self.sample_counts = np.asarray(sample_counts, dtype=np.float64)
        if len(self.seed_counts) != len(self.sample_counts):
            raise ValueError("seed and sample draws must have the same number of replicates")
        self.k, self.n = self.seed_counts.shape[1], self.sample_counts.shape[1]

    def __len__(self) -> int:
        return len(self.seed_counts)

    def mean(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if v.shape[-1] != self.k * self.n:
            raise ValueError(f"expected {self.k} seeds x {self.n} samples pooled, got {v.shape[-1]} values")
        v = v.reshape(*v.shape[:-1], self.k, self.n)
        per_seed = v @ self.sample_counts.T  # [..., k, B]
        return np.einsum("...kb,bk->...b", per_seed, self.seed_counts) / (self.k * self.n)


def identity(k: int, n: int) -> CrossedDraw:
    """The point estimate's "replicate": every seed and every sample once."""
    return CrossedDraw(np.ones((1, k)), np.ones((1, n)))


def evaluate(statistic: Callable[[Draw], np.ndarray], draw: CrossedDraw) -> np.ndarray:
    """``statistic`` on every replicate of ``draw``, a chunk of replicates at a time."""
    parts = [np.asarray(statistic(CrossedDraw(draw.seed_counts[a:a + CHUNK], draw.sample_counts[a:a + CHUNK])),
                        dtype=np.float64)
             for a in range(0, len(draw), CHUNK)]
    return np.concatenate(parts, axis=-1) if parts else np.empty(0)


def _counts(draws: np.ndarray, size: int) -> np.ndarray:
    """``[B, m]`` drawn positions in ``[0, size)`` -> ``[B, size]`` counts."""
    b = len(draws)
    flat = (draws + np.arange(b)[:, None] * size).ravel()
    return np.bincount(flat, minlength=b * size).reshape(b, size).astype(np.float64)


class TrackResample:
    """The one crossed bootstrap of a track: seeds x eval samples (stratified by prefix) and seeds x validation
    samples, drawn once and shared by every row, family and the reference.

    Args:
        seeds: the track's seeds.
        eval_prefixes: the eval sample counts figures are scored on (each a prefix of eval); the largest is the
            whole scored eval split.
        n_val: validation samples per seed (0: none).
        replicates: bootstrap replicates (1: point estimates only).
        key: identifies the track; the draw depends only on it and the sizes, so two sources of the same track
            (e.g. two entries of one run) resample alike and can be ranked together replicate by replicate.
        extra_seeds: seeds only some rows have (admission seeds: models validated, never attacked); they come after
            ``seeds`` in the draw, from a stream of their own, so adding them changes no replicate of the rows
            that lack them.
    """

    def __init__(self, seeds: Sequence[int], eval_prefixes: Sequence[int], n_val: int, replicates: int,
                 key: object = (), extra_seeds: Sequence[int] = ()):
        if replicates < 1:
            raise ValueError(f"bootstrap replicates must be at least 1, got {replicates}")
        self.seeds = tuple(sorted(int(s) for s in seeds))
        self.prefixes = tuple(sorted({int(n) for n in eval_prefixes if int(n) > 0}))
        self.n_val = int(n_val)
        self.replicates = replicates
        rng = np.random.default_rng(stable_seed("track", key, self.seeds, self.prefixes, self.n_val, replicates))
        b = replicates
        self._seed_u = rng.random((b, max(1, len(self.seeds))))
        self.extra_seeds = tuple(sorted(int(s) for s in extra_seeds))
        if self.extra_seeds:
            more = np.random.default_rng(stable_seed("track-extra", key, self.seeds, self.extra_seeds, replicates))
            self._seed_u = np.concatenate([self._seed_u, more.random((b, len(self.extra_seeds)))], axis=1)
        bounds = (0, *self.prefixes)
        self._eval = np.concatenate([rng.integers(lo, hi, size=(b, hi - lo)) for lo, hi in zip(bounds[:-1],
                                                                                                  bounds[1:])],
                                    axis=1) if self.prefixes else np.zeros((b, 0), dtype=np.int64)
        self._val = rng.integers(0, self.n_val, size=(b, self.n_val)) if self.n_val else np.zeros((b, 0), np.int64)
        self._cache: dict[tuple, CrossedDraw] = {}

    @property
    def bootstrapped(self) -> bool:
        return self.replicates > 1

    def seed_counts(self, k: int) -> np.ndarray:
        """``[B, k]``: how often each of a row's ``k`` seeds is drawn (the track's uniform draws mapped onto the
        row's seeds, so rows with the track's seeds share the draw exactly)."""
        picks = np.minimum((self._seed_u[:, :k] * k).astype(np.int64), k - 1)
        if picks.shape[1] < k:  # a row with more seeds than the track knew of (not expected)
            raise ValueError(f"a row has {k} seeds, the track {len(self.seeds) + len(self.extra_seeds)}")
        return _counts(picks, k)

    def draw(self, k: int, n: int, split: str = "eval") -> CrossedDraw:
        """The replicates of ``k`` seeds x the first ``n`` samples of ``split`` (``eval`` or ``val``)."""
        key = (k, n, split)
        if key not in self._cache:
            if split == "val":
                if n != self.n_val:
                    raise ValueError(f"validation outcomes of {n} samples, the track has {self.n_val}")
                samples = self._val
            else:
                if n not in self.prefixes:
                    raise ValueError(f"eval outcomes of {n} samples are not one of the track's prefixes "
                                     f"{self.prefixes}")
                samples = self._eval[:, :n]
            self._cache[key] = CrossedDraw(self.seed_counts(k), _counts(samples, n))
        return self._cache[key]

    def apply(self, statistic: Callable[[Draw], np.ndarray], k: int, n: int, split: str = "eval"
              ) -> tuple[float, np.ndarray | None]:
        """(point value, replicate values or None when not bootstrapped) of ``statistic``."""
        point = float(np.asarray(statistic(identity(k, n)))[0])
        if not self.bootstrapped:
            return point, None
        return point, evaluate(statistic, self.draw(k, n, split))


def bootstrap(statistic: Callable[[Draw], np.ndarray], sizes: Sequence[int],
              replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> Estimate:
    """Point estimate and percentile interval of ``statistic`` over per-sample outcomes of one or more seeds.

    Args:
        statistic: maps a :class:`Draw` to ``[B]`` values.
        sizes: samples per seed, in the order the pooled arrays concatenate them; several seeds must be scored on
            the same samples (equal sizes) and are resampled crossed with them.
        replicates: bootstrap replicates (at least 1; 1 gives no interval).
        seed: seed of the resampling, so the same data always gives the same interval.
    """
    if replicates < 1:
        raise ValueError(f"bootstrap replicates must be at least 1, got {replicates}")
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1 or len(set(sizes)) != 1:
        raise ValueError(f"seeds must each have the same positive number of samples, got sizes {sizes}")
    point, reps = TrackResample(range(len(sizes)), [sizes[0]], 0, replicates, seed).apply(statistic, len(sizes),
                                                                                         sizes[0])
    return estimate(point, reps)


def stable_seed(*parts: object) -> int:
    """A seed derived from an identity (the same identity always gets the same draw)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def rank_intervals(points: Sequence[float], replicates: np.ndarray | None, level: float = LEVEL
                   ) -> list[tuple[int, int, int]]:
    """Ranks (lower value = better = rank 1) of rows whose statistic was computed on one shared draw.

    Args:
        points: each row's point value (NaN: not ranked).
        replicates: ``[rows, B]`` each row's value in each replicate (NaN where the row is not in that
            replicate's ranking, e.g. not admitted there), or None without a bootstrap.

    Returns:
        Per row (point rank, low, high): the rank of the point values, and the central ``level`` interval of the
        row's rank over the replicates where it takes part (equal values share the better rank). Rows with a
        NaN point get (0, 0, 0).
    """
    p = np.asarray(points, dtype=np.float64)

    def ranks(values: np.ndarray) -> np.ndarray:  # [rows, B] -> competition ranks, NaN stays NaN
        v = np.where(np.isnan(values), np.inf, values)
        out = (v[None, :, :] < v[:, None, :]).sum(axis=1) + 1.0
        return np.where(np.isnan(values), np.nan, out)

    point = ranks(p[:, None])[:, 0]
    out = []
    reps = None if replicates is None else ranks(np.asarray(replicates, dtype=np.float64))
    a = (1.0 - level) / 2.0
    for i in range(len(p)):
        if math.isnan(p[i]):
            out.append((0, 0, 0))
            continue
        r = int(point[i])
        if reps is None or np.isfinite(reps[i]).sum() < 2:
            out.append((r, r, r))
            continue
        v = reps[i][np.isfinite(reps[i])]
        lo, hi = np.quantile(v, [a, 1.0 - a])
        out.append((r, min(r, int(math.floor(lo))), max(r, int(math.ceil(hi)))))
    return out
