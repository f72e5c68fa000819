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

This module is the configuration (the suite block, checked when the suite is parsed); the search itself runs in
:mod:`benchmark.engine.attacking`.

Suite block::

    tuning:
      budget: 4                 # configurations tried per cell, the configured one included (>= 1)
      select_fraction: 0.3      # share of aux held out to select on
      attacks: [inversion_decoder, optimization]   # labels or names; omitted = every attack of the suite
      spaces: {optimization: {lr: [0.02, 0.05, 0.1]}}  # replaces an attack's declared space (optional)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.fields import build_config, config_fields

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
    from benchmark.core.registry import ATTACKS

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
