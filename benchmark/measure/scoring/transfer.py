"""Cross-model transfer: can models other than the designated one use the release for the task?

Seed 000's model-specificity test. Each unintended model's task accuracy on the release, on the scale of the
advantage over the task's majority rate c: ``(acc_U - c) / (1 - c)`` for the best model of the set. Two sets are
reported apart: the *plain* unintended models (trained on clean data, fed the release) and the *adaptive* ones
(the same models fine-tuned on aux releases) — the adaptive set is the real attacker and the headline.

Beside it: the paper's suppression ratio ``utility / acc_U`` and its chance-corrected form
``(utility - c) / (acc_U - c)`` (on a binary task the plain ratio cannot exceed about 1 / 0.5; the corrected one has
no such cap), with utility measured on the same eval samples. The majority rate is computed once on all scored
samples and held fixed in the bootstrap.

Transfer is not folded into the privacy score: an adaptive model that serves the *task* is not a leak when the
server is meant to serve it. It is its own column and ranking view.
"""

from __future__ import annotations

import numpy as np

from benchmark.api.contract import AttackKind
from benchmark.measure.scoring.attribute import majority_rate
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


def _names(preds: dict | None) -> list[str]:
    return sorted(preds) if preds else []


class TransferScorer(Scorer):
    kind = AttackKind.TRANSFER
    finite = ("unintended_acc_max",)

    def outcomes(self, out, truth: Truth):
        if not out.task_predictions:
            raise RuntimeError("transfer attack returned no predictions")
        values = {f"correct/{n}": correct(out.task_predictions[n], truth.task) for n in _names(out.task_predictions)}
        for n in _names(out.extra_task_predictions):
            values[f"adaptive_correct/{n}"] = correct(out.extra_task_predictions[n], truth.task)
        values["utility"] = np.asarray(truth.utility_correct, dtype=np.float64)[truth.sample]
        return values, {"task": labels_of(truth.task)}

    def statistics(self, samples) -> dict[str, Statistic]:
        task = samples["task"]
        util = mean_of(samples["utility"])
        c = float(majority_rate(task, np.arange(len(task))[None, :])[0])  # fixed, as the attribute floor

        chance = constant(c)
        stats: dict[str, Statistic] = {"unintended_chance": chance}
        for prefix, key in (("", "correct/"), ("adaptive_", "adaptive_correct/")):
            names = sorted(k[len(key):] for k in samples if k.startswith(key))
            if not names:
                continue
            mat = np.stack([np.asarray(samples[key + n], dtype=np.float64) for n in names])  # [M, n]

            def accs(draw, mat=mat):
                return draw.mean(mat)  # [M, B]

            for i, n in enumerate(names):
                stats[f"{prefix}unintended_acc/{n}"] = lambda d, i=i, accs=accs: accs(d)[i]
            best = (lambda d, accs=accs: accs(d).max(axis=0))
            stats[f"{prefix}unintended_acc_max"] = best
            stats[f"{prefix}unintended_acc_mean"] = (lambda d, accs=accs: accs(d).mean(axis=0))
            stats[f"{prefix}transfer_advantage"] = (
                lambda d, best=best: safe_ratio(best(d) - chance(d), 1.0 - chance(d)))
            stats[f"{prefix}suppression_ratio_max"] = (
                lambda d, best=best: np.where(best(d) > 0, safe_ratio(util(d), best(d)), np.inf))
            stats[f"{prefix}suppression_ratio_corrected"] = (
                lambda d, best=best: safe_ratio(util(d) - chance(d), best(d) - chance(d)))
        headline = "adaptive_transfer_advantage" if "adaptive_transfer_advantage" in stats else "transfer_advantage"
        stats["leakage_raw"] = stats[headline]
        stats["leakage"] = at_floor(stats[headline])
        return stats

    def brief(self, metrics) -> str:
        line = super().brief(metrics)
        if "unintended_acc_max" in metrics:
            best = metrics.get("adaptive_unintended_acc_max", metrics["unintended_acc_max"])
            line += f", best unintended {best:.3f} (chance {metrics['unintended_chance']:.3f})"
        return line
