"""The scorer interface: one object per attack kind turns an attack's predictions into per-sample outcomes and
defines the statistics (headline leakage and the numbers beside it) computed from them.

The runner calls :meth:`Scorer.score` once per cell (against eval ground truth the attack never saw) and stores
the per-sample outcomes beside the record; the leaderboard pools them over seeds and bootstraps the same
statistics for intervals. So a number means the same in a record and on the leaderboard.

Conventions: every per-sample array has the sample axis **last** (pooling seeds concatenates along it); rows an
attack returned for several release draws of one eval sample are averaged into that sample's outcome.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from benchmark.api.contract import AttackKind, AttackOutput
from benchmark.measure.intervals import Draw, IndexDraw

Statistic = Callable[[Draw], np.ndarray]  # bootstrap replicates (weights on pooled samples) -> [B] values
Samples = dict[str, np.ndarray]


@dataclasses.dataclass
class Truth:
    """Eval ground truth for the rows an attack answered (held by the harness, never by the attack).

    Attributes:
        sample: eval sample id of each row (a sample appears once per release draw).
        task, sensitive: the rows' labels.
        images: the rows' images in [0, 1] (reconstruction), or None.
        baseline: the attacker's best guess of an image from its task label alone, in [0, 1]: its mean aux image
            per task class, ``[num_task_classes, C, H, W]`` (``[1, C, H, W]``: one guess for every row).
        utility_correct: the designated model's per-sample correctness on the whole eval split (mean over draws),
            indexed by sample id.
        num_task_classes, num_sensitive_classes: class counts.
    """

    sample: np.ndarray
    task: Tensor
    sensitive: Tensor | None
    images: Tensor | None
    baseline: Tensor | None
    utility_correct: np.ndarray
    num_task_classes: int
    num_sensitive_classes: int | None


class Scorer(ABC):
    """Scores one kind of attack. Subclasses set ``kind`` and implement :meth:`outcomes` and :meth:`statistics`."""

    kind: AttackKind
    #: the statistic that is the family's leakage scale (0 = no more than the floor, 1 = everything); below the
    #: floor it is 0 ("at floor") and ``leakage_raw`` keeps the signed figure
    headline = "leakage"
    #: statistics that are never NaN for a sound attack output (a NaN there fails the cell); the headline may be
    #: NaN legitimately, e.g. an attribute that the task label determines leaves no room for an advantage
    finite: tuple[str, ...] = ()

    @abstractmethod
    def outcomes(self, out: AttackOutput, truth: Truth) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per-row outcomes (averaged per sample by :meth:`score`) and per-row labels (taken once per sample)."""

    @abstractmethod
    def statistics(self, samples: Mapping[str, np.ndarray]) -> dict[str, Statistic]:
        """Named statistics of (pooled) per-sample outcomes; must include :attr:`headline`."""

    def score(self, out: AttackOutput, truth: Truth) -> tuple[dict[str, float], Samples]:
        """Point metrics of one cell and its per-sample outcomes."""
        values, labels = self.outcomes(out, truth)
        ids, first, counts = np.unique(truth.sample, return_index=True, return_counts=True)
        samples: Samples = {"sample": ids.astype(np.int64)}
        inverse = np.searchsorted(ids, truth.sample)
        for name, v in values.items():
            v = np.asarray(v, dtype=np.float64)
            sums = np.zeros((*v.shape[:-1], len(ids)))
            np.add.at(np.moveaxis(sums, -1, 0), inverse, np.moveaxis(v, -1, 0))
            samples[name] = (sums / counts).astype(np.float32)
        for name, v in labels.items():
            samples[name] = np.asarray(v)[..., first]
        return self.point(samples), samples

    def point(self, samples: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Every statistic evaluated once on all samples."""
        n = len(samples["sample"])
        draw = IndexDraw(np.arange(n)[None, :])
        return {name: float(stat(draw)[0]) for name, stat in self.statistics(samples).items()}

    def brief(self, metrics: Mapping[str, float]) -> str:
        """One line for the run's log from a cell's point metrics: the headline, then (in subclasses) the figures
        that read it."""
        return f"{self.headline} {metrics.get(self.headline, float('nan')):.3f}"


def pool(per_seed: list[Mapping[str, np.ndarray]]) -> Samples:
    """Concatenate per-seed outcomes along the sample axis (the last one)."""
    keys = per_seed[0].keys()
    return {k: np.concatenate([np.asarray(s[k]) for s in per_seed], axis=-1) for k in keys}


def mean_of(values: np.ndarray) -> Statistic:
    """The mean of a per-sample array in each replicate of a draw."""
    v = np.asarray(values, dtype=np.float64)
    return lambda draw: draw.mean(v)


def constant(value: float) -> Statistic:
    """A figure held fixed in the bootstrap (a property of the eval set, e.g. a floor)."""
    return lambda draw: np.full(len(draw), value)


def at_floor(raw: Statistic) -> Statistic:
    """A leakage scale read from its floor up: below the floor is "at floor", 0 (NaN stays NaN)."""

    def clipped(draw: Draw) -> np.ndarray:
        v = np.asarray(raw(draw), dtype=np.float64)
        return np.where(np.isnan(v), np.nan, np.maximum(v, 0.0))

    return clipped


def as_numpy(t: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den`` is 0 (and inf where only the denominator vanishes would mislead)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(np.abs(den) < 1e-12, np.nan, out)


def labels_of(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else as_numpy(t).astype(np.int64)


def correct(pred: Tensor, truth: Tensor) -> np.ndarray:
    """Per-row 0/1 correctness of class predictions (or logits)."""
    if pred.ndim == 2:
        pred = pred.argmax(1)
    return (pred.to(truth.device).long() == truth.long()).float().cpu().numpy()


def cpu_float(t: Tensor) -> Tensor:
    return t.detach().to("cpu", torch.float32)
