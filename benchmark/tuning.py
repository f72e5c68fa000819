"""Attacks tuned on the attacker's own data, never on eval.

Every attack declares a small search space (``Attack.search_space``: config field -> candidate values). When a
suite asks for tuning, the runner splits the attacker's aux data into a *fit* part and a *select* part (seeded),
runs each candidate configuration with the fit part as its aux data against the releases of the select part,
scores it with the attack kind's own scorer against the select part's ground truth (which the attacker holds:
they are its own images and labels), keeps the configuration that leaks most, and only then runs it once on eval.
White-box attacks are tuned the same way: they invert the releases of the attacker's own select images.

The candidates are the suite's configured one plus up to ``budget - 1`` others from the grid (all of them when the
grid is that small, else a seeded random sample), so tuning can only make an attack stronger on the attacker's
data than its configured setting. Everything is recorded: the space, the budget, every candidate's selection
score, the chosen configuration.

Suite block::

    tuning:
      budget: 4                 # configurations tried per cell, the configured one included (>= 1)
      select_fraction: 0.3      # share of aux held out to select on
      attacks: [inversion_decoder, optimization]   # labels or names; omitted = every attack of the suite
      spaces: {optimization: {lr: [0.02, 0.05, 0.1]}}  # replaces an attack's declared space (optional)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import time
from typing import Any

import numpy as np
import torch

from .config import build_config, config_fields, to_dict
from .data import ScenarioData, Split
from .errors import SplitbenchError, did_you_mean
from .interfaces import AttackKind, Defense

TUNING_KEYS = ("budget", "select_fraction", "attacks", "spaces")


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How one attack of a suite is tuned: its search space, the number of configurations, the select share."""

    space: dict[str, tuple[Any, ...]]
    budget: int
    select_fraction: float = 0.3

    def as_dict(self) -> dict[str, Any]:
        return {"space": {k: list(v) for k, v in sorted(self.space.items())}, "budget": self.budget,
                "select_fraction": self.select_fraction}


def check_space(cls: type, space: Any, where: str) -> dict[str, tuple[Any, ...]]:
    """A search space of attack ``cls``: every field must be a config field with a non-empty list of valid values."""
    if not isinstance(space, dict) or not space:
        raise SplitbenchError(f"{where}: attack {cls.name!r} has no search space (expected a mapping of config "
                              "fields to lists of values)")
    fields = config_fields(cls.Config)
    out = {}
    for key, values in space.items():
        if key not in fields:
            raise SplitbenchError(f"{where}: attack {cls.name!r} has no config field {key!r} to search"
                                  f"{did_you_mean(key, fields)} (fields: {', '.join(fields)})")
        if not isinstance(values, (list, tuple)) or not values:
            raise SplitbenchError(f"{where}: attack {cls.name!r} field {key!r}: the search range must be a non-empty "
                                  f"list, got {values!r}")
        for v in values:
            build_config(cls.Config, {key: v}, f"{where}: {cls.name}.{key}")
        out[key] = tuple(values)
    return out


def parse_tuning(raw: Any, attacks: list, where: str) -> dict[str, Tuning]:
    """The suite's ``tuning`` block -> {attack label: Tuning} for the attacks it tunes."""
    from .registry import ATTACKS

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SplitbenchError(f"{where}: 'tuning' must be a mapping with keys {list(TUNING_KEYS)}")
    for k in raw:
        if k not in TUNING_KEYS:
            raise SplitbenchError(f"{where}: tuning: unknown key {k!r}{did_you_mean(k, TUNING_KEYS)} "
                                  f"(valid keys: {', '.join(TUNING_KEYS)})")
    budget = raw.get("budget")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SplitbenchError(f"{where}: tuning.budget must be an integer of at least 1 (configurations tried per "
                              f"cell), got {budget!r}")
    frac = raw.get("select_fraction", 0.3)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
        raise SplitbenchError(f"{where}: tuning.select_fraction must be a number in (0, 1), got {frac!r}")
    labels = {a.label: a for a in attacks}
    names = raw.get("attacks")
    if names is None:
        chosen = list(attacks)
    else:
        if not isinstance(names, list) or not names:
            raise SplitbenchError(f"{where}: tuning.attacks must be a non-empty list of attack labels")
        chosen = []
        for n in names:
            match = [a for a in attacks if n in (a.label, a.name)]
            if not match:
                raise SplitbenchError(f"{where}: tuning.attacks names {n!r}, which the suite does not run"
                                      f"{did_you_mean(n, labels)}")
            chosen += [a for a in match if a not in chosen]
    spaces = raw.get("spaces") or {}
    if not isinstance(spaces, dict):
        raise SplitbenchError(f"{where}: tuning.spaces must map attack labels to search spaces")
    for n in spaces:
        if not any(n in (a.label, a.name) for a in attacks):
            raise SplitbenchError(f"{where}: tuning.spaces names {n!r}, which the suite does not run")
    out = {}
    for a in chosen:
        cls = ATTACKS.get(a.name)
        space = spaces.get(a.label, spaces.get(a.name, cls.search_space))
        if names is None and not space:
            continue  # tuning every attack: those that declare no space run as configured
        out[a.label] = Tuning(check_space(cls, space, f"{where}: tuning"), budget, float(frac))
    return out


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
    from .runner import execute_attack
    from .scoring import Truth, scorer_for
    from .scoring.reconstruction import floor_images

    t0 = time.perf_counter()
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
    report = {**tuning.as_dict(), "fit_samples": len(fit), "select_samples": n, "tried": tried,
              "chosen": to_dict(best), "selection_score": best_score if best_score > -math.inf else float("nan"),
              "seconds": time.perf_counter() - t0}
    return best, report


def _answered(truth: Any, out: Any) -> Any:
    rows = out.index.detach().cpu().long().numpy()
    return dataclasses.replace(truth, sample=truth.sample[rows],
                               task=truth.task[torch.as_tensor(rows, device=truth.task.device)],
                               sensitive=None if truth.sensitive is None else
                               truth.sensitive[torch.as_tensor(rows, device=truth.sensitive.device)],
                               images=None if truth.images is None else
                               truth.images[torch.as_tensor(rows, device=truth.images.device)])
