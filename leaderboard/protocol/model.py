"""The leaderboard's data model: a cell's records and outcomes, a family's attacks, a row, a matched-utility
figure and a track, with the protocol's constants (families, admission rules, views, cost columns)."""


from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from benchmark.api.contract import data_free, defense_row
from benchmark.core.io import json_number
from benchmark.measure.intervals import NAN, Estimate
from benchmark.measure.scoring.base import Samples
from benchmark.store.records import read_outcomes

FAMILIES = ("attribute", "reconstruction", "transfer")
PRIVACY_FAMILIES = ("attribute", "reconstruction")
ADMISSION_RULES = ("selection", "preregistered")
#: a ranked row chosen in fewer replicates than this is borderline (selection rule)
BORDERLINE = 0.8
#: preregistered rule: the z of the admission lower bound (a two-sided 95% interval)
ADMISSION_Z = 1.96


def machine_factor(seeds: int) -> float:
    """The preregistered rule's borderline band, in units of a setting's seed spread ``s``, for ``seeds`` seeds.

    A re-run on other numerics is in effect a fresh draw of every seed, so it moves the admission lower bound
    ``lo = mean - z * s / sqrt(k)`` in two ways: the mean, by ``sqrt(2) * s / sqrt(k)`` (two independent means of
    ``k`` seeds), and the interval's half-width, because ``s`` is itself estimated from ``k`` seeds (relative
    standard deviation about ``1 / sqrt(2 (k - 1))``), by ``z * s / sqrt(k (k - 1))``. Together the two runs' lower
    bounds differ with standard deviation ``s * sqrt((2 + z**2 / (k - 1)) / k)``; the band is the 97.5% quantile
    of Student's t with ``k - 1`` degrees of freedom (``s`` comes from ``k`` seeds) times that. In simulation
    (normal seeds, five of them, any true Δutility) the chance that a setting gets a verdict outside the band and a
    re-run reverses it stays below 2.5% (about 1.5% at worst); 2.14 at five seeds; NaN below two."""
    if seeds < 2:
        return math.nan
    return float(student_t.ppf(0.975, seeds - 1)) * math.sqrt((2.0 + ADMISSION_Z ** 2 / (seeds - 1)) / seeds)


#: the tail-aware band: draws of two re-runs simulated from a track's pooled seed deviations, and the least number of
#: pooled deviations that makes the simulation worth more than the normal-theory band alone
TAIL_DRAWS = 4000
TAIL_MIN_DEVIATIONS = 10


def tail_band(deviations: np.ndarray, seeds: int, draws: int = TAIL_DRAWS) -> float:
    """How far a re-run on other numerics may move a ``seeds``-seed admission lower bound, read from a track's pooled
    seed deviations instead of a normal model: two independent re-runs each draw ``seeds`` deviations (with
    replacement) from ``deviations``, each computes its lower bound ``mean - 1.96 * sd / sqrt(seeds)``, and the band is
    the 95% quantile of how far apart the two bounds fall (each side 2.5%, as :func:`machine_factor`'s band).

    Seeds of a setting are not normal: about one seed in fifty collapses (a training failure that ends several
    points below its row), and five or ten seeds of one setting rarely show it, while the track's pooled deviations
    do. A fixed random stream makes the band the same on every machine; NaN with fewer than two seeds or fewer than
    :data:`TAIL_MIN_DEVIATIONS` deviations."""
    d = np.sort(np.asarray(deviations, dtype=np.float64))  # the same band whatever order the rows come in
    if seeds < 2 or len(d) < TAIL_MIN_DEVIATIONS:
        return math.nan
    return _tail_band(tuple(d.tolist()), seeds, draws)


@functools.lru_cache(maxsize=256)
def _tail_band(d: tuple[float, ...], seeds: int, draws: int) -> float:
    """:func:`tail_band` of sorted deviations, once per (pool, seed count): a track's rows share both."""
    x = np.random.default_rng(20261206).choice(np.asarray(d), size=(draws, 2, seeds), replace=True)
    lo = x.mean(-1) - ADMISSION_Z * x.std(-1, ddof=1) / math.sqrt(seeds)
    return float(np.quantile(np.abs(lo[:, 0] - lo[:, 1]), 0.95))


def admission_text(rule: str, budget: float, seeds: int, admission_seeds: int = 0,
                   settle: dict[str, int] | None = None) -> str:
    """One paragraph that says how a track's rule admits a setting, for the markdown table and the site
    (``seeds`` attacked, ``admission_seeds`` more trained and validated for admission only, up to that many; the
    suite's ``settle`` rule when it has one)."""
    word = "up to " if settle else ""
    more = (f"Admission reads {word}{seeds + admission_seeds} seeds: the {seeds} attacked and {word}{admission_seeds} "
            "more whose models were trained and validated but not attacked (utility and Δutility pool all of them; "
            "privacy the attacked ones). ") if admission_seeds else ""
    text = more + _admission_rule_text(rule, budget, seeds + admission_seeds)
    if settle:
        text += (f" Under the suite's settle rule a preregistered setting left borderline was given {settle['step']} "
                 f"more seeds at a time (the reference with it), until it was clear or had {settle['up_to']}; where "
                 "settings were judged on different numbers of seeds, each says how many.")
    return text


def _admission_rule_text(rule: str, budget: float, seeds: int) -> str:
    if rule == "preregistered":
        band = machine_factor(seeds)
        head = ("Each defense's ranked row is the one setting it preregistered for this track, admitted when the "
                f"lower 95% bound of its paired validation Δutility is at or above -{budget:.3f}")
        if math.isnan(band):
            return head + ("; with one seed there is no seed spread to say how far a re-run on other numerics may "
                           "move that bound, so no setting is marked borderline.")
        return head + (f"; a setting whose bound lies closer to that than a re-run on other numerics may move it (here "
                       f"{band:.2f} × its seeds' spread of that Δutility: Student's t for seeds − 1 degrees of freedom "
                       f"× √((2 + {ADMISSION_Z:g}²/(seeds − 1))/seeds), the spread at least the track's median; or, "
                       "when wider, how far that bound moves between two simulated re-runs whose seeds are drawn "
                       "from the track's pooled seed deviations, which carry its collapsed seeds) is borderline, "
                       "admitted or not: another machine may decide otherwise.")
    return ("Each defense's ranked row is its most private knob setting whose validation Δutility is within "
            f"{budget:.3f} of the reference's; the choice is redone in every bootstrap replicate, and a row chosen "
            f"in fewer than {BORDERLINE:.0%} of them is borderline.")


@dataclasses.dataclass
class CellData:
    """One record of a run, with its per-sample outcomes loaded on first use."""

    path: Path
    record: dict[str, Any]
    _outcomes: dict[str, np.ndarray] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def track(self) -> tuple[str, str, str]:
        c = self.config
        return c["scenario"]["name"], c["backbone"]["name"], c["backbone"]["split"]

    @functools.cached_property
    def defense(self) -> str:  # cached: read for every cell at every grouping, and it asks the registry
        """The leaderboard row's defense: the registered name, with the variant it runs where that is not the
        default (:meth:`~benchmark.api.contract.Defense.row_name`)."""
        d = self.config["defense"]
        return defense_row(d["name"], d.get("config"))

    @property
    def method(self) -> str:
        """The registered defense that made the cell."""
        return str(self.config["defense"]["name"])

    @property
    def knob_value(self) -> float:
        return float(self.config["defense"]["knob_value"])

    @property
    def row_key(self) -> tuple[str, float]:
        return self.defense, self.knob_value

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def model_only(self) -> bool:
        """A model cell: the trained model's own figures at a seed only admission reads (no attack)."""
        return "attack" not in self.config

    @property
    def attack(self) -> str:
        """The attack's label ("" for a model cell)."""
        a = self.config.get("attack")
        return (a.get("label") or a["name"]) if a else ""

    @property
    def kind(self) -> str:
        """The attack's kind ("model" for a model cell)."""
        a = self.config.get("attack")
        return a["kind"] if a else "model"

    @property
    def aux_fraction(self) -> float:
        """The share of its aux data the attack trained with (1.0: all; the attacker-knowledge axis)."""
        return float(self.config.get("eval", {}).get("aux_fraction", 1.0))

    @property
    def white_box_attack(self) -> bool:
        return "white_box_client" in self.config.get("attack", {}).get("requires", [])

    @property
    def data_free_attack(self) -> bool:
        """Whether the attack read no data of the client's distribution (the zero-data end of attacker knowledge)."""
        return not self.model_only and data_free(self.config["attack"].get("requires", []))

    @property
    def status(self) -> str:
        return self.record["status"]

    def metric(self, name: str) -> float:
        v = self.record["metrics"].get(name)
        return json_number(v)

    def outcomes(self) -> dict[str, np.ndarray]:
        if self._outcomes is None:
            self._outcomes = read_outcomes(self.path, self.record)
        return self._outcomes

    def attack_samples(self, prefix: str = "attack/") -> Samples:
        """The attack's per-sample outcomes on eval (``attack/``) or on the attacker's hold-out (``holdout/``)."""
        return {k[len(prefix):]: v for k, v in self.outcomes().items() if k.startswith(prefix)}


@dataclasses.dataclass
class AttackSummary:
    """One attack on one row: status, its headline leakage with interval, and point figures beside it."""

    attack: str
    kind: str
    white_box: bool
    status: str  # ok / failed / not_applicable / missing
    tuned: bool = False  # its configuration was chosen on the attacker's aux data (benchmark.suites.tuning)
    leakage: Estimate = NAN
    figures: dict[str, float] = dataclasses.field(default_factory=dict)
    reason: str = ""
    reps: np.ndarray | None = dataclasses.field(default=None, repr=False)  # leakage per replicate
    #: its leakage on the attacker's own hold-out (pooled over seeds; NaN for records without one): what a
    #: family's representative is chosen by
    holdout: float = math.nan
    #: seeds whose cell is flagged not converged (:mod:`benchmark.measure.scoring.convergence`), of ``seeds`` that ran
    not_converged: int = 0
    seeds: int = 0

    @property
    def at_floor(self) -> bool:
        """No more than the floor: 0 on the scale, the signed figure in ``figures["leakage_raw"]``."""
        return self.leakage.value == 0.0 and self.figures.get("leakage_raw", 0.0) < 0.0


@dataclasses.dataclass
class Row:
    """One defense @ knob on one track, pooled over its seeds."""

    defense: str  # the row's name (a variant's name for a non-default variant: see CellData.defense)
    knob: str
    knob_value: float
    more_private: str
    white_box_client: bool
    seeds: tuple[int, ...]
    method: str = ""  # the registered defense (the same as ``defense`` unless the row is a variant)
    utility: Estimate = NAN
    val_utility: Estimate = NAN
    delta_utility: Estimate = NAN
    val_delta_utility: Estimate = NAN
    attacks: dict[str, AttackSummary] = dataclasses.field(default_factory=dict)
    family: dict[str, Estimate] = dataclasses.field(default_factory=dict)  # the representative's eval leakage
    family_attack: dict[str, str] = dataclasses.field(default_factory=dict)  # the representative
    #: family -> how the representative was chosen: "holdout" (the attacker's own), or "eval" where the records
    #: have no hold-out (then it is the strongest on eval, an optimistic choice)
    family_chosen_on: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the strongest attack of each family on eval, per replicate (secondary and optimistic: chosen on eval)
    family_best_eval: dict[str, Estimate] = dataclasses.field(default_factory=dict)
    family_best_eval_attack: dict[str, str] = dataclasses.field(default_factory=dict)
    privacy: Estimate = NAN
    privacy_blackbox: Estimate = NAN
    relative: float = math.nan
    cost: dict[str, float] = dataclasses.field(default_factory=dict)
    #: client_macs / client_params / payload_bytes as a ratio to the reference's on the track (see Track.cost_basis)
    cost_ratio: dict[str, float] = dataclasses.field(default_factory=dict)
    pareto: bool = False  # on the privacy x client-MACs Pareto front of the ranked rows
    complete: bool = True
    admissible: bool = False
    selected: bool = False
    preregistered: bool = False
    #: share of replicates in which this setting is the defense's choice (selection rule) or its validation
    #: Δutility is within the budget (preregistered rule); NaN without a bootstrap
    selection: float = math.nan
    borderline: bool = False
    #: preregistered rule: "N seeds" when the track's preregistered settings were judged on different numbers of
    #: seeds (the settle rule added some to settings left borderline), else ""
    seed_note: str = ""
    #: preregistered rule: why the setting is over the suite's cost budget ("" when it is not)
    over_cost_reason: str = ""
    #: preregistered rule: how far a re-run on other numerics may move the validation Δutility's lower bound
    #: (the wider of machine_factor(seeds) * seed spread and the track's tail_band); NaN with fewer than two seeds
    admission_margin: float = math.nan
    #: the paired validation Δutility of each seed (its mean over the validation samples), in seed order
    val_delta_seeds: tuple[float, ...] = ()
    rank: tuple[int, int] | None = None  # rank interval (low, high) over replicates
    rank_blackbox: tuple[int, int] | None = None
    rank_transfer: tuple[int, int] | None = None
    rank_point: dict[str, int] = dataclasses.field(default_factory=dict)  # view -> the point estimate's rank
    note: str = ""
    not_applicable: str = ""  # why the defense cannot run on this track (e.g. an unsupported operation)
    cells: tuple[tuple[str, str, str], ...] = ()  # (config hash, status, per-sample file sha256) of each cell:
    # two rows with the same cells are the same results, e.g. a reference run shipped in several entries
    #: per-replicate values of the track's shared draw: "privacy", "privacy_blackbox", "transfer", "val_delta";
    #: "rank/<view>" on a ranked row: what its rank is computed from (the defense's choice per replicate)
    reps: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.defense}@{self.knob_value:g}"

    @property
    def val_delta_seed_sd(self) -> float:
        """The standard deviation over seeds of the paired validation Δutility; NaN with fewer than two seeds."""
        v = np.asarray(self.val_delta_seeds, dtype=np.float64)
        return float(np.std(v, ddof=1)) if len(v) >= 2 and np.all(np.isfinite(v)) else math.nan

    @property
    def tuned(self) -> str:
        """How many of the row's attacks that ran were tuned on the attacker's aux data ("2/5")."""
        ran = [a for a in self.attacks.values() if a.status == "ok"]
        return f"{sum(a.tuned for a in ran)}/{len(ran)}"


@dataclasses.dataclass
class Matched:
    """A defense's privacy score at matched utility: interpolated on its curve at validation Δutility = -budget."""

    defense: str
    privacy: Estimate = NAN
    reached: bool = False  # some setting spends at least the budget (else: its most private setting's score)
    settings: int = 0
    rank: tuple[int, int] | None = None
    rank_point: int | None = None
    reps: np.ndarray | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class Track:
    """The rows of one (scenario, backbone, split) and what the reader must know about them."""

    scenario: str
    backbone: str
    split: str
    rows: list[Row]
    reference: str
    budget: float
    attacks: list[str]
    kinds: dict[str, str]
    admission: str = "selection"
    replicates: int = 1
    task_chance: float = math.nan
    flags: list[str] = dataclasses.field(default_factory=list)
    weak_attacks: list[str] = dataclasses.field(default_factory=list)
    floors: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = ()  # the attacked seeds
    #: seeds whose models were trained and validated but not attacked (more seeds for admission only)
    admission_seeds: tuple[int, ...] = ()
    #: the suite's settle rule ({"step": N, "up_to": M}) when it has one: borderline settings got more seeds
    settle: dict[str, int] | None = None
    matched: dict[str, Matched] = dataclasses.field(default_factory=dict)
    #: the attacker-knowledge axis: aux share < 1 -> (defense, knob value) -> privacy score with the attacks that
    #: ran at that share (and the attacks it covers)
    knowledge: dict[float, dict[tuple[str, float], Estimate]] = dataclasses.field(default_factory=dict)
    knowledge_attacks: dict[float, list[str]] = dataclasses.field(default_factory=dict)
    #: attacks that read no aux data: the zero-data end of that axis, the same at every share
    data_free_attacks: list[str] = dataclasses.field(default_factory=list)
    #: the suite's cost budget (cost -> largest ratio to the reference admitted) and where MACs and parameters were
    #: measured ("deployed on NAME@SPLIT" or "on this track")
    cost_budget: dict[str, float] = dataclasses.field(default_factory=dict)
    cost_basis: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.scenario, self.backbone, self.split

    @property
    def label(self) -> str:
        """``backbone@split``, the key a suite's per-track settings (``preregistered``, ``deployment``) use."""
        return f"{self.backbone}@{self.split}"

    def fewer_seeds(self, r: Row) -> int | None:
        """How many of the track's attacked seeds row ``r`` was attacked at, when that is some but not all of them
        (a suite's ``curve_seeds``, or a partial run); else None."""
        k = len(set(r.seeds) & set(self.seeds))
        return k if 0 < k < len(self.seeds) else None

    @property
    def ranked(self) -> bool:
        return not self.flags

    def selected(self) -> list[Row]:
        return [r for r in self.rows if r.selected]

    def not_converged(self) -> list[tuple[str, str, int, int]]:
        """(row label, attack, seeds flagged, seeds run) of every attack flagged not converged on some seed."""
        return [(r.label, a.attack, a.not_converged, a.seeds) for r in self.rows for a in r.attacks.values()
                if a.not_converged]

    def tuned(self, attack: str) -> bool:
        return any(r.attacks[attack].tuned for r in self.rows if attack in r.attacks)


COST = ("client_ms_b1_p50", "client_ms_bB_p50", "payload_bytes", "client_params", "client_macs")
PARETO_COST = "client_macs"
#: the ranking views: the row figure each ranks by, as a key of ``Row.reps``
VIEWS = {"rank": "privacy", "rank_blackbox": "privacy_blackbox", "rank_transfer": "transfer"}
