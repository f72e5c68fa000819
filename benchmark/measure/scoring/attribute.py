"""Attribute inference: the attacker's accuracy at the sensitive attribute, on the scale of the advantage over
what the designated task itself reveals.

The server legitimately learns the task, so the floor is not the majority rate but the accuracy of the best
guess of the attribute *from the task label*: ``c = sum_y P(y) max_s P(s | y)`` on the scored eval samples (where
the attribute is a function of the task, ``c = 1`` and no attack can show a leak beyond the task). Advantage =
``(acc - c) / (1 - c)``: 0 = no more than the task reveals, 1 = the attribute in full; an attacker below the floor
is "at floor" (0; ``leakage_raw`` keeps the signed figure). The majority rate is shown beside it.

The floor is a property of the eval set, not of the attacker, so it is computed once on all scored samples and
held fixed in the bootstrap (re-estimating a maximum of class frequencies on every resample would bias it upward
and push the interval off the point estimate); only the attacker's correctness is resampled.
"""

from __future__ import annotations

import numpy as np

from benchmark.api.contract import AttackKind
from benchmark.measure.scoring.base import (
    Scorer,
    Statistic,
    Truth,
    at_floor,
    constant,
    correct,
    labels_of,
    mean_of,
    safe_ratio,
)


def best_guess_from(condition: np.ndarray, target: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per replicate ``[B]``: accuracy of guessing ``target`` as its most frequent value given ``condition``,
    i.e. ``sum_y P(y) max_s P(s | y)`` on the indexed samples (``idx``: ``[B, m]``)."""
    cond, tgt = np.asarray(condition, dtype=np.int64), np.asarray(target, dtype=np.int64)
    ns = int(tgt.max()) + 1
    nc = int(cond.max()) + 1
    joint = cond * ns + tgt  # [n]
    b, m = idx.shape
    codes = joint[idx] + (np.arange(b) * nc * ns)[:, None]
    counts = np.bincount(codes.ravel(), minlength=b * nc * ns).reshape(b, nc, ns)
    return counts.max(axis=2).sum(axis=1) / m


def majority_rate(target: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per replicate: the frequency of the most common value of ``target`` among the indexed samples."""
    return best_guess_from(np.zeros_like(target), target, idx)


class AttributeScorer(Scorer):
    kind = AttackKind.ATTRIBUTE
    finite = ("attribute_accuracy",)

    def outcomes(self, out, truth: Truth):
        if out.attributes is None:
            raise RuntimeError("attribute attack returned no attributes")
        if truth.sensitive is None:
            raise RuntimeError("the scenario has no sensitive attribute to score")
        return ({"correct": correct(out.attributes, truth.sensitive)},
                {"task": labels_of(truth.task), "sensitive": labels_of(truth.sensitive)})

    def statistics(self, samples) -> dict[str, Statistic]:
        task, sens = samples["task"], samples["sensitive"]
        acc = mean_of(samples["correct"])
        everything = np.arange(len(sens))[None, :]
        c = float(best_guess_from(task, sens, everything)[0])
        majority = float(majority_rate(sens, everything)[0])
        def raw(draw):
            return safe_ratio(acc(draw) - c, np.full(len(draw), 1.0 - c))

        return {
            "attribute_accuracy": acc,
            "attribute_floor": constant(c),
            "attribute_majority": constant(majority),
            "leakage_raw": raw,
            "leakage": at_floor(raw),
        }

    def brief(self, metrics) -> str:
        line = super().brief(metrics)
        if "attribute_accuracy" in metrics:
            line += f", accuracy {metrics['attribute_accuracy']:.3f} (floor {metrics['attribute_floor']:.3f})"
        return line
