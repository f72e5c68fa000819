"""Suite files: YAML (shipped in ``benchmark/suites/``) parsed and checked into a
:class:`~benchmark.suites.model.Suite`, and a suite written back as the mapping it parses from
(:func:`suite_to_raw`).

A suite names scenarios, backbones with split points, seeds, shared training settings, defenses with the knob
values to sweep, and attacks. Every key is validated strictly: a misspelled key fails with the file, the path
to the key, and the closest valid names.

Schema::

    name: quick                      # must match the file name
    description: ...
    reference: no_pruning            # the defense Δutility (and the secondary relative view) is measured against
    utility_budget: 0.02             # a knob setting is admissible if its validation utility drop is at most this
    cost_budget: {client_macs: 1.5}  # optional: also admissible only if its client costs at most 1.5x the reference's
                                     #   (client_macs, client_params or payload_bytes; as deployed where the track
                                     #   has a deployment backbone)
    admission: selection             # which setting of each defense is ranked: "selection" (its most private knob
                                     #   within the budget, the choice redone in every bootstrap replicate) or
                                     #   "preregistered" (the one setting each defense names below, admitted when
                                     #   the lower 95% bound of its validation Δutility clears the budget)
    eval_counts: {reconstruction: 32} # eval samples each attack kind is scored on (the first N of eval, the same N
                                     #   for every attack of the kind; a kind left out or null: the whole split)
    release_draws: 4                 # stochastic defenses: utility and leakage averaged over this many release draws
    bootstrap: 1000                  # bootstrap replicates of every interval on the leaderboard
    tuning: {budget: 4}              # tune attacks on the attacker's aux data first (see benchmark.suites.tuning)
    holdout: {fraction: 0.2, reconstruction: 32}  # the attacker's own hold-out: the share of aux every attack
                                     #   trains without, and how many of those images reconstruction attacks
                                     #   also answer; each attack scores itself there, and a family's
                                     #   representative is the attack that scores best there (null: no hold-out)
    aux_fraction: {fractions: [1.0, 0.25], attacks: [...]}  # the attacker-knowledge axis: the attacks (default:
                                     #   all that read aux data) also run with only this share of their aux data
                                     #   (1.0 is the main run); data-free attacks are its zero-data end
    deployment:                      # also time each track's defended client as deployed on a real backbone
      test_resnet@layer1: {name: resnet18, split: layer1, image_size: 32, batch: 8}
    seeds: [0]
    admission_seeds: [5, 6]          # optional: more seeds whose models are trained and validated but not attacked,
                                     #   for admission only (the reference and the settings admission reads)
    settle: {step: 5, up_to: 20}     # optional (preregistered rule): a preregistered setting still borderline after
                                     #   the run gets `step` more admission seeds at a time, the reference with
                                     #   it, until it is clear or has `up_to` seeds; the run records what it added
                                     #   as settled_seeds: {row: [seeds]}
    scenarios: [{name: digits, config: {...}}]      # or just [digits]
    backbones: [{name: test_resnet, split: layer1, pretrained: false}]
    train: {epochs: 10, batch_size: 64, lr: 0.001}  # TrainConfig, shared by every defense (schedule: cosine)
    defenses:
      - {name: random_pruning, knob: [0.25, 0.5], config: {...}}
      - {name: patrol, knob: [1, 2], preregistered: 1}              # or {test_resnet@layer1: 1, ...} per track
    attacks:
      - {name: attribute_inference, config: {...}}
      - {name: optimization, label: rmle_tv10, config: {...}}   # a label tells apart two configs of one attack
      - {name: optimization, label: rmle_long, backbones: [test_resnet@layer1]}  # only on these tracks (default: all)
    paper: {citation: ..., numbers: [{defense: ..., attack: ..., metric: ..., value: ..., note: ...}]}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmark.api.contract import data_free
from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.fields import build_config, to_dict
from benchmark.core.registry import ATTACKS, DEFENSES, SCENARIOS, SUITES
from benchmark.measure.metrics import check_cost_budget
from benchmark.models.backbones import BackboneSpec, check_backbone_name
from benchmark.models.trainer import TrainConfig
from benchmark.suites.model import (
    ADMISSION_RULES,
    AttackEntry,
    DefenseEntry,
    DeploymentSpec,
    Holdout,
    ScenarioEntry,
    Settle,
    Suite,
)
from benchmark.suites.tuning import parse_tuning

SUITE_KEYS = ("name", "description", "reference", "utility_budget", "cost_budget", "admission", "eval_counts",
              "release_draws", "bootstrap", "tuning", "holdout", "aux_fraction", "deployment", "seeds",
              "admission_seeds", "curve_seeds", "settle", "settled_seeds", "scenarios",
              "backbones", "train", "defenses", "attacks", "paper")
AUX_FRACTION_KEYS = ("fractions", "attacks")
EVAL_KINDS = ("attribute", "reconstruction", "transfer")
ENTRY_KEYS = {"scenarios": ("name", "config"), "backbones": ("name", "split", "pretrained"),
              "defenses": ("name", "knob", "config", "preregistered"),
              "attacks": ("name", "label", "config", "backbones")}



# -- loading ------------------------------------------------------------------------------------------------
def load_suite(name_or_path: str | Path) -> Suite:
    """Load a built-in suite by name, or a suite YAML file by path.

    The suite's ``source`` (in its errors and in every manifest a run writes) is the path as given for a file, and
    ``benchmark/suites/NAME.yaml`` for a built-in suite, whatever folder splitbench is installed in."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise SplitbenchError(f"suite file {str(p)!r} does not exist")
        path, source = p, str(p)
    else:
        path = SUITES.get(str(name_or_path))
        source = f"benchmark/suites/{Path(path).name}"
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise SplitbenchError(f"suite file {source}: not valid YAML ({exc})") from exc
    return parse_suite(raw, source)


def _check_keys(obj: Any, allowed: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise SplitbenchError(f"{where}: expected a mapping with keys {list(allowed)}, got {obj!r}")
    for k in obj:
        if k not in allowed:
            raise SplitbenchError(f"{where}: unknown key {k!r}{did_you_mean(k, allowed)} "
                                  f"(valid keys: {', '.join(allowed)})")


def _entries(raw: dict, key: str, where: str) -> list[dict]:
    items = raw.get(key)
    if not isinstance(items, list) or not items:
        raise SplitbenchError(f"{where}: {key!r} must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"name": item}
        _check_keys(item, ENTRY_KEYS[key], f"{where}: {key}[{i}]")
        if "name" not in item:
            raise SplitbenchError(f"{where}: {key}[{i}] has no 'name'")
        out.append(item)
    return out


def attack_backbones(raw: Any, backbones: Sequence[BackboneSpec], where: str) -> tuple[str, ...]:
    """An attack entry's ``backbones``: a non-empty list of the suite's track labels (``NAME@SPLIT``), or absent
    (every track)."""
    if raw is None:
        return ()
    labels = [b.label for b in backbones]
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise SplitbenchError(f"{where}.backbones must be a non-empty list of the suite's backbones as NAME@SPLIT, "
                              f"got {raw!r}")
    for x in raw:
        if x not in labels:
            raise SplitbenchError(f"{where}.backbones names {x!r}, which the suite does not run"
                                  f"{did_you_mean(x, labels)} (expected one of: {', '.join(labels)})")
    return tuple(dict.fromkeys(raw))


def defense_entries(name: str, knob_values: Any, config: dict | None, train: TrainConfig, where: str
                    ) -> list[DefenseEntry]:
    cls = DEFENSES.get(name)
    base = dict(config or {})
    if cls.knob in base and knob_values is not None:
        raise SplitbenchError(f"{where}: set the knob {cls.knob!r} with 'knob:', not in 'config:'")
    base.setdefault("train", to_dict(train))
    if isinstance(base["train"], dict):
        merged = to_dict(train)
        merged.update(base["train"])
        base["train"] = merged
    values = knob_values if isinstance(knob_values, list) else ([knob_values] if knob_values is not None else [None])
    out = []
    for v in values:
        cfg_vals = dict(base)
        if v is not None:
            cfg_vals[cls.knob] = v
        out.append(DefenseEntry(name, build_config(cls.Config, cfg_vals, f"{where}.config")))
    return out


def parse_suite(raw: Any, source: str) -> Suite:
    where = f"suite {source}"
    _check_keys(raw, SUITE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SplitbenchError(f"{where}: 'name' must be a non-empty string")
    train = build_config(TrainConfig, raw.get("train", {}), f"{where}: train")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise SplitbenchError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    scenarios = []
    for i, e in enumerate(_entries(raw, "scenarios", where)):
        cls = SCENARIOS.get(e["name"])
        scenarios.append(ScenarioEntry(e["name"], build_config(cls.Config, e.get("config", {}),
                                                               f"{where}: scenarios[{i}].config")))
    backbones = [build_config(BackboneSpec, e, f"{where}: backbones[{i}]")
                 for i, e in enumerate(_entries(raw, "backbones", where))]
    defenses: list[DefenseEntry] = []
    rows: list[str] = []  # the row each raw entry's settings belong to (all of one entry share its config)
    for i, e in enumerate(_entries(raw, "defenses", where)):
        mine = defense_entries(e["name"], e.get("knob"), e.get("config"), train, f"{where}: defenses[{i}]")
        defenses += mine
        rows.append(mine[0].row)
    attacks = []
    for i, e in enumerate(_entries(raw, "attacks", where)):
        cls = ATTACKS.get(e["name"])
        label = e.get("label", e["name"])
        if not isinstance(label, str) or not label or "/" in label:
            raise SplitbenchError(f"{where}: attacks[{i}].label must be a non-empty string without '/'")
        attacks.append(AttackEntry(e["name"], build_config(cls.Config, e.get("config", {}),
                                                           f"{where}: attacks[{i}].config"), label,
                                   attack_backbones(e.get("backbones"), backbones, f"{where}: attacks[{i}]")))
    labels = [a.label for a in attacks]
    dup_a = sorted({x for x in labels if labels.count(x) > 1})
    if dup_a:
        raise SplitbenchError(f"{where}: attack(s) {dup_a} listed more than once; give each entry a distinct "
                              "'label'")
    reference = raw.get("reference", "no_pruning")
    DEFENSES.get(reference)
    budget = raw.get("utility_budget", 0.02)
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not 0.0 <= budget <= 1.0:
        raise SplitbenchError(f"{where}: 'utility_budget' must be a number in [0, 1], got {budget!r}")
    eval_counts = parse_eval_counts(raw.get("eval_counts", {}), where)
    tuning = parse_tuning(raw.get("tuning"), attacks, where)
    draws = positive_int(raw.get("release_draws", 1), "release_draws", where)
    replicates = positive_int(raw.get("bootstrap", 1000), "bootstrap", where)
    paper = raw.get("paper", {}) or {}
    if not isinstance(paper, dict):
        raise SplitbenchError(f"{where}: 'paper' must be a mapping")
    _check_paper(paper, defenses, attacks, backbones, where)
    labels = [d.row_label for d in defenses]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise SplitbenchError(f"{where}: defense settings listed twice: {sorted(dup)} (two entries of one defense "
                              f"must differ in a variant field: {_variant_fields(defenses)})")
    deployment = parse_deployment(raw.get("deployment"), backbones, where)
    admission = raw.get("admission", "selection")
    if admission not in ADMISSION_RULES:
        raise SplitbenchError(f"{where}: 'admission' must be one of {', '.join(ADMISSION_RULES)}, got {admission!r}"
                              f"{did_you_mean(str(admission), ADMISSION_RULES)}")
    preregistered = parse_preregistered(_entries(raw, "defenses", where), backbones, where, rows)
    holdout = parse_holdout(raw.get("holdout", {}), where)
    aux_fractions = parse_aux_fraction(raw.get("aux_fraction"), attacks, where)
    suite = Suite(name, str(raw.get("description", "")), reference, float(budget), tuple(seeds), tuple(scenarios),
                  tuple(backbones), train, tuple(defenses), tuple(attacks), paper, source, eval_counts, draws,
                  replicates, tuning, raw.get("tuning"), deployment, admission, preregistered, holdout, aux_fractions,
                  check_cost_budget(raw.get("cost_budget") or {}, f"{where}: cost_budget"),
                  parse_admission_seeds(raw.get("admission_seeds", []), seeds, where),
                  parse_settle(raw.get("settle"), where))
    suite = dataclasses.replace(suite, settled_seeds=parse_settled_seeds(raw.get("settled_seeds"), suite, where),
                                curve_seeds=parse_curve_seeds(raw.get("curve_seeds"), seeds, where))
    check_admission(suite, where)
    return suite


def parse_aux_fraction(raw: Any, attacks: Sequence[AttackEntry], where: str) -> dict[str, tuple[float, ...]]:
    """``aux_fraction``: ``{fractions: [1.0, 0.25, ...], attacks: [labels]}`` (attacks: all when left out) -> attack
    label -> its fractions besides 1.0. The list must hold 1.0, the main run every view but this one reads."""
    if raw is None:
        return {}
    _check_keys(raw, AUX_FRACTION_KEYS, f"{where}: aux_fraction")
    fractions = raw.get("fractions")
    if (not isinstance(fractions, list) or not fractions
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0.0 < f <= 1.0 for f in fractions)):
        raise SplitbenchError(f"{where}: aux_fraction.fractions must be a list of numbers in (0, 1], got {fractions!r}")
    if 1.0 not in [float(f) for f in fractions] or len(set(fractions)) != len(fractions):
        raise SplitbenchError(f"{where}: aux_fraction.fractions must hold 1.0 (the main run) and no value twice, "
                              f"got {fractions!r}")
    labels = [a.label for a in attacks]
    free = {a.label for a in attacks if data_free(ATTACKS.get(a.name).requires)}
    chosen = raw.get("attacks", [n for n in labels if n not in free])
    if not isinstance(chosen, list) or not chosen:
        raise SplitbenchError(f"{where}: aux_fraction.attacks must be a non-empty list of the labels of attacks that "
                              "read aux data")
    for n in chosen:
        if n not in labels:
            raise SplitbenchError(f"{where}: aux_fraction.attacks names {n!r}, which the suite does not run"
                                  f"{did_you_mean(str(n), labels)}")
        if n in free:
            raise SplitbenchError(f"{where}: aux_fraction.attacks names {n!r}, which reads no aux data (it declares "
                                  "neither aux pairs nor clean data): it is the zero-data end of the axis already, "
                                  "the same at every share")
    rest = tuple(sorted((float(f) for f in fractions if float(f) != 1.0), reverse=True))
    return {n: rest for n in chosen} if rest else {}


def _seed_list(raw: Any, what: str) -> None:
    """A list of seeds (``admission_seeds``, ``curve_seeds``, one row of ``settled_seeds``): distinct integers, else
    one line naming ``what``."""
    if not isinstance(raw, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise SplitbenchError(f"{what} must be a list of integers, got {raw!r}")
    twice = sorted({s for s in raw if raw.count(s) > 1})
    if twice:
        raise SplitbenchError(f"{what} lists {twice} more than once")


def parse_admission_seeds(raw: Any, seeds: Sequence[int], where: str) -> tuple[int, ...]:
    """``admission_seeds``: distinct integers, none of them an attacked seed (that seed's model is validated
    already)."""
    if raw is None:
        return ()
    _seed_list(raw, f"{where}: 'admission_seeds'")
    both = sorted(set(raw) & set(seeds))
    if both:
        raise SplitbenchError(f"{where}: admission_seeds {both} are also in 'seeds' (an attacked seed's model is "
                              "validated already; expected seeds disjoint from 'seeds')")
    return tuple(raw)


def parse_curve_seeds(raw: Any, seeds: Sequence[int], where: str) -> tuple[int, ...] | None:
    """``curve_seeds``: distinct integers among ``seeds`` (an empty list runs only the settings admission reads),
    or null / absent for every seed."""
    if raw is None:
        return None
    _seed_list(raw, f"{where}: 'curve_seeds'")
    other = sorted(set(raw) - set(seeds))
    if other:
        raise SplitbenchError(f"{where}: curve_seeds {other} are not in 'seeds' {list(seeds)} (expected a subset: the "
                              "curve's other settings run at some of the attacked seeds)")
    return tuple(sorted(raw))


def parse_settle(raw: Any, where: str) -> Settle | None:
    """``settle``: ``{step, up_to}`` (defaults for a key left out), or null / absent for none."""
    if raw is None:
        return None
    rule = build_config(Settle, raw, f"{where}: settle")
    for key, least in (("step", 1), ("up_to", 2)):
        value = getattr(rule, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise SplitbenchError(f"{where}: settle.{key} must be an integer of at least {least}, got {value!r}")
    return rule


def parse_settled_seeds(raw: Any, suite: Suite, where: str) -> dict[str, tuple[int, ...]]:
    """``settled_seeds``: ``{row: [seeds]}``, what the settle rule added (written by a run, rarely by hand): rows
    that preregistered a setting, distinct integers that are neither attacked seeds nor ``admission_seeds``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SplitbenchError(f"{where}: 'settled_seeds' must be a mapping of row to a list of seeds, got {raw!r}")
    if raw and suite.admission != "preregistered":
        raise SplitbenchError(f"{where}: 'settled_seeds' are added to preregistered settings, but admission is "
                              f"{suite.admission!r}")
    out = {}
    for row, seeds in raw.items():
        at = f"{where}: settled_seeds.{row}"
        if row not in suite.preregistered:
            raise SplitbenchError(f"{at}: {row!r} preregistered no setting in this suite (expected one of "
                                  f"{', '.join(sorted(suite.preregistered)) or 'none'})")
        _seed_list(seeds, at)
        taken = sorted(set(seeds) & {*suite.seeds, *suite.admission_seeds})
        if taken:
            raise SplitbenchError(f"{at}: seeds {taken} are already attacked or admission seeds (expected seeds "
                                  "of their own)")
        out[str(row)] = tuple(sorted(seeds))
    return out


def parse_holdout(raw: Any, where: str) -> Holdout | None:
    """``holdout``: ``{fraction, reconstruction}`` (defaults for any key left out), or null for none."""
    if raw is None:
        return None
    return build_config(Holdout, raw, f"{where}: holdout")


def _variant_fields(defenses: Sequence[DefenseEntry]) -> str:
    fields = sorted({f"{d.name}.{v}" for d in defenses for v in DEFENSES.get(d.name).variants})
    return ", ".join(fields) or "none of this suite's defenses has one"


def parse_preregistered(entries: list[dict], backbones: Sequence[BackboneSpec], where: str,
                        rows: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each defense entry's ``preregistered``: one knob value for every track, or ``{backbone@split: value}``,
    keyed by the entry's row (``rows[i]``: its name, or its name and non-default variant)."""
    labels = [b.label for b in backbones]
    out: dict[str, dict[str, float]] = {}
    for i, e in enumerate(entries):
        if "preregistered" not in e:
            continue
        value, at = e["preregistered"], f"{where}: defenses[{i}].preregistered"
        per_track = value if isinstance(value, dict) else {"*": value}
        for label, v in per_track.items():
            if label != "*" and label not in labels:
                raise SplitbenchError(f"{at}: {label!r} is not a backbone of this suite"
                                      f"{did_you_mean(str(label), labels)} (expected one of: {', '.join(labels)})")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SplitbenchError(f"{at}: expected a knob value (a number) or a mapping of backbone labels to "
                                      f"knob values, got {v!r}")
        mine = {str(k): float(v) for k, v in per_track.items()}
        row = rows[i]
        if out.get(row, mine) != mine:
            raise SplitbenchError(f"{at}: defense {row!r} is preregistered twice with different settings")
        out[row] = mine
    return out


def check_admission(suite: Suite, where: str) -> None:
    """Under the preregistered rule every defense but the reference names one setting per track, and that setting
    is among those the suite runs; under another, nothing is preregistered and there is no settle rule."""
    if suite.admission != "preregistered":
        if suite.preregistered:
            raise SplitbenchError(f"{where}: 'preregistered' settings are given, but admission is {suite.admission!r}"
                                  " (set admission: preregistered, or drop them)")
        if suite.settle is not None:
            raise SplitbenchError(f"{where}: 'settle' adds seeds to borderline preregistered settings, but admission "
                                  f"is {suite.admission!r} (set admission: preregistered, or drop settle)")
        if suite.curve_seeds is not None:
            raise SplitbenchError(f"{where}: 'curve_seeds' runs the settings admission does not read at fewer seeds, "
                                  f"but admission is {suite.admission!r}, under which any setting may be ranked (set "
                                  "admission: preregistered, or drop curve_seeds)")
        return
    for name in sorted({d.row for d in suite.defenses} - {suite.reference}):
        per_track = suite.preregistered.get(name)
        run = [d for d in suite.defenses if d.row == name]
        if not per_track:
            first = run[0]
            raise SplitbenchError(f"{where}: defense {name!r} has no preregistered setting (admission: "
                                  "preregistered needs one per defense: preregistered: "
                                  f"{first.knob_value:g} in the suite file, or --set defense.{first.name}."
                                  f"preregistered={first.knob_value:g}; or --set admission=selection)")
        for label in [b.label for b in suite.backbones]:
            value = per_track.get(label, per_track.get("*"))
            if value is None:
                raise SplitbenchError(f"{where}: defense {name!r} has no preregistered setting for track {label}")
            if not any(abs(d.knob_value - value) < 1e-12 for d in run):
                raise SplitbenchError(f"{where}: the preregistered setting {name}@{value:g} is not among the settings "
                                      f"the suite runs ({', '.join(d.label for d in run)})")


def parse_deployment(raw: Any, backbones: Sequence[BackboneSpec], where: str) -> dict[str, DeploymentSpec]:
    """``deployment``: track backbone label (``name@split`` of an entry of ``backbones``) -> where its clients are
    also timed (:class:`DeploymentSpec`)."""
    if raw is None:
        return {}
    labels = [b.label for b in backbones]
    if not isinstance(raw, dict):
        raise SplitbenchError(f"{where}: 'deployment' must be a mapping of backbone labels ({', '.join(labels)}) "
                              f"to {{name, split, image_size, batch}}, got {raw!r}")
    out = {}
    for label, spec in raw.items():
        if label not in labels:
            raise SplitbenchError(f"{where}: deployment key {label!r} is not a backbone of this suite"
                                  f"{did_you_mean(str(label), labels)} (expected one of: {', '.join(labels)})")
        out[label] = build_config(DeploymentSpec, spec, f"{where}: deployment.{label}")
        check_backbone_name(out[label].name)
    return out


def positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SplitbenchError(f"{where}: {key!r} must be an integer of at least 1, got {value!r}")
    return value


def parse_eval_counts(raw: Any, where: str) -> dict[str, int | None]:
    """``eval_counts``: attack kind -> number of eval samples (positive integer) or null for the whole split."""
    if raw is None:
        return {}
    _check_keys(raw, EVAL_KINDS, f"{where}: eval_counts")
    out: dict[str, int | None] = {}
    for kind, n in raw.items():
        if n is not None:
            n = positive_int(n, f"eval_counts.{kind}", where)
        out[kind] = n
    return out


PAPER_KEYS = ("citation", "numbers")
PAPER_NUMBER_KEYS = ("defense", "attack", "metric", "value", "backbone", "knob", "note")


def _check_paper(paper: dict, defenses: list, attacks: list, backbones: list, where: str) -> None:
    """A suite's ``paper`` block: each number names a defense, attack (label), metric and value of the suite,
    optionally a backbone (``NAME@SPLIT``) and knob value, so the leaderboard can put ours beside it."""
    from benchmark.measure.metrics import HIGHER_IS_BETTER

    _check_keys(paper, PAPER_KEYS, f"{where}: paper")
    numbers = paper.get("numbers", [])
    if not isinstance(numbers, list):
        raise SplitbenchError(f"{where}: paper.numbers must be a list")
    for i, n in enumerate(numbers):
        at = f"{where}: paper.numbers[{i}]"
        _check_keys(n, PAPER_NUMBER_KEYS, at)
        for key in ("defense", "attack", "metric", "value"):
            if key not in n:
                raise SplitbenchError(f"{at}: missing {key!r}")
        if n["defense"] not in {d.name for d in defenses}:
            raise SplitbenchError(f"{at}: defense {n['defense']!r} is not run by the suite")
        if n["attack"] not in {a.label for a in attacks}:
            raise SplitbenchError(f"{at}: attack {n['attack']!r} is not run by the suite"
                                  f"{did_you_mean(n['attack'], [a.label for a in attacks])}")
        if "backbone" in n and n["backbone"] not in {b.label for b in backbones}:
            raise SplitbenchError(f"{at}: backbone {n['backbone']!r} is not run by the suite")
        if n["metric"] not in HIGHER_IS_BETTER:
            raise SplitbenchError(f"{at}: unknown metric {n['metric']!r}{did_you_mean(n['metric'], HIGHER_IS_BETTER)}")
        if isinstance(n["value"], bool) or not isinstance(n["value"], (int, float)):
            raise SplitbenchError(f"{at}: value must be a number, got {n['value']!r}")



# -- back to a mapping --------------------------------------------------------------------------------------
def suite_to_raw(suite: Suite) -> dict[str, Any]:
    """The suite as a plain mapping that :func:`parse_suite` reads back to the same suite (every config fully
    resolved, command-line overrides included): what a run's manifest stores, so any cell can be re-run later."""
    raw: dict[str, Any] = {
        "name": suite.name, "description": suite.description, "reference": suite.reference,
        "utility_budget": suite.utility_budget, "eval_counts": dict(suite.eval_counts),
        "release_draws": suite.release_draws, "bootstrap": suite.bootstrap, "seeds": list(suite.seeds),
        "scenarios": [{"name": e.name, "config": to_dict(e.config)} for e in suite.scenarios],
        "backbones": [to_dict(b) for b in suite.backbones],
        "train": to_dict(suite.train),
        "defenses": [_raw_defense(suite, i, d) for i, d in enumerate(suite.defenses)],
        "attacks": [{"name": a.name, "label": a.label, "config": to_dict(a.config),
                     **({"backbones": list(a.backbones)} if a.backbones else {})} for a in suite.attacks],
        "paper": suite.paper,
    }
    if suite.deployment:
        raw["deployment"] = {label: to_dict(d) for label, d in suite.deployment.items()}
    if suite.admission != "selection":
        raw["admission"] = suite.admission
    if suite.admission_seeds:
        raw["admission_seeds"] = list(suite.admission_seeds)
    if suite.curve_seeds is not None:
        raw["curve_seeds"] = list(suite.curve_seeds)
    if suite.settle is not None:
        raw["settle"] = to_dict(suite.settle)
    if suite.settled_seeds:
        raw["settled_seeds"] = {row: list(v) for row, v in sorted(suite.settled_seeds.items())}
    if suite.cost_budget:
        raw["cost_budget"] = dict(suite.cost_budget)
    raw["holdout"] = None if suite.holdout is None else to_dict(suite.holdout)
    if suite.aux_fractions:
        fractions = sorted({f for fs in suite.aux_fractions.values() for f in fs} | {1.0}, reverse=True)
        raw["aux_fraction"] = {"fractions": fractions, "attacks": sorted(suite.aux_fractions)}
    if suite.tuning:
        first = next(iter(suite.tuning.values()))
        raw["tuning"] = {"budget": first.budget, "select_fraction": first.select_fraction,
                         "attacks": sorted(suite.tuning),
                         "spaces": {label: t.as_dict()["space"] for label, t in suite.tuning.items()}}
    return raw


def _raw_defense(suite: Suite, i: int, d: DefenseEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.name, "config": to_dict(d.config)}
    first = next(j for j, e in enumerate(suite.defenses) if e.row == d.row)  # preregistered is keyed by row
    if i == first and d.row in suite.preregistered:
        out["preregistered"] = dict(suite.preregistered[d.row])
    return out
