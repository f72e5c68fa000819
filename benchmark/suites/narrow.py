"""A suite narrowed or overridden from the command line: the scenarios, backbones, defenses, attacks and seeds
chosen (:func:`restrict`) and ``--set`` overrides (:func:`apply_overrides`). What comes out is a valid suite in its
own right."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config, to_dict
from benchmark.core.registry import ATTACKS, DEFENSES, SCENARIOS
from benchmark.models.backbones import BackboneSpec
from benchmark.models.trainer import TrainConfig
from benchmark.suites.model import ADMISSION_RULES, AttackEntry, DefenseEntry, Holdout, ScenarioEntry, Suite
from benchmark.suites.parse import (
    check_admission,
    defense_entries,
    parse_admission_seeds,
    parse_curve_seeds,
    parse_eval_counts,
    parse_settle,
    parse_settled_seeds,
    positive_int,
)
from benchmark.suites.tuning import parse_tuning


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    out = []
    for v in values:
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out or None


def restrict(suite: Suite, scenarios: Sequence[str] | None = None, backbones: Sequence[str] | None = None,
             defenses: Sequence[str] | None = None, attacks: Sequence[str] | None = None,
             seeds: Sequence[int] | None = None, scenario_args: dict[str, Any] | None = None,
             overrides: dict[str, Any] | None = None) -> Suite:
    """Narrow (or override) a suite from the command line.

    - scenarios / defenses / attacks: keep the suite's entries with these names (attacks: or labels); a name
      the suite lacks is
      added with its default config (defenses at their default knob value).
    - backbones: ``NAME@SPLIT`` or ``NAME``; a bare name keeps the suite's entries of that name, or else uses
      the model's split point matching the suite's first split, or its second feature stage.
    - seeds: replace the suite's seeds (an admission seed named here becomes an attacked seed; the other
      admission seeds stay: ``--set admission_seeds=[]`` drops them; ``curve_seeds`` keeps those still attacked).
    - scenario_args: config fields applied to every selected scenario (``--scenario-arg key=value``).
    - overrides: ``{"train.KEY": v, "defense.NAME.KEY": v, "attack.NAME_OR_LABEL.KEY": v}`` (``--set``),
      applied after selection; ``train.KEY`` applies to every defense's shared training settings;
      ``defense.NAME.knob`` (a value or a list) replaces the knob settings NAME runs and
      ``defense.NAME.preregistered`` names the one admission judges, as the suite file's keys of those names do
      (so a defense added with ``--defense`` can be run and preregistered on an official track); the suite-level
      ``eval_counts.KIND``, ``tuning.KEY`` (e.g. ``tuning.budget=4`` tunes every attack that declares a search
      space), ``release_draws``, ``bootstrap``, ``utility_budget``, ``admission_seeds`` and ``curve_seeds`` may be
      set too.
    """
    changes: dict[str, Any] = {}
    names = _split_names(scenarios)
    if names or scenario_args:
        chosen = []
        for n in names or [s.name for s in suite.scenarios]:
            existing = [s for s in suite.scenarios if s.name == n]
            cls = SCENARIOS.get(n)
            base = to_dict(existing[0].config) if existing else {}
            base.update(scenario_args or {})
            chosen.append(ScenarioEntry(n, build_config(cls.Config, base, f"scenario {n!r} (--scenario-arg)")))
        changes["scenarios"] = tuple(chosen)
    names = _split_names(backbones)
    if names:
        from benchmark.models.backbones import check_backbone_name, create_model, split_points

        chosen_b: list[BackboneSpec] = []
        for n in names:
            name, _, split = n.partition("@")
            check_backbone_name(name)
            if split:
                chosen_b.append(BackboneSpec(name, split))
                continue
            same = [b for b in suite.backbones if b.name == name]
            if same:
                chosen_b += same
                continue
            points = split_points(create_model(name, 2, 32))
            pref = suite.backbones[0].split
            chosen_b.append(BackboneSpec(name, pref if pref in points else points[min(1, len(points) - 1)]))
        changes["backbones"] = tuple(chosen_b)
    names = _split_names(defenses)
    if names:
        chosen_d: list[DefenseEntry] = []
        for n in names:
            DEFENSES.get(n)
            same = [d for d in suite.defenses if d.name == n]
            chosen_d += same or defense_entries(n, None, None, suite.train, f"--defense {n}")
        changes["defenses"] = tuple(chosen_d)
    names = _split_names(attacks)
    if names:
        chosen_a: list[AttackEntry] = []
        for n in names:
            same = [a for a in suite.attacks if n in (a.name, a.label)]
            if not same:
                cls = ATTACKS.get(n)
                same = [AttackEntry(n, build_config(cls.Config, {}, f"--attack {n}"))]
            chosen_a += [a for a in same if a not in chosen_a]
        changes["attacks"] = tuple(chosen_a)
    if seeds:
        changes["seeds"] = tuple(int(s) for s in seeds)
        changes["admission_seeds"] = tuple(s for s in suite.admission_seeds if s not in changes["seeds"])
        if suite.curve_seeds is not None:
            changes["curve_seeds"] = tuple(s for s in suite.curve_seeds if s in changes["seeds"])
    out = _drop_dangling(dataclasses.replace(suite, **changes))
    if overrides:
        return apply_overrides(out, overrides)
    check_admission(out, f"suite {suite.name} (narrowed from the command line)")
    return out


def _drop_dangling(suite: Suite) -> Suite:
    """The suite without what names a backbone, defense or attack it no longer runs after narrowing: attacks' limits
    to backbones it no longer runs (an attack none of whose backbones is left is dropped), deployment entries of
    other backbones, paper numbers of other cells, tuning of other attacks. A narrowed suite is then a valid suite
    in its own right, which :func:`~benchmark.suites.parse.parse_suite` reads back from
    :func:`~benchmark.suites.parse.suite_to_raw` (as every worker process and a manifest's re-run do) instead of
    rejecting what this process accepted."""
    backbones = {b.label for b in suite.backbones}
    kept = tuple(a if all(b in backbones for b in a.backbones)
                 else dataclasses.replace(a, backbones=tuple(b for b in a.backbones if b in backbones))
                 for a in suite.attacks)
    kept = tuple(a for a, was in zip(kept, suite.attacks) if a.backbones or not was.backbones)  # none of its tracks
    if kept != suite.attacks:
        suite = dataclasses.replace(suite, attacks=kept)
    defenses = {d.name for d in suite.defenses}
    labels = {a.label for a in suite.attacks}
    runs = labels | {a.name for a in suite.attacks}  # tuning names an attack by label or name
    changes: dict[str, Any] = {}
    if any(label not in backbones for label in suite.deployment):
        changes["deployment"] = {k: v for k, v in suite.deployment.items() if k in backbones}
    if any(label not in labels for label in suite.aux_fractions):
        changes["aux_fractions"] = {k: v for k, v in suite.aux_fractions.items() if k in labels}
    rows = {d.row for d in suite.defenses}
    prereg = {d: {k: v for k, v in per.items() if k == "*" or k in backbones}
              for d, per in suite.preregistered.items() if d in rows}
    if prereg != suite.preregistered:
        changes["preregistered"] = prereg
    taken = {*suite.seeds, *suite.admission_seeds}
    settled = {r: kept_seeds for r, v in suite.settled_seeds.items()
               if r in prereg and (kept_seeds := tuple(x for x in v if x not in taken))}
    if settled != suite.settled_seeds:
        changes["settled_seeds"] = settled
    numbers = suite.paper.get("numbers")
    if numbers:
        kept = [n for n in numbers if n["defense"] in defenses and n["attack"] in labels
                and ("backbone" not in n or n["backbone"] in backbones)]
        if len(kept) < len(numbers):
            changes["paper"] = {**suite.paper, "numbers": kept}
    if any(label not in labels for label in suite.tuning):
        changes["tuning"] = {k: t for k, t in suite.tuning.items() if k in labels}
    raw = suite.tuning_raw
    if raw:
        raw = dict(raw)
        if isinstance(raw.get("spaces"), dict):
            raw["spaces"] = {k: v for k, v in raw["spaces"].items() if k in runs}
        if isinstance(raw.get("attacks"), list):
            raw["attacks"] = [n for n in raw["attacks"] if n in runs]
            if not raw["attacks"]:
                raw = None  # it tuned none of the attacks left: the narrowed suite tunes nothing
        if raw != suite.tuning_raw:
            changes["tuning_raw"] = raw
    return dataclasses.replace(suite, **changes) if changes else suite


def _knob_values(name: str, value: Any, one: bool = False) -> list[float]:
    """``--set defense.NAME.knob=V`` or ``=[V1, V2]`` (``preregistered``: one value): numbers of a defense that has
    a knob."""
    cls = DEFENSES.get(name)
    key = "preregistered" if one else "knob"
    if not cls.knob:
        raise SplitbenchError(f"--set defense.{name}.{key}: {name} has no knob")
    values = value if isinstance(value, list) and not one else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        wanted = "a number" if one else "a number or a list of numbers, e.g. [0.5, 1]"
        raise SplitbenchError(f"--set defense.{name}.{key}={value!r}: expected {wanted} (values of {cls.knob})")
    return [float(v) for v in values]


def apply_overrides(suite: Suite, overrides: dict[str, Any]) -> Suite:
    """Apply ``--set`` overrides (see :func:`restrict`); every key is validated."""
    train_over: dict[str, Any] = {}
    per_defense: dict[str, dict[str, Any]] = {}
    grids: dict[str, list[float]] = {}  # defense.NAME.knob: the knob values to run, replacing the suite's
    prereg_over: dict[str, float] = {}  # defense.NAME.preregistered: the one setting admission judges
    per_attack: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    settled_raw: Any = None
    counts = dict(suite.eval_counts)
    where = f"suite {suite.name} (--set)"
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "eval_counts" and len(parts) == 2:
            counts.update(parse_eval_counts({parts[1]: value}, where))
        elif parts[0] == "tuning" and len(parts) == 2:
            top.setdefault("tuning_raw", dict(suite.tuning_raw or {}))[parts[1]] = value
        elif parts[0] == "holdout" and len(parts) == 2:
            base = to_dict(suite.holdout) if suite.holdout is not None else {}
            current = top.get("holdout")
            base.update(to_dict(current) if current is not None else {})
            top["holdout"] = build_config(Holdout, {**base, parts[1]: value}, "--set holdout")
        elif key == "holdout" and value is None:
            top["holdout"] = None
        elif key == "admission":
            if value not in ADMISSION_RULES:
                raise SplitbenchError(f"--set admission={value!r}: expected one of {', '.join(ADMISSION_RULES)}")
            top[key] = value
            if value == "selection":
                top["preregistered"] = {}
                top["settled_seeds"] = {}  # they were added to preregistered settings
                top["curve_seeds"] = None  # any setting may now be ranked: every setting runs every seed
        elif key == "admission_seeds":
            top[key] = parse_admission_seeds(value, suite.seeds, where)
        elif key == "curve_seeds":
            top[key] = parse_curve_seeds(value, suite.seeds, where)
        elif key == "settle":
            top[key] = parse_settle(value, where)
        elif key == "settled_seeds":
            settled_raw = value
        elif key in ("release_draws", "bootstrap"):
            top[key] = positive_int(value, key, where)
        elif key == "utility_budget":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SplitbenchError(f"--set utility_budget={value!r}: expected a number in [0, 1]")
            top[key] = float(value)
        elif parts[0] == "train" and len(parts) == 2:
            train_over[parts[1]] = value
        elif parts[0] == "defense" and len(parts) == 3 and parts[2] == "knob":
            grids[parts[1]] = _knob_values(parts[1], value)
        elif parts[0] == "defense" and len(parts) == 3 and parts[2] == "preregistered":
            prereg_over[parts[1]] = _knob_values(parts[1], value, one=True)[0]
        elif parts[0] == "defense" and len(parts) == 3:
            DEFENSES.get(parts[1])
            per_defense.setdefault(parts[1], {})[parts[2]] = value
        elif parts[0] == "attack" and len(parts) == 3:
            if parts[1] not in {a.label for a in suite.attacks}:
                ATTACKS.get(parts[1])
            per_attack.setdefault(parts[1], {})[parts[2]] = value
        else:
            raise SplitbenchError(f"--set {key}: expected train.KEY, defense.NAME.KEY, attack.NAME.KEY, "
                                  "eval_counts.KIND, tuning.KEY, holdout.KEY, release_draws, bootstrap, "
                                  "utility_budget, admission, admission_seeds, curve_seeds, settle or settled_seeds")
    train = build_config(TrainConfig, {**to_dict(suite.train), **train_over}, "--set train")
    defenses = []
    for d in suite.defenses:
        cls = DEFENSES.get(d.name)
        vals = to_dict(d.config)
        vals["train"] = {**vals["train"], **train_over}
        vals.update(per_defense.get(d.name, {}))
        if d.name not in grids:
            defenses.append(DefenseEntry(d.name, build_config(cls.Config, vals, f"--set defense.{d.name}")))
        else:  # the grid replaces every setting the suite gave the row (each variant of the defense keeps its own)
            where_knob = f"--set defense.{d.name}.knob"
            grid = [DefenseEntry(d.name, build_config(cls.Config, {**vals, cls.knob: v}, where_knob))
                    for v in grids[d.name]]
            if not any(e.row == grid[0].row for e in defenses):
                defenses += grid
    rows = {e.row for e in defenses}
    prereg = {**top.get("preregistered", suite.preregistered),
              **{e.row: {"*": prereg_over[e.name]} for e in defenses if e.name in prereg_over}}
    # --set defense.NAME.preregistered names every row of NAME the suite runs; a variant no longer run (its
    # variant field overridden) leaves its preregistration behind: the row run now needs its own
    prereg = {row: per for row, per in prereg.items() if row in rows}
    if prereg != suite.preregistered:
        top["preregistered"] = prereg
    attacks = []
    for a in suite.attacks:
        cls = ATTACKS.get(a.name)
        values = {**to_dict(a.config), **per_attack.get(a.name, {}), **per_attack.get(a.label, {})}
        attacks.append(dataclasses.replace(a, config=build_config(cls.Config, values, f"--set attack.{a.label}")))
    unused = (set(per_defense) | set(grids) | set(prereg_over)) - {d.name for d in suite.defenses} | (
        set(per_attack) - {a.name for a in suite.attacks} - {a.label for a in suite.attacks})
    if unused:
        raise SplitbenchError(f"--set names {sorted(unused)}, which the selected suite does not run")
    if "tuning_raw" in top:
        top["tuning"] = parse_tuning(top["tuning_raw"], attacks, where)
    out = dataclasses.replace(suite, train=train, defenses=tuple(defenses), attacks=tuple(attacks),
                              eval_counts=counts, **top)
    if settled_raw is not None:
        out = dataclasses.replace(out, settled_seeds=parse_settled_seeds(settled_raw, out, where))
    check_admission(out, where)  # e.g. an overridden knob that leaves a preregistered setting unrun
    return out
