"""Render leaderboard tables from a run directory's records.

A track is (scenario, backbone, split). Each row is one defense at one knob value (metrics averaged over
seeds). A row's rank is by its **worst-case normalized leakage** over all attacks, among the rows whose
utility drop against the reference defense is within the utility budget. Rows over
budget are listed unranked, and so are rows where an attack failed (their worst case is unknown); attacks
that do not apply (no sensitive attribute) are left out of the worst case.

Normalized leakage = (leakage - chance) / (reference leakage - reference chance), where an attack's leakage
is its headline number (attribute accuracy, reconstruction SSIM, best unintended accuracy) and chance is the
matching no-information level (majority class; the mean-image SSIM).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from benchmark.metrics import normalized_leakage
from benchmark.records import atomic_write_text, load_frame

TRACK = ["scenario", "backbone", "split"]
ROW = ["defense", "knob", "knob_value"]


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if isinstance(v, (int,)) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _attack_summary(cells: pd.DataFrame) -> dict[str, float | str]:
    ok = cells[cells.status == "ok"]
    if ok.empty:
        status = "failed" if (cells.status == "failed").any() else "n/a"
        return {"status": status}
    mean = ok.filter(like="m.").mean(numeric_only=True)
    return {"status": "ok", **{k[2:]: float(v) for k, v in mean.items()}}


def build_tables(frame: pd.DataFrame, budget: float | None = None, reference: str | None = None
                 ) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """One (track, table) per track; each table has one row per defense@knob with numeric columns."""
    if frame.empty:
        return []
    out = []
    for track, tf in frame.groupby(TRACK, sort=True):
        ref = reference or (tf.reference.dropna().iloc[0] if tf.reference.notna().any() else "no_pruning")
        bud = budget if budget is not None else (float(tf.utility_budget.dropna().iloc[0])
                                                 if tf.utility_budget.notna().any() else 0.02)
        attacks = sorted(tf.attack.unique())
        summaries: dict[tuple, dict[str, dict]] = {}
        for key, rf in tf.groupby(ROW, sort=True):
            summaries[key] = {a: _attack_summary(rf[rf.attack == a]) for a in attacks}
        ref_keys = [k for k in summaries if k[0] == ref]
        ref_sum = summaries[ref_keys[0]] if ref_keys else {}
        ref_utility = _row_metric(ref_sum, "utility")
        rows = []
        for key, per_attack in summaries.items():
            row: dict[str, object] = dict(zip(ROW, key))
            for m in ("utility", "client_ms_b1_p50", "client_ms_bB_p50", "payload_bytes", "client_params",
                      "client_macs"):
                row[m] = _row_metric(per_attack, m)
            row["delta_utility"] = row["utility"] - ref_utility if ref_keys else float("nan")
            worst = -math.inf
            incomplete = False  # a failed attack leaves the worst case unknown: the row is not ranked
            for a in attacks:
                s = per_attack[a]
                if s["status"] != "ok":
                    row[f"{a}"] = s["status"]
                    row[f"{a}:norm"] = float("nan")
                    incomplete |= s["status"] == "failed"
                    continue
                r = ref_sum.get(a, {})
                norm = (normalized_leakage(s["leakage"], s["leakage_chance"], r["leakage"], r["leakage_chance"])
                        if r.get("status") == "ok" else float("nan"))
                row[a] = s["leakage"]
                row[f"{a}:chance"] = s["leakage_chance"]
                row[f"{a}:norm"] = norm
                for extra in ("psnr", "suppression_ratio_max", "suppression_ratio_mean",
                              "adaptive_suppression_ratio_max"):
                    if extra in s:
                        row[f"{a}:{extra}"] = s[extra]
                if not math.isnan(norm):
                    worst = max(worst, norm)
            row["worst_norm_leakage"] = worst if worst > -math.inf and not incomplete else float("nan")
            du = row["delta_utility"]
            row["within_budget"] = bool(not math.isnan(du) and du >= -bud - 1e-12)
            rows.append(row)
        table = pd.DataFrame(rows)
        ranked = table[table.within_budget & table.worst_norm_leakage.notna()].sort_values(
            ["worst_norm_leakage", "utility"], ascending=[True, False])
        table["rank"] = pd.Series(dtype="Int64")
        for i, idx in enumerate(ranked.index, 1):
            table.loc[idx, "rank"] = i
        table = table.sort_values(["rank", "defense", "knob_value"], na_position="last").reset_index(drop=True)
        table.attrs.update(budget=bud, reference=ref, attacks=attacks)
        out.append((track, table))
    return out


def _row_metric(per_attack: dict[str, dict], metric: str) -> float:
    vals = [s[metric] for s in per_attack.values() if s.get("status") == "ok" and metric in s]
    return float(sum(vals) / len(vals)) if vals else float("nan")


def to_markdown(tables: list[tuple[tuple[str, str, str], pd.DataFrame]], title: str = "") -> str:
    lines = [f"# {title}" if title else "# splitbench leaderboard", ""]
    for (scenario, backbone, split), t in tables:
        attacks = t.attrs["attacks"]
        lines.append(f"## {scenario} · {backbone} @ {split}")
        lines.append("")
        lines.append(f"Reference: `{t.attrs['reference']}`. Ranked by worst-case normalized leakage among rows "
                     f"whose utility drop is at most {t.attrs['budget']:.3f}; leakage cells show the attack's "
                     "headline number (normalized in brackets).")
        lines.append("")
        head = ["rank", "defense", "knob", "utility", "Δutility"] + attacks + ["worst norm. leakage",
                                                                              "client ms (b1 p50)",
                                                                              "bytes/sample", "client params",
                                                                              "client MACs"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] * len(head)) + "|")
        for _, r in t.iterrows():
            cells = [str(int(r["rank"])) if pd.notna(r["rank"]) else "–", f"`{r['defense']}`",
                     f"{r['knob']}={r['knob_value']:g}", _fmt(r["utility"]), _fmt(r["delta_utility"], 3)]
            for a in attacks:
                v = r.get(a)
                if isinstance(v, str):
                    cells.append(v)
                    continue
                text = f"{_fmt(v)} ({_fmt(r.get(f'{a}:norm'), 2)})"
                if f"{a}:psnr" in r and pd.notna(r.get(f"{a}:psnr")):
                    text += f", {r[f'{a}:psnr']:.1f} dB"
                if f"{a}:suppression_ratio_max" in r and pd.notna(r.get(f"{a}:suppression_ratio_max")):
                    text += f", SR {_fmt(r[f'{a}:suppression_ratio_max'], 2)}"
                cells.append(text)
            cells += [_fmt(r["worst_norm_leakage"], 2), _fmt(r["client_ms_b1_p50"], 2),
                      _fmt(r["payload_bytes"], 0), _fmt(r["client_params"], 0), _fmt(r["client_macs"], 0)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        chance = {a: t[f"{a}:chance"].dropna().iloc[0] for a in attacks
                  if f"{a}:chance" in t and t[f"{a}:chance"].notna().any()}
        if chance:
            lines.append("Chance levels: " + ", ".join(f"{a} {_fmt(c)}" for a, c in chance.items()) + ".")
            lines.append("")
    return "\n".join(lines)


def to_csv(tables: list[tuple[tuple[str, str, str], pd.DataFrame]]) -> str:
    frames = []
    for (scenario, backbone, split), t in tables:
        t = t.copy()
        t.insert(0, "split", split)
        t.insert(0, "backbone", backbone)
        t.insert(0, "scenario", scenario)
        frames.append(t)
    if not frames:
        return ""
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


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
    lines = ["## Paper vs splitbench", "", f"Source: {citation}".strip(), "",
             "| defense | knob | attack | backbone | metric | paper | ours | ours − paper | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = r["ours"]
        diff = "–" if math.isnan(ours) else f"{ours - r['paper']:+.3f}"
        knob = f"{r['knob']:g}" if isinstance(r["knob"], float) else str(r["knob"] or "–")
        lines.append(f"| `{r['defense']}` | {knob} | {r['attack']} | {r['backbone'] or '–'} | {r['metric']} | "
                     f"{_fmt(r['paper'])} | {'not run' if math.isnan(ours) else _fmt(ours)} | {diff} | "
                     f"{r['note']} |")
    return "\n".join(lines) + "\n"


def render_run(run_dir: str | Path, fmt: str = "md", budget: float | None = None, write: bool = True) -> str:
    """Build the leaderboard of a run directory; write leaderboard.md / .csv into it; return one of them."""
    run_dir = Path(run_dir)
    frame = load_frame(run_dir)
    title = "splitbench leaderboard"
    manifest = run_dir / "run.json"
    paper: dict = {}
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text())
            title += f" — suite `{meta.get('suite')}`"
            paper = meta.get("paper") or {}
        except (OSError, json.JSONDecodeError):
            pass
    tables = build_tables(frame, budget)
    md, csv = to_markdown(tables, title), to_csv(tables)
    if paper.get("numbers") and not frame.empty:
        rows = paper_rows(frame, paper["numbers"])
        md += "\n" + paper_markdown(rows, " ".join(str(paper.get("citation", "")).split()))
        if write:
            atomic_write_text(run_dir / "paper.csv", pd.DataFrame(rows).to_csv(index=False))
    if write:
        atomic_write_text(run_dir / "leaderboard.md", md + "\n")
        atomic_write_text(run_dir / "leaderboard.csv", csv)
    return md if fmt == "md" else csv
