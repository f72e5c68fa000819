"""Running one attack on releases the harness computed: its execution, its tuning on the attacker's own data, the
attacker's hold-out and the ground truth its answers are scored against.

The runner calls these for each cell; the tuning search (see :mod:`benchmark.suites.tuning` for its configuration) calls
:func:`execute_attack` for each candidate on the fit / select parts of the attacker's aux data, never on eval.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Any

import numpy as np
import torch

from benchmark.api.contract import AttackKind, AttackOutput, Defense, NotApplicable, Target
from benchmark.core.clock import Span, Stopwatch
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config, config_hash, to_dict
from benchmark.data.types import ScenarioData, Split
from benchmark.measure.scoring import Truth, scorer_for
from benchmark.measure.scoring.reconstruction import floor_images
from benchmark.models.trainer import Trainer
from benchmark.store.cache import ModelCache
from benchmark.suites.tuning import Tuning


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def stable_seed(*parts: Any) -> int:
    return int(config_hash(list(parts), 8), 16) % (2 ** 31)


@dataclasses.dataclass
class HeldOut:
    """A model's hold-out of the attacker's aux split: ``fit`` (what attacks train on), ``hold`` (what they also
    answer), the hold-out's releases per draw and the designated model's correctness on them."""

    fit: Split
    hold: Split
    releases: list[torch.Tensor]
    utility_correct: np.ndarray

    def rows(self, kind: AttackKind, holdout: Any, draws: int) -> tuple[torch.Tensor, np.ndarray]:
        """The hold-out releases an attack of ``kind`` answers (draw after draw) and each row's hold-out id:
        reconstruction attacks the first ``holdout.reconstruction`` images, other kinds all of them."""
        n = len(self.hold) if kind != AttackKind.RECONSTRUCTION else min(len(self.hold), holdout.reconstruction)
        rows = torch.cat([r[:n] for r in self.releases[:draws]])
        return rows, np.tile(np.arange(n), min(draws, len(self.releases)))


def make_truth(split: Split, aux: Split, sample: np.ndarray, utility_correct: np.ndarray, kind: AttackKind,
               info: Any) -> Truth:
    """Ground truth of the answered rows of ``split`` (eval, or the attacker's hold-out) for the scorer; the floor
    comes from the images the attacker trained on (``aux``)."""
    idx = torch.as_tensor(sample, device=split.images.device)
    images = split.images[idx].float() / 255.0 if kind == AttackKind.RECONSTRUCTION else None
    return Truth(sample=sample, task=split.task[idx],
                 sensitive=None if split.sensitive is None else split.sensitive[idx], images=images,
                 baseline=floor_images(aux.images, aux.task, info.num_task_classes), utility_correct=utility_correct,
                 num_task_classes=info.num_task_classes, num_sensitive_classes=info.num_sensitive_classes)


def aux_share(aux: Split, fraction: float, seed: int) -> Split:
    """The first ``fraction`` of a seeded permutation of the attacker's aux split (at least one image): a smaller
    share is a part of every larger one, so the attacker-knowledge axis only ever takes data away."""
    n = max(1, int(round(fraction * len(aux))))
    order = torch.randperm(len(aux), generator=torch.Generator().manual_seed(stable_seed(seed, "aux_fraction")))
    idx = order[:n].to(aux.images.device)
    return Split(aux.images[idx], aux.task[idx], None if aux.sensitive is None else aux.sensitive[idx], aux.info)


@torch.no_grad()
def release_error(defense: Defense, images: torch.Tensor, observed: torch.Tensor, trainer: Trainer) -> float:
    """Mean over rows of ``||release(x_hat) - z||^2 / ||z||^2``: how far the (white-box) release of a reconstruction
    is from the release the server received, relative to that release's energy."""
    errors = []
    for start in range(0, len(images), trainer.eval_batch_size):
        x = defense.info.normalize(images[start:start + trainer.eval_batch_size].float().clamp(0, 1))
        z = observed[start:start + len(x)].float()
        with trainer.autocast():
            r = defense.white_box_release(x.to(z.device), z).float()
        num = (r - z).pow(2).flatten(1).sum(1)
        errors.append((num / z.pow(2).flatten(1).sum(1).clamp_min(1e-12)).cpu())
    return float(torch.cat(errors).mean()) if errors else float("nan")


def take_rows(out: AttackOutput, keep: np.ndarray, offset: int) -> AttackOutput:
    """The rows of an attack's answer marked ``keep``, their release index shifted down by ``offset``."""
    idx = torch.as_tensor(np.nonzero(keep)[0], dtype=torch.long)

    def pick(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[idx.to(t.device)]

    def pick_all(d: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        return None if d is None else {k: pick(v) for k, v in d.items()}

    return dataclasses.replace(out, index=out.index.detach().cpu().long()[idx] - offset,
                               attributes=pick(out.attributes), images=pick(out.images),
                               task_predictions=pick_all(out.task_predictions),
                               extra_task_predictions=pick_all(out.extra_task_predictions))


def execute_attack(cls: type, config: Any, seed: int, defense: Defense, data: ScenarioData, releases: torch.Tensor,
                   backbone: Any, trainer: Trainer, cache: ModelCache | None = None
                   ) -> tuple[AttackOutput | None, str | None, Span]:
    """Run one attack on releases the harness computed; return (output, None, the run's time on both clocks) or
    (None, reason, zero time) when it does not apply. Reads only ``data.aux`` and ``data.info``: never the eval
    images or labels, nor the defender's train or validation split (the contract tests booby-trap them)."""
    attack = cls(config, seed)
    target = Target(defense, cls.requires, trainer, releases, data.aux, data.info, backbone, cache=cache, seed=seed)
    reason = attack.applicable(target)
    if reason:
        return None, reason, Span(0.0, 0.0)
    seed_all(stable_seed(seed, cls.name, "attack"))
    watch = Stopwatch()
    try:
        output = attack.run(target, trainer)
    except NotApplicable as exc:
        return None, str(exc), Span(0.0, 0.0)
    return output, None, watch.read()



def candidates(cls: type, base: Any, tuning: Tuning, seed: int) -> list[Any]:
    """The configured config first, then up to ``budget - 1`` distinct others from the grid (seeded sample)."""
    keys = sorted(tuning.space)
    base_vals = to_dict(base)
    grid = []
    for combo in itertools.product(*(tuning.space[k] for k in keys)):
        vals = {**base_vals, **dict(zip(keys, combo))}
        if vals != base_vals and vals not in grid:
            grid.append(vals)
    rng = random.Random(seed)
    extra = grid if len(grid) <= tuning.budget - 1 else rng.sample(grid, tuning.budget - 1)
    return [base] + [build_config(cls.Config, v, f"tuning {cls.name}") for v in extra]


def split_aux(aux: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(fit, select) parts of the attacker's aux split, seeded."""
    n = len(aux)
    n_sel = min(n - 1, max(1, int(round(n * fraction))))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(aux.images.device)

    def part(idx: torch.Tensor) -> Split:
        return Split(aux.images[idx], aux.task[idx], None if aux.sensitive is None else aux.sensitive[idx], aux.info)

    return part(order[n_sel:]), part(order[:n_sel])


def tune(cls: type, base: Any, tuning: Tuning, seed: int, defense: Defense, data: ScenarioData, backbone: Any,
         trainer: Any, cache: Any, limit: int | None) -> tuple[Any, dict[str, Any]]:
    """Try the candidates on (fit, select) parts of aux; return the chosen config and the tuning report.

    ``limit`` caps the select images an attack answers (the suite's eval count of its kind), so that tuning a
    white-box attack costs each candidate no more than its run on eval.
    """
    watch = Stopwatch()
    fit, select = split_aux(data.aux, tuning.select_fraction, seed)
    if limit is not None:
        select = select.subset(limit)
    torch.manual_seed(seed)
    with torch.no_grad():
        releases = trainer.map(lambda b: defense.release(b.x), select)
        hits = trainer.map(lambda b: (defense.predict(defense.release(b.x)).float().argmax(1) == b.y).float(), select)
    n = len(select)
    kind = cls.kind
    truth = Truth(sample=np.arange(n), task=select.task,
                  sensitive=select.sensitive,
                  images=select.images.float() / 255.0 if kind == AttackKind.RECONSTRUCTION else None,
                  baseline=floor_images(fit.images, fit.task, data.info.num_task_classes),
                  utility_correct=hits.cpu().numpy(), num_task_classes=data.info.num_task_classes,
                  num_sensitive_classes=data.info.num_sensitive_classes)
    fit_data = dataclasses.replace(data, aux=fit)
    tried = []
    best, best_score = base, -math.inf
    for cfg in candidates(cls, base, tuning, seed):
        out, reason, _ = execute_attack(cls, cfg, seed, defense, fit_data, releases, backbone, trainer, cache)
        if out is None:
            raise SplitbenchError(f"tuning {cls.name}: the attack does not apply on the select part ({reason})")
        metrics, _ = scorer_for(kind).score(out, _answered(truth, out))
        score = metrics["leakage_raw"]  # signed: candidates below the floor still differ
        tried.append({"config": to_dict(cfg), "selection_score": score})
        if not math.isnan(score) and score > best_score:
            best, best_score = cfg, score
    spent = watch.read()
    report = {**tuning.as_dict(), "fit_samples": len(fit), "select_samples": n, "tried": tried,
              "chosen": to_dict(best), "selection_score": best_score if best_score > -math.inf else float("nan"),
              "seconds": spent.wall, "cpu_seconds": spent.cpu}
    return best, report


def _answered(truth: Any, out: Any) -> Any:
    rows = out.index.detach().cpu().long().numpy()
    return dataclasses.replace(truth, sample=truth.sample[rows],
                               task=truth.task[torch.as_tensor(rows, device=truth.task.device)],
                               sensitive=None if truth.sensitive is None else
                               truth.sensitive[torch.as_tensor(rows, device=truth.sensitive.device)],
                               images=None if truth.images is None else
                               truth.images[torch.as_tensor(rows, device=truth.images.device)])
