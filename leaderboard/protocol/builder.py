"""Building a track's rows from its cells: pooling over seeds, the families' representatives, admission, matched
utility, ranks and the cost axis, all replicate by replicate (:class:`TableBuilder`)."""


from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from benchmark.core.errors import SplitbenchError
from benchmark.measure.intervals import NAN, TrackResample, estimate, identity, rank_intervals
from benchmark.measure.metrics import COST_NAMES, COST_RATIOS, DEPLOYED, check_cost_budget
from benchmark.measure.scoring import scorer_for
from benchmark.measure.scoring.base import Samples, mean_of
from leaderboard.protocol.model import (
    ADMISSION_RULES,
    BORDERLINE,
    COST,
    FAMILIES,
    PARETO_COST,
    VIEWS,
    AttackSummary,
    CellData,
    Matched,
    Row,
    Track,
    machine_factor,
    tail_band,
)


def _by_seed(cells: Iterable[CellData]) -> dict[int, CellData]:
    out: dict[int, CellData] = {}
    for c in sorted(cells, key=lambda c: c.seed):
        out.setdefault(c.seed, c)
    return out


def _pooled(per_seed: list[Mapping[str, np.ndarray]], where: str) -> tuple[Samples, int, int]:
    """Per-seed attack samples pooled seed after seed, with (seeds, samples per seed). Every seed must be scored
    on the same first ``n`` eval samples, the layout the crossed bootstrap resamples."""
    n = len(per_seed[0]["sample"])
    for s in per_seed:
        if not np.array_equal(np.asarray(s["sample"]), np.arange(n)):
            raise SplitbenchError(f"{where}: the seeds were not all scored on the first {n} eval samples, so they "
                                  "cannot be resampled together (records of another version?)")
    keys = per_seed[0].keys()
    return {k: np.concatenate([np.asarray(s[k]) for s in per_seed], axis=-1) for k in keys}, len(per_seed), n


def _nanmax(arrays: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(arrays)
    out = np.full(stacked.shape[1:], np.nan)
    ok = ~np.all(np.isnan(stacked), axis=0)
    out[ok] = np.nanmax(stacked[:, ok], axis=0)
    return out


def representative(attacks: list[AttackSummary]) -> tuple[AttackSummary, str]:
    """A family's representative among ``attacks`` (all ran) and what it was chosen on: the one that leaks most on
    the attacker's own hold-out when every one was scored there, else (records without a hold-out) the strongest
    on eval, which is an optimistic choice."""
    if all(not math.isnan(a.holdout) for a in attacks):
        return max(attacks, key=lambda a: (a.holdout, a.attack)), "holdout"
    return max(attacks, key=lambda a: a.leakage.value), "eval"


def matched_privacy(x: np.ndarray, y: np.ndarray, target: float) -> tuple[float, bool]:
    """Privacy at matched utility on one curve: ``y`` (privacy) interpolated at ``x`` (validation Δutility) =
    ``target``; when every setting keeps more utility than that, the most private setting's score (not reached);
    NaN when no setting is within the budget."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not len(x) or x.max() < target:
        return math.nan, False
    if x.min() >= target:
        return float(y.min()), False
    order = np.argsort(x, kind="stable")
    return float(np.interp(target, x[order], y[order])), True


class TableBuilder:
    """Builds :class:`Track` s from the cells of one manifest.

    Args:
        cells: the manifest's records.
        reference: the defense Δutility is paired against (and that is always admitted).
        budget: the utility budget.
        replicates: bootstrap replicates of every interval.
        admission: ``selection`` or ``preregistered`` (see the module docstring).
        preregistered: defense -> {track label ``backbone@split`` or ``*``: knob value}, for the preregistered rule.
        cost_budget: cost (one of :data:`COST_RATIOS`) -> the largest ratio to the reference's that is admitted.
    """

    def __init__(self, cells: list[CellData], reference: str, budget: float, replicates: int,
                 admission: str = "selection", preregistered: Mapping[str, Mapping[str, float]] | None = None,
                 cost_budget: Mapping[str, float] | None = None):
        if not 0.0 <= budget <= 1.0:
            raise SplitbenchError(f"utility budget must be in [0, 1], got {budget}")
        if replicates < 1:
            raise SplitbenchError(f"bootstrap replicates must be at least 1, got {replicates}")
        if admission not in ADMISSION_RULES:
            raise SplitbenchError(f"admission rule {admission!r} is not one of {', '.join(ADMISSION_RULES)}")
        others = any(c.defense != reference for c in cells)  # a run of the reference alone needs none
        if admission == "preregistered" and not preregistered and others:
            raise SplitbenchError("the preregistered admission rule needs each defense's preregistered setting")
        self.cells = cells
        self.reference = reference
        self.budget = budget
        self.replicates = replicates
        self.admission = admission
        self.preregistered = {d: dict(v) for d, v in (preregistered or {}).items()}
        self.cost_budget = check_cost_budget(cost_budget or {}, "cost budget")

    def build(self) -> list[Track]:
        by_track: dict[tuple, list[CellData]] = defaultdict(list)
        for c in self.cells:
            by_track[c.track].append(c)
        return [self.track(key, cells) for key, cells in sorted(by_track.items())]

    # -- one track --------------------------------------------------------------------------------------------------
    def resample(self, key: tuple[str, str, str], cells: list[CellData]) -> TrackResample:
        """The track's one crossed draw, sized from its records' outcomes."""
        prefixes, n_val = set(), set()
        for c in cells:
            if "outcomes" not in c.record:
                continue
            out = c.outcomes()
            if "model/utility" in out:
                prefixes.add(len(out["model/utility"]))
            if "model/val_utility" in out:
                n_val.add(len(out["model/val_utility"]))
            if c.status == "ok" and "attack/sample" in out:
                prefixes.add(len(out["attack/sample"]))
        if len(n_val) > 1:
            raise SplitbenchError(f"track {' · '.join(key)}: models were validated on different numbers of samples "
                                  f"({sorted(n_val)}); records of one track must share the validation split")
        seeds = sorted({c.seed for c in cells if not c.model_only})
        extra = sorted({c.seed for c in cells} - set(seeds))  # admission seeds: after the attacked ones
        return TrackResample(seeds, sorted(prefixes), n_val.pop() if n_val else 0, self.replicates, key, extra)

    def track(self, key: tuple[str, str, str], cells: list[CellData]) -> Track:
        shares = [c for c in cells if c.aux_fraction != 1.0]
        cells = [c for c in cells if c.aux_fraction == 1.0]
        t = self._track(key, cells)
        t.data_free_attacks = sorted({c.attack for c in cells if c.data_free_attack})
        if shares:
            self.knowledge(t, key, cells, shares)
        return t

    def knowledge(self, t: Track, key: tuple[str, str, str], cells: list[CellData], shares: list[CellData]) -> None:
        """Each row's privacy score against the attackers that had only a share of their aux data: the attacks
        run at that share stand in for their full-aux runs; the others keep their full-aux cells."""
        resample = self.resample(key, cells + shares)
        for f in sorted({c.aux_fraction for c in shares}, reverse=True):
            mine = [c for c in shares if c.aux_fraction == f]
            swapped = {c.attack for c in mine}
            t.knowledge_attacks[f] = sorted(swapped)
            by_row: dict[tuple[str, float], list[CellData]] = defaultdict(list)
            for c in [c for c in cells if c.attack not in swapped] + mine:
                by_row[c.row_key].append(c)
            kinds = {c.attack: c.kind for c in cells + mine if not c.model_only}
            attacks = sorted({c.attack for c in cells if not c.model_only})
            t.knowledge[f] = {rk: self.row(rc, [], attacks, kinds, resample, f"{' · '.join(key)} at {f:g} aux").privacy
                              for rk, rc in by_row.items()}

    def _track(self, key: tuple[str, str, str], cells: list[CellData]) -> Track:
        attacks = sorted({c.attack for c in cells if not c.model_only})
        kinds = {c.attack: c.kind for c in cells if not c.model_only}
        attacked = {c.seed for c in cells if not c.model_only}
        by_row: dict[tuple[str, float], list[CellData]] = defaultdict(list)
        for c in cells:
            by_row[c.row_key].append(c)
        t = Track(*key, rows=[], reference=self.reference, budget=self.budget, attacks=attacks, kinds=kinds,
                  admission=self.admission, replicates=self.replicates, seeds=tuple(sorted(attacked)),
                  admission_seeds=tuple(sorted({c.seed for c in cells} - attacked)),
                  cost_budget=dict(self.cost_budget))
        resample = self.resample(key, cells)
        ref_keys = sorted(k for k in by_row if k[0] == self.reference)
        ref_cells = by_row[ref_keys[0]] if ref_keys else []
        if not ref_keys:
            t.flags.append(f"the reference defense {self.reference!r} was not run on this track: no Δutility, no "
                           "admission, no ranks")
        for rk in sorted(by_row):
            t.rows.append(self.row(by_row[rk], ref_cells, attacks, kinds, resample, " · ".join(key)))
        ref_row = next((r for r in t.rows if (r.defense, r.knob_value) == (ref_keys[0] if ref_keys else None)), None)
        self.guards(t, ref_row, ref_cells)
        if ref_row is not None:
            self.cost_ratios(t, ref_row)
            (self.preregistered_admission if self.admission == "preregistered" else self.select)(t, ref_row)
            self.matched(t)
        if t.ranked:
            self.rank(t)
            self.pareto(t)
        return t

    def row(self, cells: list[CellData], ref_cells: list[CellData], attacks: list[str], kinds: dict[str, str],
            resample: TrackResample, where: str) -> Row:
        first = cells[0].config["defense"]
        r = Row(cells[0].defense, first["knob"], float(first["knob_value"]), first.get("more_private", "higher"),
                bool(first.get("white_box_client", True)), tuple(sorted({c.seed for c in cells})), first["name"])
        r.cells = tuple(sorted((str(c.record.get("config_hash") or c.path.name), str(c.status),
                                str((c.record.get("outcomes") or {}).get("sha256") or "")) for c in cells))
        models = _by_seed(c for c in cells if "outcomes" in c.record)
        if models:
            self.utilities(r, models, _by_seed(c for c in ref_cells if "outcomes" in c.record), resample)
            deployed = sorted({m for s in models for m in models[s].record["metrics"] if m.startswith(DEPLOYED)})
            r.cost = {m: float(np.nanmean([models[s].metric(m) for s in models])) for m in (*COST, *deployed)}
        reasons = {c.record.get("reason") or "" for c in cells if c.status == "not_applicable"}
        if all(c.status == "not_applicable" for c in cells) and any(x.startswith("defense not applicable") for x in
                                                                     reasons):
            r.not_applicable = sorted(reasons)[0].removeprefix("defense not applicable: ")
        for a in attacks:
            mine = [c for c in cells if c.attack == a]
            r.attacks[a] = self.attack_summary(a, kinds[a], mine, resample, f"{where}: {r.label} {a}")
        self.families(r)
        return r

    def utilities(self, r: Row, models: dict[int, CellData], refs: dict[int, CellData],
                  resample: TrackResample) -> None:
        """Utility and validation utility, and both paired against the reference on the seeds they share."""
        def outcome(cell: CellData, name: str) -> np.ndarray:
            return np.asarray(cell.outcomes()[name], dtype=np.float64)

        for attr, name, split, base in (("utility", "model/utility", "eval", models),
                                        ("delta_utility", "model/utility", "eval", refs),
                                        ("val_utility", "model/val_utility", "val", models),
                                        ("val_delta_utility", "model/val_utility", "val", refs)):
            paired = base is refs
            seeds = sorted(set(models) & set(refs)) if paired else sorted(models)
            if not seeds or any(name not in models[s].outcomes() for s in seeds):
                continue
            values = [outcome(models[s], name) - (outcome(refs[s], name) if paired else 0.0) for s in seeds]
            point, reps = resample.apply(mean_of(np.concatenate(values)), len(seeds), len(values[0]), split)
            setattr(r, attr, estimate(point, reps))
            if attr == "val_delta_utility":
                r.reps["val_delta"] = reps if reps is not None else np.asarray([point])
                r.val_delta_seeds = tuple(float(np.mean(v)) for v in values)

    def attack_summary(self, attack: str, kind: str, cells: list[CellData], resample: TrackResample,
                       where: str) -> AttackSummary:
        s = self._attack_summary(attack, kind, cells, resample, where)
        s.tuned = any(c.config["attack"].get("tuning") for c in cells)
        return s

    def _attack_summary(self, attack: str, kind: str, cells: list[CellData], resample: TrackResample,
                        where: str) -> AttackSummary:
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
        samples, k, n = _pooled([ok[s].attack_samples() for s in sorted(ok)], where)
        stats = scorer_for(kind).statistics(samples)
        point, reps = resample.apply(stats["leakage"], k, n)
        point_draw = identity(k, n)
        figures = {name: float(np.asarray(stat(point_draw))[0]) for name, stat in stats.items()}
        held = [ok[s].attack_samples("holdout/") for s in sorted(ok)]
        holdout = math.nan
        if all(h.get("sample") is not None and len(h["sample"]) for h in held):
            pooled = {key: np.concatenate([np.asarray(h[key]) for h in held], axis=-1) for key in held[0]}
            m = len(pooled["sample"])
            h_stats = scorer_for(kind).statistics(pooled)
            holdout = float(h_stats.get("leakage_raw", h_stats["leakage"])(identity(1, m))[0])
            figures["holdout_leakage"] = holdout
        flagged = sum(1 for c in ok.values() if c.metric("not_converged") == 1.0)
        return AttackSummary(attack, kind, wb, "ok", leakage=estimate(point, reps), figures=figures,
                             reps=reps if reps is not None else np.asarray([point]), holdout=holdout,
                             not_converged=flagged, seeds=len(ok))

    def families(self, r: Row) -> None:
        """Each family's representative (the attack that leaks most on the attacker's own hold-out) and the
        privacy scores, replicate by replicate on the shared draw; beside it the strongest attack on eval."""
        parts: dict[str, np.ndarray] = {}
        parts_bb: dict[str, np.ndarray] = {}
        points: dict[str, float] = {}
        points_bb: dict[str, float] = {}
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
            best = max(ok, key=lambda a: a.leakage.value)
            r.family_best_eval[fam] = estimate(best.leakage.value, _nanmax([a.reps for a in ok])
                                               if self.replicates > 1 else None)
            r.family_best_eval_attack[fam] = best.attack
            rep_attack, r.family_chosen_on[fam] = representative(ok)
            r.family[fam] = rep_attack.leakage
            r.family_attack[fam] = rep_attack.attack
            if fam == "transfer":
                r.reps["transfer"] = rep_attack.reps
            else:
                parts[fam], points[fam] = rep_attack.reps, rep_attack.leakage.value
                bb = [a for a in ok if not a.white_box]
                if bb:
                    bb_attack, _ = representative(bb)
                    parts_bb[fam], points_bb[fam] = bb_attack.reps, bb_attack.leakage.value
        for name, p, v in (("privacy", parts, points), ("privacy_blackbox", parts_bb, points_bb)):
            if r.complete and p:
                reps = _nanmax(list(p.values()))
                setattr(r, name, estimate(max(v.values()), reps if self.replicates > 1 else None))
                r.reps[name] = reps

    # -- guards, admission, ranks -----------------------------------------------------------------------------------
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

    def cost_ratios(self, t: Track, ref: Row) -> None:
        """Each row's client cost as a ratio to the reference's: MACs and parameters as deployed where every row of
        the track was deployed on one backbone, else on the track; bytes sent on the track."""
        labels = {k[len(DEPLOYED):].rsplit("/", 1)[0] for r in t.rows for k in r.cost if k.startswith(DEPLOYED)}
        deployed = sorted(labels)[0] if len(labels) == 1 else None
        if deployed and not all(f"{DEPLOYED}{deployed}/client_macs" in r.cost for r in t.rows if r.cost):
            deployed = None
        t.cost_basis = f"deployed on {deployed}" if deployed else "on this track"
        for r in t.rows:
            for m in COST_RATIOS:
                key = f"{DEPLOYED}{deployed}/{m}" if deployed and m != "payload_bytes" else m
                mine, theirs = r.cost.get(key, math.nan), ref.cost.get(key, math.nan)
                r.cost_ratio[m] = mine / theirs if theirs and not math.isnan(theirs) else math.nan

    def over_cost(self, r: Row, ref: Row) -> str:
        """Why the row is outside the suite's cost budget ("" when it is within, or is the reference)."""
        if r is ref:
            return ""
        for m, limit in sorted(self.cost_budget.items()):
            ratio = r.cost_ratio.get(m, math.nan)
            if math.isnan(ratio):
                return f"its {COST_NAMES[m]} was not measured, so the cost budget cannot admit it"
            if ratio > limit + 1e-9:
                return f"its {COST_NAMES[m]} is {ratio:.2f}x the reference's, above the cost budget of {limit:g}x"
        return ""

    def pareto(self, t: Track) -> None:
        """Mark the ranked rows that no other ranked row beats on both privacy (interval entirely below) and client
        MACs (ratio lower by more than 1%)."""
        rows = [r for r in t.selected() if r.rank is not None and not math.isnan(r.privacy.value)
                and not math.isnan(r.cost_ratio.get(PARETO_COST, math.nan))]

        def beats(q: Row, r: Row) -> bool:
            q_hi = q.privacy.hi if q.privacy.has_interval else q.privacy.value
            r_lo = r.privacy.lo if r.privacy.has_interval else r.privacy.value
            return q_hi < r_lo and q.cost_ratio[PARETO_COST] < 0.99 * r.cost_ratio[PARETO_COST]

        for r in rows:
            r.pareto = not any(beats(q, r) for q in rows if q is not r)

    def _within(self, r: Row) -> np.ndarray:
        """Per replicate: is the row's validation Δutility within the budget."""
        v = r.reps.get("val_delta", np.asarray([r.val_delta_utility.value]))
        return np.nan_to_num(v, nan=-np.inf) >= -self.budget - 1e-12

    def _by_defense(self, t: Track) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = defaultdict(list)
        for r in t.rows:
            if not r.not_applicable:
                out[r.defense].append(r)
        return out

    def select(self, t: Track, ref: Row) -> None:
        """Selection rule: per defense, the most private knob whose validation Δutility is within the budget, in
        the point estimate and again in every replicate."""
        for name, rows in self._by_defense(t).items():
            rows = sorted(rows, key=lambda r: r.knob_value, reverse=rows[0].more_private == "higher")
            if name == ref.defense:
                rows = [ref]
            over = {id(r): self.over_cost(r, ref) for r in rows}
            for r in rows:
                r.admissible = r is ref or (not math.isnan(r.val_delta_utility.value)
                                            and r.val_delta_utility.value >= -t.budget - 1e-12 and not over[id(r)])
            pick = next((r for r in rows if r.admissible), None)
            reps = {figure: np.full(self.replicates, np.nan) for figure in VIEWS.values()}
            taken = np.zeros(self.replicates, dtype=bool)
            for r in rows:  # most private first: each replicate takes the first setting within its budget
                now = ~taken & (np.ones(self.replicates, bool) if r is ref else self._within(r) & (not over[id(r)]))
                r.selection = float(now.mean()) if self.replicates > 1 else math.nan
                for figure in VIEWS.values():
                    if figure in r.reps:
                        reps[figure][now] = r.reps[figure][now]
                taken |= now
            if pick is None:
                for r in rows:
                    r.note = over[id(r)] and f"not admitted: {over[id(r)]}" or \
                        "no knob setting within the utility budget on validation data"
                continue
            pick.selected = True
            pick.borderline = self.replicates > 1 and pick.selection < BORDERLINE
            for figure in VIEWS.values():
                pick.reps[f"rank/{figure}"] = reps[figure]

    @staticmethod
    def seed_spread(rows: Iterable[Row]) -> float:
        """The track's typical seed-to-seed spread of a paired validation Δutility: the median over ``rows`` (the
        track's rows but the reference's, with two seeds or more) of each row's standard deviation over seeds; NaN
        when no row has two seeds."""
        sds = [sd for r in rows if not math.isnan(sd := r.val_delta_seed_sd)]
        return float(np.median(sds)) if sds else math.nan

    @staticmethod
    def pooled_deviations(rows: Iterable[Row], budget: float) -> np.ndarray:
        """Every seed's deviation from its row's mean paired validation Δutility, pooled over the track's rows near
        the budget (each row's deviations scaled by ``sqrt(k / (k - 1))`` so that ``k`` seeds' deviations have the
        spread of a fresh seed). Rows are pooled when they have two seeds or more, vary at all (a row whose every
        seed equals the reference's is the reference's model) and have a mean Δutility at or above twice the
        budget's loss: a setting that far below the budget is never judged near it, and its spread is its own.
        ``rows`` are the track's rows but the reference's."""
        out: list[np.ndarray] = []
        for r in rows:
            v = np.asarray(r.val_delta_seeds, dtype=np.float64)
            if len(v) < 2 or not np.all(np.isfinite(v)) or np.ptp(v) == 0 or v.mean() < -2 * budget:
                continue
            out.append((v - v.mean()) * math.sqrt(len(v) / (len(v) - 1)))
        return np.concatenate(out) if out else np.zeros(0)

    @staticmethod
    def machine_margin(r: Row, track_spread: float, deviations: np.ndarray | None = None) -> float:
        """How far a re-run of ``r`` on other numerics may move the lower bound of its validation Δutility.

        Training on another CPU model or thread count diverges from the first after a few hundred steps, so each
        seed's model is in effect a fresh draw. The margin is :func:`machine_factor` (for the row's seed count)
        times ``s``, the row's own seed-to-seed spread but at least the track's median (a spread from five seeds is
        itself noisy, and may be small by chance), or, when wider, :func:`tail_band` of the track's
        :meth:`pooled_deviations` for the row's seed count; NaN with fewer than two seeds."""
        s = r.val_delta_seed_sd
        if math.isnan(s):
            return math.nan
        if not math.isnan(track_spread):
            s = max(s, track_spread)
        k = len(r.val_delta_seeds)
        margin = machine_factor(k) * s
        tail = tail_band(deviations, k) if deviations is not None else math.nan
        return margin if math.isnan(tail) else max(margin, tail)

    @staticmethod
    def admission_bound(r: Row) -> float:
        """The lower 95% bound of a row's paired validation Δutility (the point value without a bootstrap)."""
        e = r.val_delta_utility
        return e.lo if e.has_interval else e.value

    @classmethod
    def mark_borderline(cls, pick: Row, budget: float, spread: float, deviations: np.ndarray) -> None:
        """Set a preregistered (non-reference) row's :attr:`Row.admission_margin`, *borderline* flag and note, from
        the track's seed spread and pooled deviations; its ``admissible`` and ``over_cost_reason`` are already decided.
        The site calls this again over every entry of a track, so that the band pools all of their settings."""
        lo = cls.admission_bound(pick)
        over = pick.over_cost_reason
        pick.admission_margin = cls.machine_margin(pick, spread, deviations)
        pick.borderline = not over and not math.isnan(lo) and abs(lo + budget) < pick.admission_margin
        if over:
            pick.note = f"the preregistered setting is not admitted: {over}"
        elif not pick.admissible:
            pick.note = (f"the preregistered setting is not admitted: the lower bound of its validation Δutility "
                         f"({lo:.3f}) is below -{budget:.3f}")
            if pick.borderline:
                pick.note += (f" (borderline: within ±{pick.admission_margin:.3f}, the spread of a re-run on other "
                              "numerics, so another machine may admit it)")

    def preregistered_admission(self, t: Track, ref: Row) -> None:
        """Preregistered rule: the one setting each defense named for this track, admitted when the lower bound of
        its validation Δutility is within the budget; *borderline* (admitted or not) when that bound lies within
        :meth:`machine_margin` of the budget, so that another machine's re-run may decide otherwise."""
        others = [r for r in t.rows if r is not ref]
        spread, deviations = self.seed_spread(others), self.pooled_deviations(others, t.budget)
        for name, rows in self._by_defense(t).items():
            if name == ref.defense:
                pick = ref
            else:
                # a variant row's setting is preregistered under its own name; records made before variants were
                # rows (one variant per run) under the defense's
                want = self.preregistered.get(name) or self.preregistered.get(rows[0].method, {})
                value = want.get(t.label, want.get("*"))
                if value is None:
                    raise SplitbenchError(f"track {t.label}: defense {name!r} has no preregistered setting (the "
                                          "preregistered admission rule needs one per defense and track)")
                pick = next((r for r in rows if abs(r.knob_value - float(value)) < 1e-12), None)
                if pick is None:
                    raise SplitbenchError(f"track {t.label}: the preregistered setting {name}@{float(value):g} is not "
                                          f"in the run (it ran {', '.join(r.label for r in rows)})")
            pick.preregistered = True
            lo = self.admission_bound(pick)
            over = self.over_cost(pick, ref)
            pick.over_cost_reason = over
            pick.admissible = pick is ref or (not math.isnan(lo) and lo >= -t.budget - 1e-12 and not over)
            pick.selection = float(self._within(pick).mean()) if self.replicates > 1 else math.nan
            if pick is not ref:
                self.mark_borderline(pick, t.budget, spread, deviations)
            if not pick.admissible and pick is not ref:
                continue
            pick.selected = True
            for figure in VIEWS.values():
                if figure in pick.reps:
                    pick.reps[f"rank/{figure}"] = pick.reps[figure]
        judged = [r for r in t.rows if r.preregistered and r is not ref]
        if len({len(r.val_delta_seeds) for r in judged}) > 1:  # the settle rule gave some of them more seeds
            for r in judged:
                r.seed_note = f"{len(r.val_delta_seeds)} seeds"

    def matched(self, t: Track) -> None:
        """Each defense's privacy at matched utility (validation Δutility = -budget), per replicate."""
        for name, rows in self._by_defense(t).items():
            rows = [r for r in rows if "privacy" in r.reps and "val_delta" in r.reps and r.white_box_client]
            if not rows:
                continue
            x = np.asarray([r.val_delta_utility.value for r in rows])
            y = np.asarray([r.privacy.value for r in rows])
            point, reached = matched_privacy(x, y, -t.budget)
            m = Matched(name, reached=reached, settings=len(rows))
            if self.replicates > 1:
                xs = np.stack([r.reps["val_delta"] for r in rows])
                ys = np.stack([r.reps["privacy"] for r in rows])
                m.reps = np.asarray([matched_privacy(xs[:, b], ys[:, b], -t.budget)[0]
                                     for b in range(self.replicates)])
            m.privacy = estimate(point, m.reps)
            t.matched[name] = m

    def rank(self, t: Track) -> None:
        chosen = t.selected()
        eligible = {
            "rank": [r for r in chosen if r.white_box_client and r.complete and not math.isnan(r.privacy.value)],
            "rank_blackbox": [r for r in chosen if r.complete and not math.isnan(r.privacy_blackbox.value)],
            "rank_transfer": [r for r in chosen if "transfer" in r.family
                              and not math.isnan(r.family["transfer"].value)],
        }
        for view, rows in eligible.items():
            figure = VIEWS[view]
            points = [(r.family["transfer"] if figure == "transfer" else getattr(r, figure)).value for r in rows]
            reps = (np.stack([r.reps[f"rank/{figure}"] for r in rows])
                    if self.replicates > 1 and rows else None)
            for r, (p, lo, hi) in zip(rows, rank_intervals(points, reps)):
                setattr(r, view, (lo, hi))
                r.rank_point[view] = p
        ms = [m for m in t.matched.values() if not math.isnan(m.privacy.value)]
        reps = np.stack([m.reps for m in ms]) if self.replicates > 1 and ms else None
        for m, (p, lo, hi) in zip(ms, rank_intervals([m.privacy.value for m in ms], reps)):
            m.rank, m.rank_point = (lo, hi), p
