"""Suites: YAML files (shipped in ``benchmark/suites/``) that expand to cells.

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
                                     #   all) also run with only this share of their aux data (1.0 is the main run)
    deployment:                      # also time each track's defended client as deployed on a real backbone
      test_resnet@layer1: {name: resnet18, split: layer1, image_size: 32, batch: 8}
    seeds: [0]
    scenarios: [{name: digits, config: {...}}]      # or just [digits]
    backbones: [{name: test_resnet, split: layer1, pretrained: false}]
    train: {epochs: 10, batch_size: 64, lr: 0.001}  # TrainConfig, shared by every defense
    defenses:
      - {name: random_pruning, knob: [0.25, 0.5], config: {...}}
      - {name: patrol, knob: [1, 2], preregistered: 1}              # or {test_resnet@layer1: 1, ...} per track
    attacks:
      - {name: attribute_inference, config: {...}}
      - {name: optimization, label: rmle_tv10, config: {...}}   # a label tells apart two configs of one attack
    paper: {citation: ..., numbers: [{defense: ..., attack: ..., metric: ..., value: ..., note: ...}]}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.fields import build_config, config_hash, field, to_dict
from benchmark.core.registry import ATTACKS, DEFENSES, SCENARIOS, SUITES
from benchmark.measure.metrics import check_cost_budget
from benchmark.models.backbones import BackboneSpec, check_backbone_name
from benchmark.models.trainer import TrainConfig
from benchmark.suites.tuning import Tuning, parse_tuning

SUITE_KEYS = ("name", "description", "reference", "utility_budget", "cost_budget", "admission", "eval_counts",
              "release_draws", "bootstrap", "tuning", "holdout", "aux_fraction", "deployment", "seeds", "scenarios",
              "backbones", "train", "defenses", "attacks", "paper")
AUX_FRACTION_KEYS = ("fractions", "attacks")
ADMISSION_RULES = ("selection", "preregistered")
EVAL_KINDS = ("attribute", "reconstruction", "transfer")
ENTRY_KEYS = {"scenarios": ("name", "config"), "backbones": ("name", "split", "pretrained"),
              "defenses": ("name", "knob", "config", "preregistered"), "attacks": ("name", "label", "config")}


@dataclasses.dataclass(frozen=True)
class ScenarioEntry:
    name: str
    config: Any

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "config": to_dict(self.config)}


@dataclasses.dataclass(frozen=True)
class DefenseEntry:
    name: str
    config: Any  # resolved Config with the knob value set

    @property
    def knob(self) -> str:
        return DEFENSES.get(self.name).knob

    @property
    def knob_value(self) -> float:
        return float(getattr(self.config, self.knob))

    @property
    def label(self) -> str:
        return f"{self.name}@{self.knob_value:g}"


@dataclasses.dataclass(frozen=True)
class AttackEntry:
    """An attack with its config; ``label`` tells apart several configs of one attack (default: the name)."""

    name: str
    config: Any
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    """Where a track's defended client is also timed: the same defense deployed on a real backbone (cost only).

    The model a track trains is small (e.g. ``test_resnet``) so that the suite runs in minutes; its latency says
    little about a deployed client. With a ``deployment`` entry for the track, every model's cost also holds the
    client of the same defense, knob and config built on ``name@split`` at ``image_size`` px, with the
    architecture changes its fit made carried over by the rule the fit follows
    (:meth:`~benchmark.api.contract.Defense.deployed_on`), timed at batch 1 and ``batch`` on the run's device.
    """

    name: str = field("resnet18", "the real timm backbone the client is deployed on")
    split: str = field("layer1", "its split point (a feature stage, as in ``backbones``)")
    image_size: int = field(224, "side of the images the deployed client is timed on, in pixels")
    batch: int = field(8, "the larger batch the deployed client is timed at (besides batch 1)")

    def validate(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")

    @property
    def backbone(self) -> BackboneSpec:
        return BackboneSpec(self.name, self.split)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.split} at {self.image_size} px"


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The attacker's own hold-out: a seeded share of aux that every attack of a model trains without and answers
    besides the eval releases, so that the harness can score each attack where the attacker could score it itself.
    A family's representative on the leaderboard is the attack that leaks most there, never the one that leaks
    most on eval (a maximum over eval would be chosen by looking at eval, and biased upward)."""

    fraction: float = field(0.2, "share of the aux split held out from every attack (the same images for every "
                                 "attack of a model)")
    reconstruction: int = field(32, "how many of the held-out images reconstruction attacks also answer (the "
                                    "optimisation attacks invert them too, so this costs time)")

    def validate(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
        if self.reconstruction < 1:
            raise ValueError(f"reconstruction must be at least 1, got {self.reconstruction}")


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    reference: str
    utility_budget: float
    seeds: tuple[int, ...]
    scenarios: tuple[ScenarioEntry, ...]
    backbones: tuple[BackboneSpec, ...]
    train: TrainConfig
    defenses: tuple[DefenseEntry, ...]
    attacks: tuple[AttackEntry, ...]
    paper: dict[str, Any]
    source: str = ""
    eval_counts: dict[str, int | None] = dataclasses.field(default_factory=dict)
    release_draws: int = 1
    bootstrap: int = 1000
    tuning: dict[str, Tuning] = dataclasses.field(default_factory=dict)  # attack label -> how it is tuned
    tuning_raw: dict[str, Any] | None = None  # the suite's tuning block as written
    deployment: dict[str, DeploymentSpec] = dataclasses.field(default_factory=dict)  # track backbone label -> spec
    admission: str = "selection"  # one of ADMISSION_RULES
    #: defense -> {track backbone label, or "*" for every track: the knob value it preregistered}
    preregistered: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    holdout: Holdout | None = Holdout()  # the attacker's hold-out (None: attacks train on all of aux, no hold-out)
    #: attack label -> the shares of aux it also runs with, besides 1.0 (the attacker-knowledge axis)
    aux_fractions: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    #: cost -> the largest ratio to the reference's client cost that is admitted (empty: no cost budget)
    cost_budget: dict[str, float] = dataclasses.field(default_factory=dict)

    def eval_count(self, kind: str) -> int | None:
        """Eval samples attacks of ``kind`` are scored on (None = the whole eval split)."""
        return self.eval_counts.get(kind)

    def presentation(self) -> dict[str, Any]:
        """Settings that change how records combine, not what a cell computes (kept out of cell hashes). Under the
        preregistered rule they include each preregistered setting and one hash of their full configs, so an
        entry records what was preregistered."""
        out: dict[str, Any] = {"reference": self.reference, "utility_budget": self.utility_budget,
                               "bootstrap": self.bootstrap}
        if self.cost_budget:
            out["cost_budget"] = dict(sorted(self.cost_budget.items()))
        if self.admission != "selection":
            out["admission"] = self.admission
            out["preregistered"] = {d: dict(v) for d, v in sorted(self.preregistered.items())}
            out["preregistered_hash"] = config_hash(self.preregistered_settings(), 16)
        return out

    def preregistered_settings(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(defense, track label or "*", full config) of every preregistered setting."""
        out = []
        for name, per_track in sorted(self.preregistered.items()):
            for label, value in sorted(per_track.items()):
                entry = next(d for d in self.defenses if d.name == name and abs(d.knob_value - value) < 1e-12)
                out.append((name, label, to_dict(entry.config)))
        return out


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained defended model (one per scenario, backbone, defense, seed)."""

    suite: str
    scenario: ScenarioEntry
    backbone: BackboneSpec
    defense: DefenseEntry
    seed: int

    def as_dict(self) -> dict[str, Any]:
        cls = DEFENSES.get(self.defense.name)
        return {
            "scenario": self.scenario.spec,
            "backbone": to_dict(self.backbone),
            "defense": {"name": self.defense.name, "version": cls.version, "knob": cls.knob,
                        "knob_value": self.defense.knob_value, "more_private": cls.knob_more_private,
                        "white_box_client": cls.white_box_client, "stochastic": cls.stochastic_release,
                        "config": to_dict(self.defense.config)},
            "seed": self.seed,
        }


@dataclasses.dataclass(frozen=True)
class Cell:
    """One attack on one trained model, scored on ``eval_count`` eval samples (None = all) in ``draws`` release
    draws (1 unless the defense's release is stochastic)."""

    model: ModelSpec
    attack: AttackEntry
    eval_count: int | None = None
    draws: int = 1
    tuning: Tuning | None = None
    holdout: Holdout | None = None
    aux_fraction: float = 1.0  # the share of its aux data the attack trains with (1.0: all of it)

    def config(self) -> dict[str, Any]:
        cls = ATTACKS.get(self.attack.name)
        d = self.model.as_dict()
        d["attack"] = {"name": self.attack.name, "label": self.attack.label, "version": cls.version,
                       "kind": cls.kind.value, "requires": sorted(a.value for a in cls.requires),
                       "config": to_dict(self.attack.config)}
        d["eval"] = {"count": self.eval_count, "draws": self.draws}
        if self.holdout is not None:
            d["eval"]["holdout"] = to_dict(self.holdout)
        if self.aux_fraction != 1.0:
            d["eval"]["aux_fraction"] = self.aux_fraction
        if self.tuning is not None:
            d["attack"]["tuning"] = self.tuning.as_dict()
        d["suite"] = self.model.suite
        return d

    def hash(self) -> str:
        d = self.config()
        d.pop("suite")  # the same cell in two suites (or under two labels) is the same computation
        d["attack"].pop("label")
        return config_hash(d, 16)

    @property
    def file_name(self) -> str:
        m = self.model
        aux = "" if self.aux_fraction == 1.0 else f"__aux{self.aux_fraction:g}"
        return (f"{m.scenario.name}__{m.backbone.name}@{m.backbone.split}__{m.defense.label}__"
                f"{self.attack.label}{aux}__s{m.seed}__{self.hash()[:10]}.json").replace("/", "_")


# -- loading ------------------------------------------------------------------------------------------------
def load_suite(name_or_path: str | Path) -> Suite:
    """Load a built-in suite by name, or a suite YAML file by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise SplitbenchError(f"suite file {str(p)!r} does not exist")
        path = p
    else:
        path = SUITES.get(str(name_or_path))
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise SplitbenchError(f"suite file {path}: not valid YAML ({exc})") from exc
    return parse_suite(raw, str(path))


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
    for i, e in enumerate(_entries(raw, "defenses", where)):
        defenses += defense_entries(e["name"], e.get("knob"), e.get("config"), train, f"{where}: defenses[{i}]")
    attacks = []
    for i, e in enumerate(_entries(raw, "attacks", where)):
        cls = ATTACKS.get(e["name"])
        label = e.get("label", e["name"])
        if not isinstance(label, str) or not label or "/" in label:
            raise SplitbenchError(f"{where}: attacks[{i}].label must be a non-empty string without '/'")
        attacks.append(AttackEntry(e["name"], build_config(cls.Config, e.get("config", {}),
                                                           f"{where}: attacks[{i}].config"), label))
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
    draws = _positive_int(raw.get("release_draws", 1), "release_draws", where)
    replicates = _positive_int(raw.get("bootstrap", 1000), "bootstrap", where)
    paper = raw.get("paper", {}) or {}
    if not isinstance(paper, dict):
        raise SplitbenchError(f"{where}: 'paper' must be a mapping")
    _check_paper(paper, defenses, attacks, backbones, where)
    labels = [d.label for d in defenses]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise SplitbenchError(f"{where}: defense settings listed twice: {sorted(dup)}")
    deployment = parse_deployment(raw.get("deployment"), backbones, where)
    admission = raw.get("admission", "selection")
    if admission not in ADMISSION_RULES:
        raise SplitbenchError(f"{where}: 'admission' must be one of {', '.join(ADMISSION_RULES)}, got {admission!r}"
                              f"{did_you_mean(str(admission), ADMISSION_RULES)}")
    preregistered = parse_preregistered(_entries(raw, "defenses", where), backbones, where)
    holdout = parse_holdout(raw.get("holdout", {}), where)
    aux_fractions = parse_aux_fraction(raw.get("aux_fraction"), attacks, where)
    suite = Suite(name, str(raw.get("description", "")), reference, float(budget), tuple(seeds), tuple(scenarios),
                  tuple(backbones), train, tuple(defenses), tuple(attacks), paper, source, eval_counts, draws,
                  replicates, tuning, raw.get("tuning"), deployment, admission, preregistered, holdout, aux_fractions,
                  check_cost_budget(raw.get("cost_budget") or {}, f"{where}: cost_budget"))
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
    chosen = raw.get("attacks", labels)
    if not isinstance(chosen, list) or not chosen:
        raise SplitbenchError(f"{where}: aux_fraction.attacks must be a non-empty list of attack labels")
    for n in chosen:
        if n not in labels:
            raise SplitbenchError(f"{where}: aux_fraction.attacks names {n!r}, which the suite does not run"
                                  f"{did_you_mean(str(n), labels)}")
    rest = tuple(sorted((float(f) for f in fractions if float(f) != 1.0), reverse=True))
    return {n: rest for n in chosen} if rest else {}


def parse_holdout(raw: Any, where: str) -> Holdout | None:
    """``holdout``: ``{fraction, reconstruction}`` (defaults for any key left out), or null for none."""
    if raw is None:
        return None
    return build_config(Holdout, raw, f"{where}: holdout")


def parse_preregistered(entries: list[dict], backbones: Sequence[BackboneSpec], where: str
                        ) -> dict[str, dict[str, float]]:
    """Each defense entry's ``preregistered``: one knob value for every track, or ``{backbone@split: value}``."""
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
        if out.get(e["name"], mine) != mine:
            raise SplitbenchError(f"{at}: defense {e['name']!r} is preregistered twice with different settings")
        out[e["name"]] = mine
    return out


def check_admission(suite: Suite, where: str) -> None:
    """Under the preregistered rule every defense but the reference names one setting per track, and that setting
    is among those the suite runs."""
    if suite.admission != "preregistered":
        if suite.preregistered:
            raise SplitbenchError(f"{where}: 'preregistered' settings are given, but admission is {suite.admission!r}"
                                  " (set admission: preregistered, or drop them)")
        return
    for name in sorted({d.name for d in suite.defenses} - {suite.reference}):
        per_track = suite.preregistered.get(name)
        run = [d for d in suite.defenses if d.name == name]
        if not per_track:
            raise SplitbenchError(f"{where}: defense {name!r} has no preregistered setting (admission: "
                                  "preregistered needs one per defense, e.g. preregistered: "
                                  f"{run[0].knob_value:g}; or --set admission=selection)")
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
        "attacks": [{"name": a.name, "label": a.label, "config": to_dict(a.config)} for a in suite.attacks],
        "paper": suite.paper,
    }
    if suite.deployment:
        raw["deployment"] = {label: to_dict(d) for label, d in suite.deployment.items()}
    if suite.admission != "selection":
        raw["admission"] = suite.admission
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
    first = next(j for j, e in enumerate(suite.defenses) if e.name == d.name)
    if i == first and d.name in suite.preregistered:
        out["preregistered"] = dict(suite.preregistered[d.name])
    return out


def _positive_int(value: Any, key: str, where: str) -> int:
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
            n = _positive_int(n, f"eval_counts.{kind}", where)
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


def expand(suite: Suite) -> list[tuple[ModelSpec, list[Cell]]]:
    """The suite's models, each with its attack cells, in a stable order (reference defense first)."""
    plan = []
    defenses = sorted(suite.defenses, key=lambda d: d.name != suite.reference)
    for scenario in suite.scenarios:
        for backbone in suite.backbones:
            for seed in suite.seeds:
                for d in defenses:
                    m = ModelSpec(suite.name, scenario, backbone, d, seed)
                    draws = suite.release_draws if DEFENSES.get(d.name).stochastic_release else 1
                    plan.append((m, [Cell(m, a, suite.eval_count(ATTACKS.get(a.name).kind.value), draws,
                                          suite.tuning.get(a.label), suite.holdout, f)
                                     for a in suite.attacks for f in (1.0, *suite.aux_fractions.get(a.label, ()))]))
    return plan




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
    - seeds: replace the suite's seeds.
    - scenario_args: config fields applied to every selected scenario (``--scenario-arg key=value``).
    - overrides: ``{"train.KEY": v, "defense.NAME.KEY": v, "attack.NAME_OR_LABEL.KEY": v}`` (``--set``),
      applied after selection; ``train.KEY`` applies to every defense's shared training settings; the suite-level
      ``eval_counts.KIND``, ``tuning.KEY`` (e.g. ``tuning.budget=4`` tunes every attack that declares a search
      space), ``release_draws``, ``bootstrap`` and ``utility_budget`` may be set too.
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
    out = _drop_dangling(dataclasses.replace(suite, **changes))
    if overrides:
        return apply_overrides(out, overrides)
    check_admission(out, f"suite {suite.name} (narrowed from the command line)")
    return out


def _drop_dangling(suite: Suite) -> Suite:
    """The suite without what names a backbone, defense or attack it no longer runs after narrowing: deployment
    entries of other backbones, paper numbers of other cells, tuning of other attacks. A narrowed suite is then a
    valid suite in its own right, which :func:`parse_suite` reads back from :func:`suite_to_raw` (as every worker
    process and a manifest's re-run do) instead of rejecting what this process accepted."""
    backbones = {b.label for b in suite.backbones}
    defenses = {d.name for d in suite.defenses}
    labels = {a.label for a in suite.attacks}
    runs = labels | {a.name for a in suite.attacks}  # tuning names an attack by label or name
    changes: dict[str, Any] = {}
    if any(label not in backbones for label in suite.deployment):
        changes["deployment"] = {k: v for k, v in suite.deployment.items() if k in backbones}
    if any(label not in labels for label in suite.aux_fractions):
        changes["aux_fractions"] = {k: v for k, v in suite.aux_fractions.items() if k in labels}
    prereg = {d: {k: v for k, v in per.items() if k == "*" or k in backbones}
              for d, per in suite.preregistered.items() if d in defenses}
    if prereg != suite.preregistered:
        changes["preregistered"] = prereg
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


def apply_overrides(suite: Suite, overrides: dict[str, Any]) -> Suite:
    """Apply ``--set`` overrides (see :func:`restrict`); every key is validated."""
    train_over: dict[str, Any] = {}
    per_defense: dict[str, dict[str, Any]] = {}
    per_attack: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
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
        elif key in ("release_draws", "bootstrap"):
            top[key] = _positive_int(value, key, where)
        elif key == "utility_budget":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SplitbenchError(f"--set utility_budget={value!r}: expected a number in [0, 1]")
            top[key] = float(value)
        elif parts[0] == "train" and len(parts) == 2:
            train_over[parts[1]] = value
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
                                  "utility_budget or admission")
    train = build_config(TrainConfig, {**to_dict(suite.train), **train_over}, "--set train")
    defenses = []
    for d in suite.defenses:
        cls = DEFENSES.get(d.name)
        vals = to_dict(d.config)
        vals["train"] = {**vals["train"], **train_over}
        vals.update(per_defense.get(d.name, {}))
        defenses.append(DefenseEntry(d.name, build_config(cls.Config, vals, f"--set defense.{d.name}")))
    attacks = []
    for a in suite.attacks:
        cls = ATTACKS.get(a.name)
        values = {**to_dict(a.config), **per_attack.get(a.name, {}), **per_attack.get(a.label, {})}
        attacks.append(AttackEntry(a.name, build_config(cls.Config, values, f"--set attack.{a.label}"), a.label))
    unused = (set(per_defense) - {d.name for d in suite.defenses}) | (
        set(per_attack) - {a.name for a in suite.attacks} - {a.label for a in suite.attacks})
    if unused:
        raise SplitbenchError(f"--set names {sorted(unused)}, which the selected suite does not run")
    if "tuning_raw" in top:
        top["tuning"] = parse_tuning(top["tuning_raw"], attacks, where)
    out = dataclasses.replace(suite, train=train, defenses=tuple(defenses), attacks=tuple(attacks),
                              eval_counts=counts, **top)
    check_admission(out, where)  # e.g. an overridden knob that leaves a preregistered setting unrun
    return out
