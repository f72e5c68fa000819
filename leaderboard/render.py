"""Render leaderboard tables (markdown, CSV) from the records of one run manifest.

The numbers come from :mod:`leaderboard.protocol` (one definition of every figure, with its 95% bootstrap
interval); this module only lays them out. Per track: the ranked rows (one per defense: its most private knob
setting within the utility budget on validation data), the black-box view, the transfer view, every knob setting
(the privacy-utility curve), and the floors each leakage scale is measured from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import atomic_write_text
from benchmark.measure.intervals import Estimate
from benchmark.measure.metrics import COST_NAMES, DEPLOYED
from benchmark.store.manifest import load_manifest
from benchmark.store.records import iter_records, load_frame
from leaderboard.markdown import code, text
from leaderboard.protocol import FAMILIES, CellData, Row, TableBuilder, Track, admission_text


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def est_cell(e: Estimate, digits: int = 3) -> str:
    if math.isnan(e.value):
        return "–"
    if not e.has_interval:
        return _fmt(e.value, digits)
    return f"{_fmt(e.value, digits)} [{_fmt(e.lo, digits)}, {_fmt(e.hi, digits)}]"


def _rank(r: tuple[int, int] | None, point: int | None = None) -> str:
    """A rank with its interval over bootstrap replicates: ``2 (1–3)``; ``2`` when the interval is one rank."""
    return rank_text(r, point)


def rank_text(r: tuple[int, int] | None, point: int | None = None) -> str:
    """How a rank is written everywhere (tables and site): the point estimate's rank, then its 95% interval over
    the bootstrap replicates when that spans more than one rank."""
    if r is None:
        return "–"
    span = str(r[0]) if r[0] == r[1] else f"{r[0]}–{r[1]}"
    if point is None:
        return span
    return str(point) if r[0] == r[1] == point else f"{point} ({span})"


def build_tracks(run_dir: str | Path, budget: float | None = None, reference: str | None = None,
                 replicates: int | None = None, manifest: str | None = None, partial: bool = False,
                 attacks: Collection[str] | None = None) -> tuple[list[Track], dict[str, Any]]:
    """The tracks of one manifest of ``run_dir`` (presentation settings from the manifest unless given).

    ``attacks`` (labels), when given, are the only attacks whose cells count: the site ranks an official entry on
    the attacks its suite runs today, so entries made before an attack left the suite rank like those made after.
    The labels of the cells left out are in the returned manifest under ``attacks_left_out``."""
    man = load_manifest(Path(run_dir), manifest)
    pres = man.get("presentation", {})
    budget = pres.get("utility_budget", 0.02) if budget is None else budget
    reference = pres.get("reference", "no_pruning") if reference is None else reference
    replicates = pres.get("bootstrap", 1000) if replicates is None else replicates
    cells = [CellData(p, rec) for p, rec in iter_records(Path(run_dir), man["manifest_id"], partial)]
    left_out = sorted({c.attack for c in cells if attacks is not None and not c.model_only
                       and c.attack not in attacks})
    if left_out:
        cells = [c for c in cells if c.model_only or c.attack not in left_out]
    admission = pres.get("admission", "selection")
    tracks = TableBuilder(cells, reference, float(budget), int(replicates), admission,
                          pres.get("preregistered"), pres.get("cost_budget")).build()
    settle = (man.get("resolved_suite") or {}).get("settle")
    for t in tracks:
        t.settle = dict(settle) if isinstance(settle, dict) else None
    man = {**man, "presentation": {**pres, "utility_budget": budget, "reference": reference,
                                   "bootstrap": replicates}, "attacks_left_out": left_out}
    return tracks, man


def build_tables(run_dir: str | Path, **kw: Any) -> list[Track]:
    """The tracks of a run directory (see :func:`build_tracks`)."""
    return build_tracks(run_dir, **kw)[0]


# -- markdown -----------------------------------------------------------------------------------------------------
def _leak(e: Estimate, raw: float | None) -> str:
    """A leakage on its scale; below the floor "at floor" with the signed figure beside it."""
    if e.value == 0.0 and raw is not None and raw < 0.0:
        return f"at floor (raw {raw:.2f})" + (f" [{_fmt(e.lo, 2)}, {_fmt(e.hi, 2)}]" if e.has_interval else "")
    return est_cell(e, 2)


def family_cell(r: Row, fam: str) -> str:
    if fam not in r.family:
        return "n/a"
    e = r.family[fam]
    if math.isnan(e.value):
        return "incomplete"
    attack = r.family_attack.get(fam, "")
    raw = r.attacks[attack].figures.get("leakage_raw") if attack in r.attacks else None
    how = "; chosen on eval" if r.family_chosen_on.get(fam) == "eval" else ""
    s = r.attacks.get(attack)
    if s is not None and s.not_converged:
        how += f"; not converged on {s.not_converged}/{s.seeds} seeds"
    return f"{_leak(e, raw)} ({text(attack)}{how})"


def _best_on_eval(r: Row) -> str:
    """The strongest attack of each privacy family on eval, where it is not the representative (optimistic)."""
    parts = []
    for fam in ("attribute", "reconstruction"):
        best = r.family_best_eval_attack.get(fam)
        if best and best != r.family_attack.get(fam):
            parts.append(f"{fam[:5]}. {est_cell(r.family_best_eval[fam], 2)} ({text(best)})")
    return "; ".join(parts) or "same"


def _attack_cell(r: Row, attack: str) -> str:
    s = r.attacks.get(attack)
    if s is None or s.status == "missing":
        return "–"
    if s.status != "ok":
        return "failed" if s.status == "failed" else "n/a"
    f = s.figures
    extra = ""
    if "attribute_accuracy" in f:
        extra = f"acc {_fmt(f['attribute_accuracy'])}"
    elif "ssim" in f:
        extra = f"SSIM {_fmt(f['ssim'])}, {f['psnr']:.1f} dB"
    elif "unintended_acc_max" in f:
        acc = f.get("adaptive_unintended_acc_max", f["unintended_acc_max"])
        sr = f.get("adaptive_suppression_ratio_max", f.get("suppression_ratio_max"))
        extra = f"acc {_fmt(acc)}, SR {_fmt(sr, 2)}"
    if s.not_converged:
        extra += f"; not converged {s.not_converged}/{s.seeds}"
    return f"{_leak(s.leakage, f.get('leakage_raw'))} ({extra})"


_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+")


def _cost_cells(r: Row, deployed: list[str]) -> list[str]:
    c = r.cost
    out = [_fmt(c.get("client_ms_b1_p50"), 2), _fmt(c.get("payload_bytes"), 0), _fmt(c.get("client_params"), 0),
           _fmt(c.get("client_macs"), 0)]
    for label in deployed:
        out += [_fmt(c.get(f"{DEPLOYED}{label}/client_ms_b1_p50"), 2), _fmt(c.get(f"{DEPLOYED}{label}/client_macs"), 0)]
    return out


def deployed_labels(rows: list[Row]) -> list[str]:
    """The real backbones (``name@split``) the rows' clients were also timed on (a suite's ``deployment``); a
    label that is not a plain ``name@split`` (as a record from elsewhere could hold) is left out, not rendered."""
    labels = {k[len(DEPLOYED):].rsplit("/", 1)[0] for r in rows for k in r.cost if k.startswith(DEPLOYED)}
    return sorted(x for x in labels if _PLAIN_LABEL.fullmatch(x))


def _deployed_note(rows: list[Row], labels: list[str]) -> list[str]:
    out = []
    for label in labels:
        sizes = sorted({int(r.cost[k]) for r in rows for k in r.cost
                        if k == f"{DEPLOYED}{label}/image_size" and not math.isnan(r.cost[k])})
        missing = sorted({r.defense for r in rows if f"{DEPLOYED}{label}/client_ms_b1_p50" not in r.cost})
        line = (f"Deployed on {code(label)}: each client also timed as the same defense and knob built on "
                f"{text(label)} at {'/'.join(str(s) for s in sizes)} px, with the pruning its fit chose carried over "
                "by the fit's rule (untrained weights; cost only).")
        if missing:
            line += (f" No figures there for {', '.join(code(d) for d in missing)} (not deployable, or run before "
                     "its suite asked for them).")
        out.append(line)
    return out + ([""] if out else [])


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out + [""]


def knob_cell(r: Row) -> str:
    return f"{text(r.knob)}={r.knob_value:g}"


def _knowledge_markdown(t: Track) -> list[str]:
    if not t.knowledge:
        return []
    shares = sorted(t.knowledge, reverse=True)
    lines = ["### Attacker knowledge", "",
             "Each ranked setting's privacy score when the attacker holds only a share of its aux data (the attacks "
             "listed ran again with that share; the others keep their full-aux cells). A defense that is private "
             "only against a data-starved attacker shows it here.", ""]
    rows = []
    for r in sorted(t.selected(), key=lambda r: (r.defense != t.reference, r.defense)):
        rows.append([code(r.defense), knob_cell(r), est_cell(r.privacy, 2)]
                    + [est_cell(t.knowledge[f].get((r.defense, r.knob_value), Estimate(math.nan)), 2) for f in shares])
    head = ["defense", "knob", "all of aux"] + [f"{f:.0%} of aux" for f in shares]
    note = "; ".join(f"{f:.0%}: {', '.join(text(a) for a in t.knowledge_attacks[f])}" for f in shares)
    free = ("" if not t.data_free_attacks else " Data-free attacks, the zero-data end of this axis (they read no aux "
            f"data, so they count the same at every share): {', '.join(text(a) for a in t.data_free_attacks)}.")
    return lines + md_table(head, rows) + [f"Attacks run with a share of aux: {note}.{free}", ""]


def _matched_markdown(t: Track) -> list[str]:
    ms = sorted(t.matched.values(), key=lambda m: (m.rank_point is None, m.rank_point or 0, m.defense))
    if not ms:
        return []
    lines = ["### Privacy at matched utility", "",
             f"Each defense's privacy score interpolated on its privacy–utility curve (its settings' validation "
             f"Δutility against their privacy score) at Δutility = -{t.budget:.3f}, in every replicate. Where no "
             "setting spends that much utility, the most private setting's score stands (\"not reached\"); lower "
             "is better.", ""]
    rows = [[_rank(m.rank, m.rank_point), code(m.defense), est_cell(m.privacy, 2),
             "reached" if m.reached else "not reached", str(m.settings)] for m in ms]
    return lines + md_table(["rank", "defense", "privacy at matched utility", "budget", "settings"], rows)


def ratio_cell(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.2f}x"


def _cost_markdown(t: Track, chosen: list[Row]) -> list[str]:
    """Privacy x client cost: every ranked row's client cost as a ratio to the reference's, and the Pareto front."""
    rows = [r for r in chosen if r.rank is not None and r.cost_ratio]
    if not rows:
        return []
    budget = (" Cost budget: " + ", ".join(f"{COST_NAMES[k]} at most {v:g}x the reference's"
                                           for k, v in sorted(t.cost_budget.items())) + " (a second admission "
              "condition)." if t.cost_budget else " This suite declares no cost budget.")
    lines = ["### Privacy × client cost", "",
             f"Each ranked row's client cost as a ratio to the reference's (MACs and parameters {t.cost_basis}; "
             "bytes sent on this track). Pareto ✓: no other ranked row beats it on both privacy (its 95% interval "
             f"entirely below) and client MACs (a ratio lower by more than 1%).{budget}", ""]
    body = [[_rank(r.rank, r.rank_point.get("rank")), code(r.defense), knob_cell(r), est_cell(r.privacy, 2),
             ratio_cell(r.cost_ratio.get("client_macs")), ratio_cell(r.cost_ratio.get("client_params")),
             ratio_cell(r.cost_ratio.get("payload_bytes")), "✓" if r.pareto else ""]
            for r in sorted(rows, key=lambda r: (not r.pareto, r.cost_ratio.get("client_macs", math.inf)))]
    over = sorted({(r.defense, r.note) for r in t.rows if "cost budget" in r.note})
    tail = ([("Outside the cost budget: " + "; ".join(f"{code(d)} ({text(note)})" for d, note in over) + "."), ""]
            if over else [])
    return lines + md_table(["rank", "defense", "knob", "privacy score", "client MACs", "client params", "bytes sent",
                           "Pareto"], body) + tail


def admitted_cell(r: Row, t: Track) -> str:
    """The admission column: how often the setting is chosen (selection) or within budget (preregistered)."""
    if math.isnan(r.selection):
        return "–"
    text = f"{r.selection:.0%}" + (" (borderline)" if r.borderline else "")
    return f"{text}, {r.seed_note}" if r.seed_note else text


def track_markdown(t: Track, replicates: int) -> list[str]:
    lines = [f"## {text(t.scenario)} · {text(t.backbone)} @ {text(t.split)}", ""]
    ref = next((r for r in t.rows if r.defense == t.reference), None)
    seeds = f"{len(t.seeds)} seed{'s' if len(t.seeds) != 1 else ''}"
    admission = admission_text(t.admission, t.budget, len(t.seeds), len(t.admission_seeds), t.settle)
    lines.append(f"Reference {code(t.reference)}" + (f" (utility {est_cell(ref.utility)})" if ref else "") +
                 f". {admission} Privacy score = the worse of the attribute "
                 "and reconstruction leakage, each that of its family's representative, the attack that leaks most "
                 "on the attacker's own hold-out (0 = no more than the floor, \"at floor\" below it; 1 = everything; "
                 "lower is better); the strongest attack on eval is shown beside it, as an optimistic figure. "
                 "Intervals: 95% bootstrap over seeds and eval samples "
                 f"crossed ({seeds}, {replicates} replicates), one draw shared by every row; a rank is the point "
                 "estimate's, with its 95% interval over the replicates in brackets.")
    lines.append("")
    for f in t.flags:
        lines += [f"**Not ranked:** {text(f)}.", ""]
    chosen = sorted(t.selected(), key=lambda r: (r.rank is None, r.rank_point.get("rank", 0),
                                                 r.privacy.value if not math.isnan(r.privacy.value) else math.inf))
    head = ["rank", "defense", "knob", "privacy score", "attribute", "reconstruction", "utility", "Δutility",
            "val Δutility", "preregistered, within budget" if t.admission == "preregistered" else "chosen in",
            "transfer", "best on eval (optimistic)", "vs reference", "tuned attacks", "client ms (b1 p50)",
            "bytes/sample", "client params", "client MACs"]
    deployed = deployed_labels(chosen)
    for label in deployed:
        head += [f"ms on {text(label)} (b1 p50)", f"MACs on {text(label)}"]
    rows = []
    for r in chosen:
        rank = _rank(r.rank, r.rank_point.get("rank"))
        if not r.white_box_client:
            rank = "bb only"
        elif not r.complete:
            rank = "incomplete"
        rows.append([rank, code(r.defense), knob_cell(r), est_cell(r.privacy, 2), family_cell(r, "attribute"),
                     family_cell(r, "reconstruction"), est_cell(r.utility), est_cell(r.delta_utility),
                     est_cell(r.val_delta_utility), admitted_cell(r, t), family_cell(r, "transfer"), _best_on_eval(r),
                     _fmt(r.relative, 2), r.tuned] + _cost_cells(r, deployed))
    lines += ["### Ranking", ""] + md_table(head, rows) + _deployed_note(chosen, deployed)
    na = {r.defense: r.not_applicable for r in t.rows if r.not_applicable}
    if na:
        lines += ["Not applicable on this track: "
                  + "; ".join(f"{code(d)} ({text(why)})" for d, why in sorted(na.items())) + ".", ""]
    over_cost = {r.defense for r in t.rows if "cost budget" in r.note}
    unchosen = sorted({r.defense for r in t.rows} - {r.defense for r in chosen} - set(na) - over_cost)
    if over_cost - {r.defense for r in chosen}:
        lines += ["Not ranked (outside the cost budget): " + ", ".join(
            code(d) for d in sorted(over_cost - {r.defense for r in chosen})) + ".", ""]
    if unchosen:
        why = ("its preregistered setting is not clearly within the utility budget on validation data"
               if t.admission == "preregistered" else "no knob setting within the utility budget on validation data")
        near = {r.defense for r in t.rows if r.borderline and not r.selected}
        lines += [f"Not ranked ({why}): " + ", ".join(code(d) + (" (borderline)" if d in near else "")
                                                       for d in unchosen) + ".", ""]
    bb = sorted([r for r in chosen if r.rank_blackbox], key=lambda r: (r.rank_point.get("rank_blackbox", 0),
                                                                       r.privacy_blackbox.value))
    if bb:
        free = ("" if not t.data_free_attacks else " Of them, data-free (no aux data either, the zero-data end of "
                f"attacker knowledge): {', '.join(text(a) for a in t.data_free_attacks)}.")
        lines += ["### Black-box view", "",
                  "Only attacks that need no client weights; defenses that deny attackers the client weights are "
                  f"ranked here only.{free}", ""]
        lines += md_table(["rank", "defense", "knob", "black-box privacy score", "white-box access"],
                        [[_rank(r.rank_blackbox, r.rank_point.get("rank_blackbox")), code(r.defense), knob_cell(r),
                          est_cell(r.privacy_blackbox, 2),
                          "given" if r.white_box_client else "denied"] for r in bb])
    tr = sorted([r for r in chosen if r.rank_transfer], key=lambda r: (r.rank_point.get("rank_transfer", 0),
                                                                       r.family["transfer"].value))
    if tr:
        lines += ["### Transfer view", "",
                  "Model specificity: the best unintended model's advantage over the task's majority rate "
                  "(adaptive, i.e. fine-tuned on aux releases, where run); lower = more specific to the designated "
                  "model. Not part of the privacy score.", ""]
        rows = []
        for r in tr:
            s = r.attacks[r.family_attack["transfer"]].figures
            rows.append([_rank(r.rank_transfer, r.rank_point.get("rank_transfer")), code(r.defense), knob_cell(r),
                         family_cell(r, "transfer"),
                         _fmt(s.get("transfer_advantage"), 2), _fmt(s.get("suppression_ratio_max"), 2),
                         _fmt(s.get("adaptive_suppression_ratio_corrected", s.get("suppression_ratio_corrected")), 2)])
        lines += md_table(["rank", "defense", "knob", "transfer leakage", "plain advantage", "suppression ratio",
                         "corrected SR"], rows)
    lines += _cost_markdown(t, chosen)
    lines += _matched_markdown(t)
    lines += _knowledge_markdown(t)
    lines += ["### Every knob setting", "",
              "The privacy-utility curve: every setting run, the ranked one marked ✓ (preregistered ones with P). "
              "Attack cells: leakage on the family's scale [interval] (raw figure); \"(tuned)\": the attack's "
              "configuration was chosen per cell on the attacker's own aux data before it ran on eval.", ""]
    head = (["defense", "knob", "✓", "val utility", "val Δutility", "chosen in" if t.admission == "selection"
             else "within budget", "utility", "Δutility"]
            + [f"{text(a)} (tuned)" if t.tuned(a) else text(a) for a in t.attacks] + ["privacy score"])
    rows = []
    for r in sorted(t.rows, key=lambda r: (r.defense != t.reference, r.defense, r.knob_value)):
        mark = ("✓" if r.selected else "") + ("P" if r.preregistered else "")
        rows.append([code(r.defense), knob_cell(r), mark, est_cell(r.val_utility), est_cell(r.val_delta_utility),
                     admitted_cell(r, t), est_cell(r.utility), est_cell(r.delta_utility)]
                    + [_attack_cell(r, a) for a in t.attacks] + [est_cell(r.privacy, 2)])
    lines += md_table(head, rows)
    fewer = [f"{code(r.label)} ({k} of {len(t.seeds)})" for r in t.rows if (k := t.fewer_seeds(r)) is not None]
    if fewer:
        lines += ["Settings attacked at fewer of the track's seeds (a suite's `curve_seeds` runs the points of a "
                  "privacy-utility curve that are never ranked at fewer seeds; a partial run has seeds to come): "
                  + "; ".join(fewer) + ".", ""]
    notes = []
    for a, fl in t.floors.items():
        parts = []
        if "attribute_floor" in fl:
            parts.append(f"floor from the task label {_fmt(fl['attribute_floor'])}, majority rate "
                         f"{_fmt(fl['attribute_majority'])}")
        if "ssim_baseline" in fl:
            parts.append(f"mean-aux-image SSIM {_fmt(fl['ssim_baseline'])}, {fl['psnr_baseline']:.1f} dB")
        if "unintended_chance" in fl:
            parts.append(f"task majority rate {_fmt(fl['unintended_chance'])}")
        notes.append(f"{text(a)}: {'; '.join(parts)}")
    if notes:
        lines += ["Floors (on the reference's eval samples): " + ". ".join(notes) + ".", ""]
    flagged = t.not_converged()
    if flagged:
        from benchmark.measure.scoring.convergence import rule_text

        lines += [f"Not converged ({rule_text()}): "
                  + "; ".join(f"{text(a)} on {code(label)} ({k}/{n} seeds)" for label, a, k, n in flagged) + ".", ""]
    if t.weak_attacks:
        lines += ["Weak on this track (leakage interval on the reference reaches 0; not used for 'vs reference'): "
                  + ", ".join(text(a) for a in t.weak_attacks) + ".", ""]
    return lines


def unofficial_notice(suite: str, tracks: list[Track]) -> str:
    """One line for a run of a suite that is not an official track: what it is and where the official ranking is."""
    from leaderboard.entry import OFFICIAL_SUITES

    if suite in OFFICIAL_SUITES:
        return ""
    seeds = sorted({s for t in tracks for s in t.seeds})
    count = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    what = "a smoke test and demo whose ranks are not official" if suite == "quick" else "not an official track"
    return (f"**Not an official ranking:** suite {code(suite)} ({count}) is {what}; the official ranking is the "
            "`standard-cpu` suite's (Fashion-MNIST, 5 seeds), in the entries under `entries/` "
            "(`splitbench site` renders them).")


def to_markdown(tracks: list[Track], title: str = "", manifest: dict[str, Any] | None = None,
                replicates: int = 1000) -> str:
    lines = [f"# {title}" if title else "# splitbench leaderboard", ""]
    if manifest:
        others = manifest.get("others") or []
        lines += [f"Manifest {code(manifest['manifest_id'])} ({len(manifest['cells'])} cells, written "
                  f"{text(str(manifest.get('updated', ''))[:19].replace('T', ' '))} UTC)"
                  + (f"; other manifests in this folder: {', '.join(text(o) for o in others)}" if others else "")
                  + ".", ""]
        notice = unofficial_notice(str(manifest.get("suite", "")), tracks)
        if notice:
            lines += [notice, ""]
    for t in tracks:
        lines += track_markdown(t, replicates)
    return "\n".join(lines)


# -- CSV ---------------------------------------------------------------------------------------------------------------
def _put(d: dict[str, Any], name: str, e: Estimate) -> None:
    d[name], d[f"{name}_lo"], d[f"{name}_hi"] = e.value, e.lo, e.hi


def to_frame(tracks: list[Track]) -> pd.DataFrame:
    """One row per track and defense @ knob; each interval as ``_lo`` / ``_hi`` columns beside its value."""
    out = []
    for t in tracks:
        for r in t.rows:
            d: dict[str, Any] = {"scenario": t.scenario, "backbone": t.backbone, "split": t.split,
                                 "defense": r.defense, "knob": r.knob, "knob_value": r.knob_value,
                                 "selected": r.selected, "admissible": r.admissible,
                                 "white_box_client": r.white_box_client, "complete": r.complete,
                                 "preregistered": r.preregistered, "selection": r.selection,
                                 "borderline": r.borderline, "admission_margin": r.admission_margin,
                                 "admission": t.admission,
                                 "rank": r.rank_point.get("rank"),
                                 "rank_lo": r.rank[0] if r.rank else None, "rank_hi": r.rank[1] if r.rank else None,
                                 "blackbox_rank": r.rank_point.get("rank_blackbox"),
                                 "blackbox_rank_lo": r.rank_blackbox[0] if r.rank_blackbox else None,
                                 "blackbox_rank_hi": r.rank_blackbox[1] if r.rank_blackbox else None,
                                 "seeds": len(r.seeds)}
            _put(d, "privacy", r.privacy)
            _put(d, "privacy_blackbox", r.privacy_blackbox)
            for fam in FAMILIES:
                _put(d, fam, r.family.get(fam, Estimate(math.nan)))
                d[f"{fam}_attack"] = r.family_attack.get(fam, "")
                d[f"{fam}_chosen_on"] = r.family_chosen_on.get(fam, "")
                _put(d, f"{fam}_best_eval", r.family_best_eval.get(fam, Estimate(math.nan)))
                d[f"{fam}_best_eval_attack"] = r.family_best_eval_attack.get(fam, "")
            _put(d, "utility", r.utility)
            _put(d, "delta_utility", r.delta_utility)
            _put(d, "val_utility", r.val_utility)
            _put(d, "val_delta_utility", r.val_delta_utility)
            d["relative"] = r.relative
            for f, privacy in t.knowledge.items():
                _put(d, f"privacy_aux{f:g}", privacy.get((r.defense, r.knob_value), Estimate(math.nan)))
            m = t.matched.get(r.defense)
            if m is not None:
                _put(d, "matched_privacy", m.privacy)
                d["matched_reached"] = m.reached
            for a, s in r.attacks.items():
                _put(d, f"{a}", s.leakage)
                d[f"{a}_status"] = s.status
                d[f"{a}_holdout"] = s.holdout
            d.update(r.cost)
            for k, v in r.cost_ratio.items():
                d[f"{k}_ratio"] = v
            d["pareto"] = r.pareto
            d["note"] = r.note
            d["track_flags"] = "; ".join(t.flags)
            out.append(d)
    return pd.DataFrame(out)


def to_csv(tracks: list[Track]) -> str:
    frame = to_frame(tracks)
    return frame.to_csv(index=False) if not frame.empty else ""


# -- paper numbers --------------------------------------------------------------------------------------------------
def paper_rows(frame: pd.DataFrame, numbers: list[dict]) -> list[dict]:
    """The paper's numbers beside ours: one row per paper number and (backbone, knob value) we ran for it."""
    rows = []
    for n in numbers:
        sel = frame[(frame.defense == n["defense"]) & (frame.attack == n["attack"]) & (frame.status == "ok")]
        if "backbone" in n:
            name, _, split = n["backbone"].partition("@")
            sel = sel[(sel.backbone == name) & (sel.split == split)]
        if "knob" in n:
            sel = sel[(sel.knob_value - float(n["knob"])).abs() < 1e-9]
        col = f"m.{n['metric']}"
        base = {"defense": n["defense"], "attack": n["attack"], "metric": n["metric"], "paper": float(n["value"]),
                "note": n.get("note", "")}
        if sel.empty or col not in sel:
            rows.append({**base, "backbone": n.get("backbone", ""), "knob": n.get("knob", ""),
                         "ours": float("nan")})
            continue
        for (bb, sp, kv), g in sel.groupby(["backbone", "split", "knob_value"]):
            rows.append({**base, "backbone": f"{bb}@{sp}", "knob": kv, "ours": float(g[col].mean())})
    return rows


def paper_markdown(rows: list[dict], citation: str) -> str:
    lines = ["## Paper vs splitbench", "", f"Source: {text(citation)}".strip(), "",
             "| defense | knob | attack | backbone | metric | paper | ours | ours − paper | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = r["ours"]
        diff = "–" if math.isnan(ours) else f"{ours - r['paper']:+.3f}"
        knob = f"{r['knob']:g}" if isinstance(r["knob"], float) else str(r["knob"] or "–")
        lines.append(f"| {code(r['defense'])} | {text(knob)} | {text(r['attack'])} | {text(r['backbone'] or '–')} | "
                     f"{text(r['metric'])} | "
                     f"{_fmt(r['paper'])} | {'not run' if math.isnan(ours) else _fmt(ours)} | {diff} | "
                     f"{text(r['note'])} |")
    return "\n".join(lines) + "\n"


def render_run(run_dir: str | Path, fmt: str = "md", budget: float | None = None, write: bool = True,
               manifest: str | None = None, partial: bool = False, replicates: int | None = None,
               reference: str | None = None) -> str:
    """Build the leaderboard of one manifest of a run directory; write leaderboard.md / .csv into it; return one."""
    run_dir = Path(run_dir)
    if budget is not None and not 0.0 <= budget <= 1.0:
        raise SplitbenchError(f"--budget must be in [0, 1], got {budget}")
    if replicates is not None and replicates < 1:
        raise SplitbenchError(f"--bootstrap must be at least 1, got {replicates}")
    tracks, man = build_tracks(run_dir, budget, reference, replicates, manifest, partial)
    title = f"splitbench leaderboard — suite {code(man.get('suite'))}"
    md = to_markdown(tracks, title, man, man["presentation"]["bootstrap"])
    csv = to_csv(tracks)
    paper = man.get("paper") or {}
    if paper.get("numbers"):
        frame = load_frame(run_dir, man["manifest_id"], partial)
        if not frame.empty:
            rows = paper_rows(frame, paper["numbers"])
            md += "\n" + paper_markdown(rows, " ".join(str(paper.get("citation", "")).split()))
            if write:
                atomic_write_text(run_dir / "paper.csv", pd.DataFrame(rows).to_csv(index=False))
    if write:
        atomic_write_text(run_dir / "leaderboard.md", md + "\n")
        atomic_write_text(run_dir / "leaderboard.csv", csv)
    return md if fmt == "md" else csv
