"""The suite data model: what a suite file resolves to (:class:`Suite` and its entries), and the units it expands
into, :class:`ModelSpec` (one trained defended model) and :class:`Cell` (one attack on it), whose config and hash
name a record."""

from __future__ import annotations

import dataclasses
from typing import Any

from benchmark.core.fields import config_hash, field, to_dict
from benchmark.core.registry import ATTACKS, DEFENSES
from benchmark.models.backbones import BackboneSpec
from benchmark.models.trainer import TrainConfig
from benchmark.suites.tuning import Tuning

#: what a model cell (a trained model with no attack) is labelled as in its record's file name
MODEL_CELL = "model"

#: the rules by which each defense's ranked setting is chosen (:attr:`Suite.admission`)
ADMISSION_RULES = ("selection", "preregistered")


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
        """``NAME@KNOB``: the setting as cell file names and progress lines show it."""
        return f"{self.name}@{self.knob_value:g}"

    @property
    def row(self) -> str:
        """The leaderboard row this setting belongs to (:meth:`~benchmark.api.contract.Defense.row_name`): the
        name, or the name and its non-default variant, which is what ``preregistered`` is keyed by."""
        return DEFENSES.get(self.name).row_name(self.config)

    @property
    def row_label(self) -> str:
        """``ROW@KNOB``: one setting of one row; no two entries of a suite may share it."""
        return f"{self.row}@{self.knob_value:g}"


@dataclasses.dataclass(frozen=True)
class Settle:
    """The settle rule (a suite's ``settle``): more admission seeds, ``step`` at a time, for a preregistered setting
    still *borderline* after a run, until it is clear or has ``up_to`` seeds in all."""

    step: int = 5
    up_to: int = 20


@dataclasses.dataclass(frozen=True)
class AttackEntry:
    """An attack with its config; ``label`` tells apart several configs of one attack (default: the name);
    ``backbones`` limits it to those tracks (``NAME@SPLIT`` labels; empty: every track), e.g. a costly budget
    run at one split depth only."""

    name: str
    config: Any
    label: str = ""
    backbones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def runs_on(self, backbone: BackboneSpec) -> bool:
        return not self.backbones or backbone.label in self.backbones


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
    #: seeds whose models are trained and validated but not attacked: more seeds for admission, which reads only
    #: the validation utility (:meth:`admission_settings` says which settings get them)
    admission_seeds: tuple[int, ...] = ()
    #: the settle rule: a preregistered setting still borderline gets ``step`` more admission seeds at a time (the
    #: reference with it) until it is clear or has ``up_to`` seeds in all (None: off)
    settle: Settle | None = None
    #: row -> the admission seeds the settle rule added for that row's preregistered setting; the reference is
    #: fitted at every one of them
    settled_seeds: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    #: under the preregistered rule, the seeds at which the settings admission does not read (each defense's other
    #: knob settings: points of its privacy-utility curve, never ranked) are trained and attacked, a subset of
    #: ``seeds`` (None: every seed); :meth:`seeds_of` says which seeds a setting runs
    curve_seeds: tuple[int, ...] | None = None

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

    def admission_settings(self) -> list[DefenseEntry]:
        """The settings admission reads, which the ``admission_seeds`` are fitted for: under the preregistered rule
        the reference and each preregistered setting (of any track); under selection every setting, since any of
        them may be selected."""
        if self.admission != "preregistered":
            return list(self.defenses)
        return [d for d in self.defenses if d.name == self.reference
                or any(abs(d.knob_value - v) < 1e-12 for v in self.preregistered.get(d.row, {}).values())]

    def admission_plan(self) -> list[tuple[DefenseEntry, tuple[int, ...]]]:
        """Each setting admission reads (:meth:`admission_settings`, the reference first) with the seeds it is
        trained and validated at without attack: the suite's ``admission_seeds``, plus a preregistered setting's
        ``settled_seeds`` (its row's), plus, for the reference, every settled seed (each is paired with it)."""
        every = sorted({s for v in self.settled_seeds.values() for s in v})
        out = []
        for d in sorted(self.admission_settings(), key=lambda d: d.name != self.reference):
            more = every if d.name == self.reference else self.settled_seeds.get(d.row, ())
            out.append((d, tuple(sorted({*self.admission_seeds, *more}))))
        return out

    def seeds_of(self, d: DefenseEntry) -> tuple[int, ...]:
        """The attacked seeds setting ``d`` is trained and attacked at: every seed, but only the ``curve_seeds`` for
        a setting admission does not read when the suite gives them."""
        if self.curve_seeds is None or d in self.admission_settings():
            return self.seeds
        return tuple(s for s in self.seeds if s in self.curve_seeds)

    def preregistered_settings(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(defense, track label or "*", full config) of every preregistered setting (``preregistered`` is keyed
        by row; a variant row's config says which variant it is)."""
        out = []
        for row, per_track in sorted(self.preregistered.items()):
            for label, value in sorted(per_track.items()):
                entry = next(d for d in self.defenses if d.row == row and abs(d.knob_value - value) < 1e-12)
                out.append((entry.name, label, to_dict(entry.config)))
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
    draws (1 unless the defense's release is stochastic); or, with no attack (a *model cell*), the trained model
    alone: its utility, validation utility and cost, for a seed that only admission reads."""

    model: ModelSpec
    attack: AttackEntry | None
    eval_count: int | None = None
    draws: int = 1
    tuning: Tuning | None = None
    holdout: Holdout | None = None
    aux_fraction: float = 1.0  # the share of its aux data the attack trains with (1.0: all of it)

    @property
    def label(self) -> str:
        """The attack's label, or ``model`` for a model cell."""
        return self.attack.label if self.attack is not None else MODEL_CELL

    def config(self) -> dict[str, Any]:
        d = self.model.as_dict()
        if self.attack is None:
            d["suite"] = self.model.suite
            return d
        cls = ATTACKS.get(self.attack.name)
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
        if "attack" in d:
            d["attack"].pop("label")
        return config_hash(d, 16)

    @property
    def file_name(self) -> str:
        m = self.model
        aux = "" if self.aux_fraction == 1.0 else f"__aux{self.aux_fraction:g}"
        return (f"{m.scenario.name}__{m.backbone.name}@{m.backbone.split}__{m.defense.label}__"
                f"{self.label}{aux}__s{m.seed}__{self.hash()[:10]}.json").replace("/", "_")
