"""Leaderboard ranking: worst-case normalized leakage at iso-utility."""

from __future__ import annotations

import math

import pandas as pd

from leaderboard.render import build_tables, to_csv, to_markdown


def row(defense, knob_value, attack, utility, leakage, chance, status="ok"):
    r = {"scenario": "s", "backbone": "b", "split": "l1", "defense": defense, "knob": "r", "knob_value": knob_value,
         "attack": attack, "seed": 0, "reference": "ref", "utility_budget": 0.02, "status": status}
    if status == "ok":
        r.update({"m.utility": utility, "m.leakage": leakage, "m.leakage_chance": chance,
                  "m.client_ms_b1_p50": 1.0, "m.client_ms_bB_p50": 0.1, "m.payload_bytes": 100.0,
                  "m.client_params": 10.0, "m.client_macs": 1000.0})
    return r


def frame():
    rows = [
        row("ref", 0, "attr", 0.90, 0.80, 0.10), row("ref", 0, "recon", 0.90, 0.90, 0.30),
        # within budget, leaks half as much on attr, as much on recon -> worst = 1.0
        row("a", 0.5, "attr", 0.89, 0.45, 0.10), row("a", 0.5, "recon", 0.89, 0.90, 0.30),
        # within budget, leaks less on both -> worst = 0.5 -> rank 1
        row("b", 0.5, "attr", 0.885, 0.45, 0.10), row("b", 0.5, "recon", 0.885, 0.60, 0.30),
        # leaks least but drops 10 points -> unranked
        row("c", 0.9, "attr", 0.80, 0.10, 0.10), row("c", 0.9, "recon", 0.80, 0.30, 0.30),
        # an attack that failed
        row("d", 0.1, "attr", 0.90, 0.2, 0.10), row("d", 0.1, "recon", 0.9, 0, 0, status="failed"),
    ]
    return pd.DataFrame(rows)


def test_ranking_by_worst_case_within_budget():
    (track, t), = build_tables(frame())
    assert track == ("s", "b", "l1")
    by = t.set_index("defense")
    assert by.loc["ref", "attr:norm"] == 1.0
    assert math.isclose(by.loc["a", "attr:norm"], 0.5)
    assert math.isclose(by.loc["b", "worst_norm_leakage"], 0.5)
    assert math.isclose(by.loc["a", "worst_norm_leakage"], 1.0)
    assert by.loc["b", "rank"] == 1 and by.loc["a", "rank"] in (2, 3) and by.loc["ref", "rank"] in (2, 3)
    assert pd.isna(by.loc["c", "rank"]) and not by.loc["c", "within_budget"]
    assert math.isclose(by.loc["c", "delta_utility"], -0.10)
    assert by.loc["d", "recon"] == "failed"
    assert pd.isna(by.loc["d", "rank"]) and pd.isna(by.loc["d", "worst_norm_leakage"])


def test_budget_can_be_widened():
    (_, t), = build_tables(frame(), budget=0.2)
    assert t.set_index("defense").loc["c", "rank"] == 1


def test_markdown_and_csv():
    tables = build_tables(frame())
    md = to_markdown(tables, "x")
    assert "## s · b @ l1" in md and "| 1 | `b` |" in md and "failed" in md
    csv = to_csv(tables)
    assert csv.splitlines()[0].startswith("scenario,backbone,split,rank") or "worst_norm_leakage" in csv


def test_an_infinite_suppression_ratio_survives_the_json_record(tmp_path):
    """JSON has no infinity: a suppression ratio over zero unintended accuracy is stored as a stand-in and comes
    back as inf, printed as the infinity sign rather than a 309-digit number."""
    from benchmark.records import load_frame, read_record, write_record

    def record(defense, unintended, ratio):
        cfg = {"scenario": {"name": "s"}, "backbone": {"name": "b", "split": "l1"},
               "defense": {"name": defense, "knob": "r", "knob_value": 0},
               "attack": {"name": "cross_model", "kind": "transfer"}, "seed": 0, "reference": "ref",
               "utility_budget": 0.02}
        metrics = {"utility": 0.9, "leakage": unintended, "leakage_chance": 0.1, "suppression_ratio_max": ratio,
                   "client_ms_b1_p50": 1.0, "payload_bytes": 10.0, "client_params": 1.0, "client_macs": 1.0}
        write_record(tmp_path / "records" / f"{defense}.json",
                     {"status": "ok", "cell_id": defense, "config": cfg, "config_hash": defense, "metrics": metrics,
                      "budget": {}, "env": {"device": "cpu"}})

    (tmp_path / "records").mkdir()
    record("ref", 0.9, 1.0)
    record("wall", 0.0, math.inf)
    assert read_record(tmp_path / "records" / "wall.json")["metrics"]["suppression_ratio_max"] < math.inf
    frame = load_frame(tmp_path)
    assert frame.set_index("defense").loc["wall", "m.suppression_ratio_max"] == math.inf
    md = to_markdown(build_tables(frame))
    assert "SR ∞" in md and "1e+308" not in md and "000,000,000" not in md
