"""From a run's records to leaderboard rows: per-sample outcomes pooled over seeds, every figure with a 95%
bootstrap interval, one ranked row per defense per track.

The protocol (also in the README):

- **Rows.** One row per defense @ knob per track (scenario, backbone, split), pooled over seeds.
- **Leakage per family.** A row's leakage in a family (attribute, reconstruction, transfer) is that of the family's
  **strongest attack** on that row, each on its scorer's fixed scale (attribute advantage over the task-label
  floor, SSIM gain over the mean aux image, transfer advantage of the best — adaptive — unintended model). Attacks of
  a family are scored on the same eval samples, so one resample serves all of them and the maximum is taken per
  bootstrap replicate.
- **Privacy score** = the worse of the attribute and reconstruction families (the threats of split inference;
  the server is meant to learn the task, so transfer is its own column and view). Lower is better.
- **Knob selection.** Per track and defense, the ranked row is the defense's most private knob setting (its
  ``knob_more_private`` end) whose **validation** utility is within the suite's budget of the reference's
  validation utility. Eval is read only to score; every knob's row stays visible as the privacy-utility curve.
- **Threat model.** A defense that denies attackers its client weights is ranked only in the black-box view
  (attacks that need no client weights), never in the main view, so opting out cannot buy a better rank.
- **Ranks and ties.** A rank is a range: from 1 + the rows whose interval lies wholly below (better) to the rows
  that are not wholly above. Overlapping intervals give overlapping ranges, i.e. a tie.
- **Sanity guards.** A track whose reference utility interval reaches down to the task's majority rate is
  flagged and not ranked. An attack whose leakage interval on the reference reaches 0 is flagged as weak on the
  track and not used for the secondary "relative to the reference" view.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SplitbenchError
from ..metrics import DEPLOYED
from ..records import _from_json_number, read_outcomes
from . import intervals as iv
from . import scorer_for
from .base import Samples, mean_of
from .intervals import NAN, Estimate

FAMILIES = ("attribute", "reconstruction", "transfer")
PRIVACY_FAMILIES = ("attribute", "reconstruction")


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

    @property
    def defense(self) -> str:
        return self.config["defense"]["name"]

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
    def attack(self) -> str:
        a = self.config["attack"]
        return a.get("label") or a["name"]

    @property
    def kind(self) -> str:
        return self.config["attack"]["kind"]

    @property
    def white_box_attack(self) -> bool:
        return "white_box_client" in self.config["attack"].get("requires", [])

    @property
    def status(self) -> str:
        return self.record["status"]

    def metric(self, name: str) -> float:
        v = self.record["metrics"].get(name)
        return math.nan if v is None else float(_from_json_number(v))

    def outcomes(self) -> dict[str, np.ndarray]:
        if self._outcomes is None:
            self._outcomes = read_outcomes(self.path, self.record)
        return self._outcomes

    def attack_samples(self) -> Samples:
        return {k[len("attack/"):]: v for k, v in self.outcomes().items() if k.startswith("attack/")}


@dataclasses.dataclass
class AttackSummary:
    """One attack on one row: status, its headline leakage with interval, and point figures beside it."""

    attack: str
    kind: str
    white_box: bool
    status: str  # ok / failed / not_applicable / missing
    tuned: bool = False  # its configuration was chosen on the attacker's aux data (benchmark.tuning)
    leakage: Estimate = NAN
    figures: dict[str, float] = dataclasses.field(default_factory=dict)
    reason: str = ""


@dataclasses.dataclass
class Row:
    """One defense @ knob on one track, pooled over its seeds."""

    defense: str
    knob: str
    knob_value: float
    more_private: str
    white_box_client: bool
    seeds: tuple[int, ...]
    utility: Estimate = NAN
    val_utility: float = math.nan
    delta_utility: Estimate = NAN
    val_delta_utility: float = math.nan
    attacks: dict[str, AttackSummary] = dataclasses.field(default_factory=dict)
    family: dict[str, Estimate] = dataclasses.field(default_factory=dict)
    family_attack: dict[str, str] = dataclasses.field(default_factory=dict)
    privacy: Estimate = NAN
    privacy_blackbox: Estimate = NAN
    relative: float = math.nan
    cost: dict[str, float] = dataclasses.field(default_factory=dict)
    complete: bool = True
    admissible: bool = False
    selected: bool = False
    rank: tuple[int, int] | None = None
    rank_blackbox: tuple[int, int] | None = None
    rank_transfer: tuple[int, int] | None = None
    note: str = ""
    not_applicable: str = ""  # why the defense cannot run on this track (e.g. an unsupported operation)
    cells: tuple[tuple[str, str, str], ...] = ()  # (config hash, status, per-sample file sha256) of each cell:
    # two rows with the same cells are the same results, e.g. a reference run shipped in several entries

    @property
    def label(self) -> str:
        return f"{self.defense}@{self.knob_value:g}"

    @property
    def tuned(self) -> str:
        """How many of the row's attacks that ran were tuned on the attacker's aux data ("2/5")."""
        ran = [a for a in self.attacks.values() if a.status == "ok"]
        return f"{sum(a.tuned for a in ran)}/{len(ran)}"


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
    task_chance: float = math.nan
    flags: list[str] = dataclasses.field(default_factory=list)
    weak_attacks: list[str] = dataclasses.field(default_factory=list)
    floors: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.scenario, self.backbone, self.split

    @property
    def ranked(self) -> bool:
        return not self.flags

    def selected(self) -> list[Row]:
        return [r for r in self.rows if r.selected]

    def tuned(self, attack: str) -> bool:
        return any(r.attacks[attack].tuned for r in self.rows if attack in r.attacks)


COST = ("client_ms_b1_p50", "client_ms_bB_p50", "payload_bytes", "client_params", "client_macs")


def _by_seed(cells: Iterable[CellData]) -> dict[int, CellData]:
    out: dict[int, CellData] = {}
    for c in sorted(cells, key=lambda c: c.seed):
        out.setdefault(c.seed, c)
    return out


def _aligned(per_attack: list[list[Samples]]) -> tuple[list[Samples], list[int]]:
    """``per_attack[a][s]``: attack a's samples in seed s. For each attack, its samples restricted to the eval
    samples every attack of the group answered in that seed, pooled over seeds in the same order; and the per-seed
    sample counts."""
    sizes: list[int] = []
    chosen: list[list[Samples]] = [[] for _ in per_attack]
    for seed_samples in zip(*per_attack):  # one tuple per seed: that seed's samples of each attack
        common = seed_samples[0]["sample"]
        for s in seed_samples[1:]:
            common = np.intersect1d(common, s["sample"])
        if len(common) == 0:
            raise SplitbenchError("attacks of one kind were scored on disjoint eval samples; they cannot be compared")
        sizes.append(len(common))
        for a, s in enumerate(seed_samples):
            keep = np.isin(s["sample"], common)
            chosen[a].append({k: np.asarray(v)[..., keep] for k, v in s.items()})
    pooled = [{k: np.concatenate([s[k] for s in seeds], axis=-1) for k in seeds[0]} for seeds in chosen]
    return pooled, sizes


class TableBuilder:
    """Builds :class:`Track` s from the cells of one manifest."""

    def __init__(self, cells: list[CellData], reference: str, budget: float, replicates: int):
        if not 0.0 <= budget <= 1.0:
            raise SplitbenchError(f"utility budget must be in [0, 1], got {budget}")
        if replicates < 1:
            raise SplitbenchError(f"bootstrap replicates must be at least 1, got {replicates}")
        self.cells = cells
        self.reference = reference
        self.budget = budget
        self.replicates = replicates

    def build(self) -> list[Track]:
        by_track: dict[tuple, list[CellData]] = defaultdict(list)
        for c in self.cells:
            by_track[c.track].append(c)
        return [self.track(key, cells) for key, cells in sorted(by_track.items())]

    # -- one track --------------------------------------------------------------------------------------------------
    def track(self, key: tuple[str, str, str], cells: list[CellData]) -> Track:
        attacks = sorted({c.attack for c in cells})
        kinds = {c.attack: c.kind for c in cells}
        by_row: dict[tuple[str, float], list[CellData]] = defaultdict(list)
        for c in cells:
            by_row[c.row_key].append(c)
        t = Track(*key, rows=[], reference=self.reference, budget=self.budget, attacks=attacks, kinds=kinds,
                  seeds=tuple(sorted({c.seed for c in cells})))
        ref_keys = sorted(k for k in by_row if k[0] == self.reference)
        ref_cells = by_row[ref_keys[0]] if ref_keys else []
        if not ref_keys:
            t.flags.append(f"the reference defense {self.reference!r} was not run on this track: no Δutility, no "
                           "knob selection, no ranks")
        for rk in sorted(by_row):
            t.rows.append(self.row(by_row[rk], ref_cells, attacks, kinds))
        ref_row = next((r for r in t.rows if (r.defense, r.knob_value) == (ref_keys[0] if ref_keys else None)), None)
        self.guards(t, ref_row, ref_cells)
        self.select(t, ref_row)
        if t.ranked:
            self.rank(t)
        return t

    def row(self, cells: list[CellData], ref_cells: list[CellData], attacks: list[str], kinds: dict[str, str]) -> Row:
        first = cells[0].config["defense"]
        r = Row(first["name"], first["knob"], float(first["knob_value"]), first.get("more_private", "higher"),
                bool(first.get("white_box_client", True)), tuple(sorted({c.seed for c in cells})))
        r.cells = tuple(sorted((str(c.record.get("config_hash") or c.path.name), str(c.status),
                                str((c.record.get("outcomes") or {}).get("sha256") or "")) for c in cells))
        seed_tag = iv.stable_seed(r.defense, r.knob_value)
        models = _by_seed(c for c in cells if "outcomes" in c.record)
        if models:
            utils = [models[s].outcomes()["model/utility"] for s in sorted(models)]
            pooled = np.concatenate(utils).astype(np.float64)
            r.utility = iv.bootstrap(mean_of(pooled), [len(u) for u in utils], self.replicates, seed_tag)
            r.val_utility = float(np.mean([models[s].outcomes()["model/val_utility"].mean() for s in models]))
            refs = _by_seed(c for c in ref_cells if "outcomes" in c.record)
            common = sorted(set(models) & set(refs))
            if common:
                diffs = [models[s].outcomes()["model/utility"].astype(np.float64)
                         - refs[s].outcomes()["model/utility"].astype(np.float64) for s in common]
                r.delta_utility = iv.bootstrap(mean_of(np.concatenate(diffs)), [len(d) for d in diffs],
                                               self.replicates, seed_tag + 1)
                r.val_delta_utility = float(np.mean([models[s].outcomes()["model/val_utility"].mean()
                                                     - refs[s].outcomes()["model/val_utility"].mean()
                                                     for s in common]))
            deployed = sorted({m for s in models for m in models[s].record["metrics"] if m.startswith(DEPLOYED)})
            r.cost = {m: float(np.nanmean([models[s].metric(m) for s in models])) for m in (*COST, *deployed)}
        reasons = {c.record.get("reason") or "" for c in cells if c.status == "not_applicable"}
        if all(c.status == "not_applicable" for c in cells) and any(x.startswith("defense not applicable") for x in
                                                                     reasons):
            r.not_applicable = sorted(reasons)[0].removeprefix("defense not applicable: ")
        ok_cells: dict[str, dict[int, CellData]] = {}
        for a in attacks:
            mine = [c for c in cells if c.attack == a]
            r.attacks[a] = self.attack_summary(a, kinds[a], mine, seed_tag)
            ok_cells[a] = _by_seed(c for c in mine if c.status == "ok")
        self.families(r, ok_cells, seed_tag)
        return r

    def attack_summary(self, attack: str, kind: str, cells: list[CellData], seed_tag: int) -> AttackSummary:
        s = self._attack_summary(attack, kind, cells, seed_tag)
        s.tuned = any(c.config["attack"].get("tuning") for c in cells)
        return s

    def _attack_summary(self, attack: str, kind: str, cells: list[CellData], seed_tag: int) -> AttackSummary:
        wb = bool(cells and cells[0].white_box_attack)
        if not cells:
            return AttackSummary(attack, kind, wb, "missing")
        statuses = {c.status for c in cells}
        if "failed" in statuses:
            reason = next(c.record.get("reason") or "" for c in cells if c.status == "failed")
            return AttackSummary(attack, kind, wb, "failed", reason=reason)
        if statuses == {"not_applicable"}:
            return AttackSummary(attack, kind, wb, "not_applicable", reason=cells[0].record.get("reason") or "")
        ok = _by_seed(c for c in cells if c.status == "ok")
        samples, sizes = _aligned([[ok[s].attack_samples() for s in sorted(ok)]])
        stats = scorer_for(kind).statistics(samples[0])
        est = iv.bootstrap(stats["leakage"], sizes, self.replicates, seed_tag + iv.stable_seed(attack) % 1000)
        point = np.arange(sum(sizes))[None, :]
        figures = {name: float(stat(point)[0]) for name, stat in stats.items()}
        return AttackSummary(attack, kind, wb, "ok", leakage=est, figures=figures)

    def families(self, r: Row, ok_cells: dict[str, dict[int, CellData]], seed_tag: int) -> None:
        """Strongest attack per family (one shared resample per family) and the privacy scores."""
        parts: dict[str, tuple[Any, list[int]]] = {}
        parts_bb: dict[str, tuple[Any, list[int]]] = {}
        for fam in FAMILIES:
            members = [a for a in r.attacks.values() if a.kind == fam]
            if not members:
                continue
            if any(a.status in ("failed", "missing") for a in members):
                r.complete = False
                r.family[fam] = NAN
                continue
            ok = [a for a in members if a.status == "ok" and not math.isnan(a.leakage.value)]
            if not ok:
                continue  # not applicable on this track
            r.family[fam], r.family_attack[fam], part = self.strongest(ok, ok_cells, seed_tag + FAMILIES.index(fam))
            if fam in PRIVACY_FAMILIES:
                parts[fam] = part
                bb = [a for a in ok if not a.white_box]
                if bb:
                    _, _, parts_bb[fam] = self.strongest(bb, ok_cells, seed_tag + 10 + FAMILIES.index(fam))
        if r.complete and parts:
            r.privacy = iv.bootstrap_combined(list(parts.values()), replicates=self.replicates, seed=seed_tag + 20)
        if r.complete and parts_bb:
            r.privacy_blackbox = iv.bootstrap_combined(list(parts_bb.values()), replicates=self.replicates,
                                                       seed=seed_tag + 21)

    def strongest(self, members: list[AttackSummary], ok_cells: dict[str, dict[int, CellData]], seed: int):
        """The family's leakage: per bootstrap replicate, the largest of its attacks' leakages (all resampled with
        the same indices: they were scored on the same eval samples)."""
        cells = [ok_cells[a.attack] for a in members]
        seeds = sorted(set.intersection(*(set(c) for c in cells)))
        per_attack = [[c[s].attack_samples() for s in seeds] for c in cells]
        samples, sizes = _aligned(per_attack)
        stats = [scorer_for(a.kind).statistics(s)["leakage"] for a, s in zip(members, samples)]

        def worst(idx, stats=stats):
            return np.nanmax(np.stack([s(idx) for s in stats]), axis=0)

        est = iv.bootstrap(worst, sizes, self.replicates, seed)
        best = max(members, key=lambda a: a.leakage.value)
        return est, best.attack, (worst, sizes)

    # -- guards, selection, ranks --------------------------------------------------------------------------------------
    def guards(self, t: Track, ref: Row | None, ref_cells: list[CellData]) -> None:
        if ref is None:
            return
        tasks = [c.outcomes()["model/task"] for c in _by_seed(x for x in ref_cells if "outcomes" in x.record).values()
                 if "model/task" in c.outcomes()]
        if tasks:
            labels = np.concatenate(tasks)
            t.task_chance = float(np.bincount(labels.astype(np.int64)).max() / len(labels))
            lo = ref.utility.lo if ref.utility.has_interval else ref.utility.value
            if not lo > t.task_chance:
                t.flags.append(f"the reference {ref.label} is not clearly above task chance (utility "
                               f"{ref.utility.value:.3f}, interval from {lo:.3f}; majority rate {t.task_chance:.3f}): "
                               "nothing on this track is ranked")
        for a, s in ref.attacks.items():
            if s.status == "ok":
                lo = s.leakage.lo if s.leakage.has_interval else s.leakage.value
                if not lo > 0:
                    t.weak_attacks.append(a)
                t.floors[a] = {k: v for k, v in s.figures.items()
                               if k in ("attribute_floor", "attribute_majority", "ssim_baseline", "psnr_baseline",
                                        "unintended_chance")}
        if ref.privacy.has_interval and ref.privacy.lo > 0:
            for r in t.rows:
                r.relative = r.privacy.value / ref.privacy.value if ref.privacy.value else math.nan

    def select(self, t: Track, ref: Row | None) -> None:
        """Per defense, the most private knob whose validation utility is within the budget of the reference's."""
        if ref is None:
            return
        by_def: dict[str, list[Row]] = defaultdict(list)
        for r in t.rows:
            r.admissible = (not math.isnan(r.val_delta_utility)) and r.val_delta_utility >= -t.budget - 1e-12
            by_def[r.defense].append(r)
        for name, rows in by_def.items():
            rows = [r for r in rows if not r.not_applicable]
            if not rows:
                continue
            ok = [r for r in rows if r.admissible]
            if name == ref.defense:
                ok = [ref]
            if not ok:
                for r in rows:
                    r.note = "no knob setting within the utility budget on validation data"
                continue
            more = rows[0].more_private
            pick = max(ok, key=lambda r: r.knob_value) if more == "higher" else min(ok, key=lambda r: r.knob_value)
            pick.selected = True

    def rank(self, t: Track) -> None:
        chosen = t.selected()
        _rank([r for r in chosen if r.white_box_client and r.complete and not math.isnan(r.privacy.value)],
              "privacy", "rank")
        _rank([r for r in chosen if r.complete and not math.isnan(r.privacy_blackbox.value)], "privacy_blackbox",
              "rank_blackbox")
        _rank([r for r in chosen if "transfer" in r.family and not math.isnan(r.family["transfer"].value)],
              "transfer", "rank_transfer")


def _estimate(r: Row, what: str) -> Estimate:
    return r.family["transfer"] if what == "transfer" else getattr(r, what)


def _rank(rows: list[Row], what: str, attr: str) -> None:
    """Rank ranges (lower is better): best = 1 + rows wholly below, worst = rows not wholly above."""
    for r in rows:
        e = _estimate(r, what)
        lo = e.lo if e.has_interval else e.value
        hi = e.hi if e.has_interval else e.value
        better = 0
        not_worse = 0
        for o in rows:
            if o is r:
                continue
            oe = _estimate(o, what)
            olo = oe.lo if oe.has_interval else oe.value
            ohi = oe.hi if oe.has_interval else oe.value
            if ohi < lo:
                better += 1
            if not olo > hi:
                not_worse += 1
        setattr(r, attr, (better + 1, not_worse + 1))
