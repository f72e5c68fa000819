"""The settle rule: more admission seeds for preregistered settings a run leaves borderline."""

from __future__ import annotations

import dataclasses
import types

import pytest

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.store.manifest import load_manifest
from benchmark.store.records import iter_records
from benchmark.suites.expand import expand
from benchmark.suites.narrow import apply_overrides, restrict
from benchmark.suites.parse import load_suite, parse_suite, suite_to_raw
from leaderboard import settle as settle_mod
from leaderboard.render import build_tracks
from tests.support.suites import tiny

PREREG = {"admission": "preregistered",
          "defenses": [{"name": "no_pruning"}, {"name": "random_pruning", "knob": [0.5, 0.25], "preregistered": 0.5}]}


def _suite(tmp_path, **changes):
    p = tmp_path / "s.yaml"
    p.write_text(tiny(**{**PREREG, **changes}))
    return load_suite(p)


def test_settled_seeds_train_the_row_s_preregistered_setting_and_the_reference_only(tmp_path):
    suite = _suite(tmp_path, seeds=[0, 1], admission_seeds=[2], settle={"step": 2, "up_to": 6},
                   settled_seeds={"random_pruning": [7, 8]})
    models = [(m.defense.label, m.seed) for m, cells in expand(suite) if cells[0].attack is None]
    assert models == [("no_pruning@0", 2), ("random_pruning@0.5", 2), ("no_pruning@0", 7),
                      ("random_pruning@0.5", 7), ("no_pruning@0", 8), ("random_pruning@0.5", 8)]
    again = parse_suite(suite_to_raw(suite), "manifest")  # what a manifest stores reads back the same
    assert again.settle == suite.settle and again.settled_seeds == {"random_pruning": (7, 8)}
    # narrowing away the row drops its settled seeds; naming a settled seed as attacked makes it attacked
    assert restrict(suite, defenses=["no_pruning"]).settled_seeds == {}
    assert restrict(suite, seeds=[0, 7]).settled_seeds == {"random_pruning": (8,)}


@pytest.mark.parametrize("changes, message", [
    ({"settle": {"step": 0}}, "settle.step must be an integer of at least 1, got 0"),
    ({"settle": {"up_to": 1}}, "settle.up_to must be an integer of at least 2, got 1"),
    ({"settle": {"steps": 5}}, "settle: unknown key 'steps'"),
    ({"settle": {"step": 5}, "admission": "selection", "defenses": [{"name": "no_pruning"}]},
     "'settle' adds seeds to borderline preregistered settings, but admission is 'selection'"),
    ({"settled_seeds": {"nope": [7]}}, "settled_seeds.nope: 'nope' preregistered no setting in this suite"),
    ({"settled_seeds": {"random_pruning": [0]}}, "seeds [0] are already attacked or admission seeds"),
    ({"settled_seeds": {"random_pruning": [7, 7]}}, "lists [7] more than once"),
    ({"settled_seeds": [7]}, "'settled_seeds' must be a mapping of row to a list of seeds"),
])
def test_bad_settle_keys_are_one_line(changes, message, tmp_path):
    with pytest.raises(SplitbenchError, match=None) as err:
        _suite(tmp_path, **changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settle_can_be_set_and_dropped_from_the_command_line(tmp_path):
    suite = _suite(tmp_path)
    on = apply_overrides(suite, {"settle": {"step": 3, "up_to": 9}, "settled_seeds": {"random_pruning": [5]}})
    assert (on.settle.step, on.settle.up_to) == (3, 9) and on.settled_seeds == {"random_pruning": (5,)}
    assert apply_overrides(on, {"settle": None}).settle is None
    with pytest.raises(SplitbenchError, match="'settle' adds seeds to borderline preregistered settings, but "
                                              "admission is 'selection'"):
        apply_overrides(on, {"admission": "selection"})
    off = apply_overrides(on, {"admission": "selection", "settle": None})
    assert off.settled_seeds == {} and off.preregistered == {}


def _fake_tracks(counts, clear_at):
    rows = [types.SimpleNamespace(defense="ref", preregistered=True, borderline=False,
                                  val_delta_seeds=(0.0,) * counts["ref"])]
    for row in ("a", "b"):
        rows.append(types.SimpleNamespace(defense=row, preregistered=True, borderline=counts[row] < clear_at[row],
                                          val_delta_seeds=(0.0,) * counts[row]))
    return [types.SimpleNamespace(reference="ref", rows=rows)]


def test_the_loop_adds_seeds_until_each_row_is_clear_or_at_its_cap(tmp_path, monkeypatch):
    """Row a is clear once it has 10 seeds; b never is, and stops at the cap (12: 5 + 5 + 2). Every round gives
    every row it extends the same new seeds, numbered after the largest in use, and is one run of the suite."""
    state = {"suite": _suite(tmp_path, seeds=[0, 1, 2, 3, 4], settle={"step": 5, "up_to": 12})}
    monkeypatch.setattr(settle_mod, "_suite_of", lambda run_dir: state["suite"])
    counts = {"ref": 5, "a": 5, "b": 5}
    calls = []

    def run_once(extra):
        calls.append(extra["settled_seeds"])
        state["suite"] = dataclasses.replace(state["suite"], settled_seeds={
            row: tuple(v) for row, v in extra["settled_seeds"].items()})
        for row in ("a", "b"):
            counts[row] = 5 + len(extra["settled_seeds"].get(row, ()))
        return 0

    lines = []
    settled = settle_mod.settle(tmp_path, run_once, lambda d: _fake_tracks(counts, {"a": 10, "b": 99}),
                                lines.append)
    assert calls == [{"a": [5, 6, 7, 8, 9], "b": [5, 6, 7, 8, 9]},  # each run gets everything settled so far
                     {"a": [5, 6, 7, 8, 9], "b": [5, 6, 7, 8, 9, 10, 11]}]
    assert settled == {"a": (5, 6, 7, 8, 9), "b": (5, 6, 7, 8, 9, 10, 11)}
    assert counts == {"ref": 5, "a": 10, "b": 12}
    assert "settle round 1: 2 borderline preregistered settings (a at 5 seeds, b at 5 seeds)" in lines[0]
    assert "done after 2 rounds" in lines[-1]


def test_the_loop_stops_when_a_round_fails_or_adds_nothing(tmp_path, monkeypatch):
    suite = _suite(tmp_path, seeds=[0, 1], settle={"step": 1, "up_to": 5})
    monkeypatch.setattr(settle_mod, "_suite_of", lambda run_dir: suite)
    counts = {"ref": 2, "a": 2, "b": 2}
    lines = []
    assert settle_mod.settle(tmp_path, lambda extra: 1, lambda d: _fake_tracks(counts, {"a": 9, "b": 9}),
                             lines.append) == {"a": (2,), "b": (2,)}
    assert "failed (exit code 1); what it recorded is kept" in lines[-1]
    lines.clear()
    settle_mod.settle(tmp_path, lambda extra: 0, lambda d: _fake_tracks(counts, {"a": 9, "b": 9}), lines.append)
    assert "the last round added no validated seed to a, b; stopping" in lines[-1]
    # no rule: nothing runs
    monkeypatch.setattr(settle_mod, "_suite_of", lambda run_dir: _suite(tmp_path))
    assert settle_mod.settle(tmp_path, pytest.fail, pytest.fail) == {}


def test_a_run_settles_its_borderline_setting_end_to_end(tmp_path, monkeypatch, capsys):
    """Through the command line on a real (tiny) run: with every setting borderline (the band forced wide), the
    preregistered setting gets one more seed per round, the reference with it, until it has three; the newest
    manifest holds every cell and the settled seeds, and the leaderboard reads three seeds for it. Run again, it
    recomputes nothing; with --no-settle it adds nothing."""
    monkeypatch.setattr("leaderboard.protocol.builder.tail_band", lambda deviations, seeds, draws=0: 1.0)
    p = tmp_path / "s.yaml"
    p.write_text(tiny(**PREREG, seeds=[0, 1], settle={"step": 1, "up_to": 3},
                      attacks=[{"name": "attribute_inference", "config": {"epochs": 1}}]))
    plain = tmp_path / "plain"
    assert main(["run", "--suite", str(p), "--out", str(plain), "--quiet", "--executor", "local",
                 "--no-settle", "--no-leaderboard"]) == 0
    assert {r["config"]["seed"] for _, r in iter_records(plain)} == {0, 1}
    out = tmp_path / "out"
    assert main(["run", "--suite", str(p), "--out", str(out), "--quiet", "--executor", "local"]) == 0
    err = capsys.readouterr().err
    assert "settle round 1: 1 borderline preregistered setting (random_pruning at 2 seeds)" in err
    assert "done after 1 round" in err
    added = sorted((r["config"]["defense"]["name"], r["config"]["defense"]["knob_value"], r["config"]["seed"])
                   for _, r in iter_records(out) if "attack" not in r["config"])
    assert added == [("no_pruning", 0.0, 2), ("random_pruning", 0.5, 2)]
    man = load_manifest(out)
    assert man["resolved_suite"]["settled_seeds"] == {"random_pruning": [2]}
    (t,), _ = build_tracks(out)
    row = next(r for r in t.rows if r.defense == "random_pruning" and r.knob_value == 0.5)
    assert len(row.val_delta_seeds) == 3 and row.borderline and t.settle == {"step": 1, "up_to": 3}
    md = (out / "leaderboard.md").read_text()
    assert "Admission reads up to 3 seeds" in md and "until it was clear or had 3" in md
    assert main(["run", "--suite", str(p), "--out", str(out), "--quiet", "--executor", "local",
                 "--no-leaderboard"]) == 0
    assert "0 models trained" in capsys.readouterr().err


def test_the_python_api_settles_like_the_command_line(tmp_path, monkeypatch):
    from leaderboard.settle import run_and_settle

    monkeypatch.setattr("leaderboard.protocol.builder.tail_band", lambda deviations, seeds, draws=0: 1.0)
    p = tmp_path / "s.yaml"
    p.write_text(tiny(**PREREG, seeds=[0, 1], settle={"step": 1, "up_to": 3},
                      attacks=[{"name": "attribute_inference", "config": {"epochs": 1}}]))
    lines = []
    summary = run_and_settle(str(p), tmp_path / "out", log=lines.append, progress=False, executor="local")
    assert summary.exit_code == 0 and "done after 1 round" in lines[-1]
    assert load_manifest(tmp_path / "out")["resolved_suite"]["settled_seeds"] == {"random_pruning": [2]}
