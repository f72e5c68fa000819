"""Every built-in suite parses and expands; suite files are validated strictly."""

from __future__ import annotations

import pytest

from benchmark.errors import SplitbenchError
from benchmark.registry import SUITES
from benchmark.suite import expand, load_suite, parse_suite


@pytest.mark.parametrize("name", SUITES.names())
def test_builtin_suite_parses_and_expands(name):
    suite = load_suite(name)
    assert suite.name == name, "a suite's name must match its file name"
    plan = expand(suite)
    assert plan and all(cells for _, cells in plan)
    assert plan[0][0].defense.name == suite.reference, "the reference defense runs first"
    hashes = [c.hash() for _, cells in plan for c in cells]
    assert len(hashes) == len(set(hashes))


def test_quick_suite_runs_every_registered_method():
    from benchmark.registry import ATTACKS, DEFENSES

    quick = load_suite("quick")
    assert {d.name for d in quick.defenses} == set(DEFENSES.names())
    assert {a.name for a in quick.attacks} == set(ATTACKS.names())
    assert [s.name for s in quick.scenarios] == ["digits"]


def base():
    return {"name": "t", "scenarios": ["digits"], "backbones": [{"name": "test_resnet", "split": "layer1"}],
            "defenses": ["no_pruning"], "attacks": ["attribute_inference"]}


@pytest.mark.parametrize("change, message", [
    ({"seeds": "0"}, "'seeds' must be a non-empty list of integers"),
    ({"defenses": []}, "'defenses' must be a non-empty list"),
    ({"backbones": [{"name": "test_resnet", "splt": "layer1"}]}, "unknown key 'splt'; did you mean 'split'"),
    ({"defenses": [{"name": "random_pruning", "knob": [2.0]}]}, r"prune_ratio must be in \[0, 1\)"),
    ({"defenses": [{"name": "random_pruning", "knob": [0.5], "config": {"prune_ratio": 0.5}}]}, "set the knob"),
    ({"defenses": [{"name": "random_pruning", "knob": [0.5, 0.5]}]}, "listed twice"),
    ({"utility_budget": -1}, r"'utility_budget' must be a number in \[0, 1\]"),
    ({"utility_budget": 1.5}, r"'utility_budget' must be a number in \[0, 1\]"),
    ({"eval_counts": {"reconstruction": 0}}, "eval_counts.reconstruction' must be an integer of at least 1"),
    ({"eval_counts": {"recon": 8}}, "unknown key 'recon'; did you mean 'reconstruction'"),
    ({"release_draws": 0}, "'release_draws' must be an integer of at least 1"),
    ({"bootstrap": 0}, "'bootstrap' must be an integer of at least 1"),
    ({"reference": "none_pruning"}, "did you mean 'no_pruning'"),
])
def test_bad_suites_are_rejected_with_the_path(change, message):
    raw = {**base(), **change}
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "file.yaml")


def test_knob_sweep_expands():
    raw = {**base(), "defenses": ["no_pruning", {"name": "random_pruning", "knob": [0.25, 0.75]}]}
    suite = parse_suite(raw, "x")
    assert [d.label for d in suite.defenses] == ["no_pruning@0", "random_pruning@0.25", "random_pruning@0.75"]


def test_two_configs_of_one_attack_need_labels():
    raw = {**base(), "attacks": ["attribute_inference", {"name": "attribute_inference", "config": {"epochs": 2}}]}
    with pytest.raises(SplitbenchError, match="give each entry a distinct 'label'"):
        parse_suite(raw, "x")
    raw["attacks"][1]["label"] = "attr_short"
    suite = parse_suite(raw, "x")
    cells = expand(suite)[0][1]
    assert [c.attack.label for c in cells] == ["attribute_inference", "attr_short"]
    assert len({c.file_name for c in cells}) == 2


@pytest.mark.parametrize("number, message", [
    ({"defense": "random_pruning", "attack": "attribute_inference", "metric": "utility", "value": 1},
     "defense 'random_pruning' is not run"),
    ({"defense": "no_pruning", "attack": "atribute_inference", "metric": "utility", "value": 1},
     "did you mean 'attribute_inference'"),
    ({"defense": "no_pruning", "attack": "attribute_inference", "metric": "psnrr", "value": 1},
     "unknown metric 'psnrr'"),
    ({"defense": "no_pruning", "attack": "attribute_inference", "metric": "utility", "value": "72%"},
     "value must be a number"),
    ({"defense": "no_pruning", "attack": "attribute_inference", "metric": "utility"}, "missing 'value'"),
])
def test_paper_numbers_are_validated(number, message):
    with pytest.raises(SplitbenchError, match=message):
        parse_suite({**base(), "paper": {"citation": "c", "numbers": [number]}}, "x")


def test_presentation_settings_are_not_part_of_any_cell_hash():
    a = parse_suite({**base(), "utility_budget": 0.02, "bootstrap": 1000}, "x")
    b = parse_suite({**base(), "utility_budget": 0.10, "bootstrap": 50, "reference": "no_pruning"}, "x")
    assert [c.hash() for _, cs in expand(a) for c in cs] == [c.hash() for _, cs in expand(b) for c in cs]


def test_eval_counts_and_release_draws_reach_the_cells():
    raw = {**base(), "defenses": ["no_pruning", {"name": "random_pruning", "knob": [0.5]}],
           "attacks": ["attribute_inference", "inversion_decoder"], "eval_counts": {"reconstruction": 16},
           "release_draws": 3}
    cells = {(c.model.defense.name, c.attack.name): c for _, cs in expand(parse_suite(raw, "x")) for c in cs}
    assert cells[("no_pruning", "inversion_decoder")].eval_count == 16
    assert cells[("no_pruning", "attribute_inference")].eval_count is None  # the whole eval split
    assert cells[("no_pruning", "inversion_decoder")].draws == 1            # a deterministic release
    assert cells[("random_pruning", "inversion_decoder")].draws == 3
    assert cells[("random_pruning", "inversion_decoder")].config()["eval"] == {"count": 16, "draws": 3}


@pytest.mark.parametrize("name", SUITES.names())
def test_a_resolved_suite_reads_back_to_the_same_cells(name):
    from benchmark.suite import suite_to_raw

    suite = load_suite(name)
    again = parse_suite(suite_to_raw(suite), "resolved")
    assert [c.file_name for _, cs in expand(again) for c in cs] == [c.file_name for _, cs in expand(suite) for c in cs]
    tuned = parse_suite({**base(), "tuning": {"budget": 2}}, "x")
    back = parse_suite(suite_to_raw(tuned), "x")
    assert [c.hash() for _, cs in expand(back) for c in cs] == [c.hash() for _, cs in expand(tuned) for c in cs]
