"""Every built-in suite parses and expands; suite files are validated strictly."""

from __future__ import annotations

import pytest

from benchmark.core.errors import SplitbenchError
from benchmark.core.registry import SUITES
from benchmark.suites.expand import expand
from benchmark.suites.parse import load_suite, parse_suite


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
    from benchmark.core.registry import ATTACKS, DEFENSES

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
    assert cells[("random_pruning", "inversion_decoder")].config()["eval"] == {
        "count": 16, "draws": 3, "holdout": {"fraction": 0.2, "reconstruction": 32}}  # the default hold-out


@pytest.mark.parametrize("name", SUITES.names())
def test_a_resolved_suite_reads_back_to_the_same_cells(name):
    from benchmark.suites.parse import suite_to_raw

    suite = load_suite(name)
    again = parse_suite(suite_to_raw(suite), "resolved")
    assert [c.file_name for _, cs in expand(again) for c in cs] == [c.file_name for _, cs in expand(suite) for c in cs]
    tuned = parse_suite({**base(), "tuning": {"budget": 2}}, "x")
    back = parse_suite(suite_to_raw(tuned), "x")
    assert [c.hash() for _, cs in expand(back) for c in cs] == [c.hash() for _, cs in expand(tuned) for c in cs]


def _cells(suite):
    return [c.file_name for _, cs in expand(suite) for c in cs]


def _read_back(suite):
    """The suite as a worker process re-creates it (:meth:`benchmark.engine.runner.Runner.to_spec`)."""
    from benchmark.suites.parse import suite_to_raw

    return parse_suite(suite_to_raw(suite), "resolved")


def test_standard_cpu_narrowed_to_one_backbone_reads_back_with_its_deployment():
    from benchmark.models.backbones import BackboneSpec
    from benchmark.suites.narrow import restrict
    from benchmark.suites.parse import suite_to_raw

    raw = suite_to_raw(load_suite("standard-cpu"))  # one track; give it a second one, deployed too
    raw["backbones"].append({"name": "test_resnet", "split": "layer2", "pretrained": False})
    raw["deployment"]["test_resnet@layer2"] = {**raw["deployment"]["test_resnet@layer1"], "split": "layer2"}
    full = parse_suite(raw, "two tracks")
    assert set(full.deployment) == {"test_resnet@layer1", "test_resnet@layer2"}
    narrowed = restrict(full, backbones=["test_resnet@layer1"])
    assert [b.label for b in narrowed.backbones] == ["test_resnet@layer1"]
    assert narrowed.deployment == {"test_resnet@layer1": full.deployment["test_resnet@layer1"]}
    again = _read_back(narrowed)
    assert _cells(again) == _cells(narrowed) and again.deployment == narrowed.deployment
    assert again.deployment["test_resnet@layer1"].backbone == BackboneSpec("resnet18", "layer1")
    # a backbone the suite does not list keeps no deployment, and still reads back
    other = restrict(full, backbones=["test_vit"])
    assert other.deployment == {} and _cells(_read_back(other)) == _cells(other)


@pytest.mark.parametrize("name, narrowing, numbers", [
    ("paper-he19", {"backbones": ["vgg13_bn@features.12"]},
     [("rmle_tv10", "psnr"), ("rmle_tv10", "ssim"), ("inversion_decoder", "psnr"), ("inversion_decoder", "ssim")]),
    ("paper-he19", {"backbones": ["test_resnet@act1"]}, []),
    ("paper-he19", {"attacks": ["rmle_tv0"]}, [("rmle_tv0", "psnr"), ("rmle_tv0", "ssim")]),
    ("paper-dcp", {"defenses": ["no_pruning"]},
     [("attribute_inference", "attribute_accuracy"), ("attribute_inference", "attribute_majority")]),
    ("paper-dcp", {"defenses": ["random_pruning", "no_pruning"], "attacks": ["inversion_decoder"]}, []),
])
def test_a_narrowed_paper_suite_keeps_the_numbers_of_the_cells_it_runs_and_reads_back(name, narrowing, numbers):
    from benchmark.suites.narrow import restrict

    full = load_suite(name)
    narrowed = restrict(full, **narrowing)
    assert [(n["attack"], n["metric"]) for n in narrowed.paper["numbers"]] == numbers
    assert narrowed.paper["citation"] == full.paper["citation"]
    again = _read_back(narrowed)
    assert _cells(again) == _cells(narrowed) and again.paper == narrowed.paper


def test_a_narrowed_tuned_suite_tunes_the_attacks_it_kept_and_reads_back():
    from benchmark.suites.narrow import restrict

    full = load_suite("standard")
    assert "inversion_decoder" in full.tuning and "attribute_inference" in full.tuning
    narrowed = restrict(full, attacks=["attribute_inference"])
    assert set(narrowed.tuning) == {"attribute_inference"}
    assert _cells(_read_back(narrowed)) == _cells(narrowed)  # cell hashes include the tuning
    raw = {**base(), "attacks": ["attribute_inference", "inversion_decoder"],
           "tuning": {"budget": 2, "attacks": ["attribute_inference", "inversion_decoder"],
                      "spaces": {"attribute_inference": {"lr": [0.001, 0.003]}}}}
    suite = parse_suite(raw, "x")
    # --set tuning.KEY re-reads the suite's tuning block: it must not name the attack left out either
    kept = restrict(suite, attacks=["inversion_decoder"], overrides={"tuning.budget": 3})
    assert set(kept.tuning) == {"inversion_decoder"} and kept.tuning["inversion_decoder"].budget == 3
    assert _cells(_read_back(kept)) == _cells(kept)
    other = restrict(suite, attacks=["attribute_inference"], overrides={"tuning.budget": 3})
    assert other.tuning["attribute_inference"].space == {"lr": (0.001, 0.003)}
    assert _cells(_read_back(other)) == _cells(other)


# -- admission -----------------------------------------------------------------------------------------------------
def prereg(**defense_extra):
    raw = base()
    raw["backbones"] = [{"name": "test_resnet", "split": "layer1"}, {"name": "test_resnet", "split": "layer2"}]
    raw["admission"] = "preregistered"
    raw["defenses"] = ["no_pruning", {"name": "random_pruning", "knob": [0.25, 0.5], **defense_extra}]
    return raw


def test_preregistered_settings_reach_the_manifest_with_a_hash_and_read_back():
    from benchmark.suites.parse import suite_to_raw

    s = parse_suite(prereg(preregistered=0.25), "t")
    pres = s.presentation()
    assert pres["admission"] == "preregistered" and pres["preregistered"] == {"random_pruning": {"*": 0.25}}
    assert len(pres["preregistered_hash"]) == 16
    again = parse_suite(suite_to_raw(s), "again")
    assert again.presentation() == pres
    per_track = parse_suite(prereg(preregistered={"test_resnet@layer1": 0.25, "test_resnet@layer2": 0.5}), "t")
    assert per_track.presentation()["preregistered_hash"] != pres["preregistered_hash"]
    assert "admission" not in parse_suite(base(), "t").presentation()  # the default rule, as before


@pytest.mark.parametrize("change, message", [
    ({"admission": "select"}, "'admission' must be one of selection, preregistered, got 'select'; did you mean"),
    ({"preregistered": None}, "defense 'random_pruning' has no preregistered setting"),
    ({"preregistered": 0.75}, r"the preregistered setting random_pruning@0.75 is not among the settings the suite "
                              r"runs \(random_pruning@0.25, random_pruning@0.5\)"),
    ({"preregistered": {"test_resnet@layer3": 0.25}}, "'test_resnet@layer3' is not a backbone of this suite"),
    ({"preregistered": {"test_resnet@layer1": 0.25}}, "no preregistered setting for track test_resnet@layer2"),
    ({"preregistered": "0.25"}, "expected a knob value"),
    ({"admission": "selection", "preregistered": 0.25}, "'preregistered' settings are given, but admission is"),
])
def test_bad_admission_settings_are_one_line_each(change, message):
    raw = prereg()
    d = raw["defenses"][1]
    if "preregistered" in change and change["preregistered"] is not None:
        d["preregistered"] = change["preregistered"]
    if "admission" in change:
        raw["admission"] = change["admission"]
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "t")


def test_an_override_that_drops_a_preregistered_setting_is_refused_and_the_rule_can_be_switched():
    from benchmark.suites.narrow import restrict

    s = parse_suite(prereg(preregistered=0.25), "t")
    with pytest.raises(SplitbenchError, match="preregistered setting random_pruning@0.25 is not among"):
        restrict(s, overrides={"defense.random_pruning.prune_ratio": 0.3})
    switched = restrict(s, overrides={"defense.random_pruning.prune_ratio": 0.3, "admission": "selection"})
    assert switched.admission == "selection" and not switched.preregistered
    with pytest.raises(SplitbenchError, match="defense 'dynamic_channel_pruning' has no preregistered setting"):
        restrict(s, defenses=["no_pruning", "dynamic_channel_pruning"])
    narrowed = restrict(s, defenses=["no_pruning"])  # only the reference: nothing left to preregister
    assert narrowed.preregistered == {}


def test_a_defense_added_from_the_command_line_gets_its_knob_grid_and_preregistered_setting():
    """How a submitter runs a defense the official suite file does not list: --defense adds it, --set
    defense.NAME.knob gives its settings and --set defense.NAME.preregistered the one admission judges, both
    recorded (with the preregistration's hash) as if the suite file had said them."""
    from benchmark.suites.narrow import restrict
    from benchmark.suites.parse import suite_to_raw

    s = parse_suite(prereg(preregistered=0.25), "t")
    added = restrict(s, defenses=["no_pruning", "dynamic_channel_pruning"],
                     overrides={"defense.dynamic_channel_pruning.knob": [0.5, 0.75],
                                "defense.dynamic_channel_pruning.preregistered": 0.5})
    assert [d.label for d in added.defenses] == ["no_pruning@0", "dynamic_channel_pruning@0.5",
                                                "dynamic_channel_pruning@0.75"]
    assert added.preregistered == {"dynamic_channel_pruning": {"*": 0.5}}
    assert parse_suite(suite_to_raw(added), "again").presentation() == added.presentation()
    # the grid replaces the suite's own settings of a defense it lists, keeping that defense's config
    regrid = restrict(s, overrides={"defense.random_pruning.knob": 0.5, "defense.random_pruning.preregistered": 0.5})
    assert [d.label for d in regrid.defenses] == ["no_pruning@0", "random_pruning@0.5"]
    assert regrid.presentation()["preregistered_hash"] != s.presentation()["preregistered_hash"]
    with pytest.raises(SplitbenchError, match=r"--set defense.dynamic_channel_pruning.preregistered=0.5"):
        restrict(s, defenses=["no_pruning", "dynamic_channel_pruning"])  # the missing line says how to give it
    bad = [({"defense.random_pruning.knob": "half"}, "expected a number or a list of numbers"),
           ({"defense.random_pruning.preregistered": [0.25, 0.5]}, "expected a number"),
           ({"defense.random_pruning.knob": [0.5], "defense.random_pruning.preregistered": 0.25},
            "random_pruning@0.25 is not among the settings the suite runs"),
           ({"defense.patrol.knob": [1]}, r"--set names \['patrol'\], which the selected suite does not run")]
    for change, message in bad:
        with pytest.raises(SplitbenchError, match=message):
            restrict(s, overrides=change)
    with pytest.raises(SplitbenchError, match="'preregistered' settings are given, but admission is 'selection'"):
        restrict(parse_suite(base(), "t"), defenses=["no_pruning", "random_pruning"],
                 overrides={"defense.random_pruning.preregistered": 0.25})


def test_the_attacker_knowledge_axis_adds_cells_at_each_share_and_leaves_the_main_ones_alone():
    from benchmark.suites.parse import suite_to_raw

    raw = base()
    raw["attacks"] = ["attribute_inference", "inversion_decoder"]
    plain = {c.file_name for _, cells in expand(parse_suite(dict(raw), "t")) for c in cells}
    raw["aux_fraction"] = {"fractions": [1.0, 0.25, 0.05], "attacks": ["attribute_inference"]}
    s = parse_suite(raw, "t")
    cells = [c for _, cs in expand(s) for c in cs]
    assert {c.file_name for c in cells if c.aux_fraction == 1.0} == plain  # the main cells keep their hashes
    shares = sorted((c.aux_fraction, c.attack.label) for c in cells if c.aux_fraction != 1.0)
    assert shares == [(0.05, "attribute_inference"), (0.25, "attribute_inference")]
    assert all("__aux0.25__" in c.file_name for c in cells if c.aux_fraction == 0.25)
    assert parse_suite(suite_to_raw(s), "again").aux_fractions == s.aux_fractions


@pytest.mark.parametrize("value, message", [
    ({"fractions": [0.25]}, "must hold 1.0"),
    ({"fractions": [1.0, 1.5]}, r"numbers in \(0, 1\]"),
    ({"fractions": [1.0, 0.25, 0.25]}, "no value twice"),
    ({"fractions": [1.0, 0.25], "attacks": ["attribute_inferense"]}, "did you mean 'attribute_inference'"),
    ({"fraction": [1.0]}, "unknown key 'fraction'"),
])
def test_bad_aux_fractions_are_one_line_each(value, message):
    raw = base()
    raw["aux_fraction"] = value
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "t")


def test_a_built_in_suite_names_its_file_inside_the_package_not_the_install_folder():
    """Its source goes into every manifest a run writes: a shipped entry must not carry a machine's folder."""
    from benchmark.suites import load_suite

    assert load_suite("quick").source == "benchmark/suites/quick.yaml"
    assert load_suite("standard-cpu").source == "benchmark/suites/standard-cpu.yaml"


def test_data_free_attacks_are_the_zero_data_end_of_the_knowledge_axis():
    """Left out of aux_fraction's default (they read no aux data, so a share changes nothing), and refused by name."""
    raw = base()
    raw["attacks"] = ["attribute_inference", "unsplit"]
    raw["aux_fraction"] = {"fractions": [1.0, 0.25]}
    assert parse_suite(dict(raw), "t").aux_fractions == {"attribute_inference": (0.25,)}
    raw["aux_fraction"] = {"fractions": [1.0, 0.25], "attacks": ["unsplit"]}
    with pytest.raises(SplitbenchError, match="'unsplit', which reads no aux data.*zero-data end"):
        parse_suite(raw, "t")


def test_an_attack_limited_to_some_backbones_runs_only_there_and_reads_back():
    from benchmark.suites.narrow import restrict

    raw = base()
    raw["backbones"] = [{"name": "test_resnet", "split": "layer1"}, {"name": "test_resnet", "split": "layer2"}]
    raw["attacks"] = ["attribute_inference",
                      {"name": "inversion_decoder", "label": "long", "backbones": ["test_resnet@layer2"]}]
    suite = parse_suite(raw, "t")
    ran = {(m.backbone.label, c.attack.label) for m, cells in expand(suite) for c in cells}
    assert ran == {("test_resnet@layer1", "attribute_inference"), ("test_resnet@layer2", "attribute_inference"),
                   ("test_resnet@layer2", "long")}
    assert _cells(_read_back(suite)) == _cells(suite)
    narrowed = restrict(suite, backbones=["test_resnet@layer1"])  # none of its backbones left: the attack goes
    assert [a.label for a in narrowed.attacks] == ["attribute_inference"]
    assert _cells(_read_back(narrowed)) == _cells(narrowed)
    raw["attacks"][1]["backbones"] = ["test_resnet@layer3"]
    with pytest.raises(SplitbenchError, match=r"attacks\[1\].backbones names 'test_resnet@layer3'.*did you mean"):
        parse_suite(raw, "t")
    raw["attacks"][1]["backbones"] = []
    with pytest.raises(SplitbenchError, match=r"attacks\[1\].backbones must be a non-empty list"):
        parse_suite(raw, "t")


def test_two_variants_of_one_defense_run_side_by_side_each_with_its_own_preregistered_setting():
    """Dynamic channel pruning's light and server-copy filter networks (its ``variants`` field ``scorer``) at the
    same knob settings: two rows, each preregistered under its own row name; the same variant twice is refused."""
    from benchmark.suites.narrow import restrict
    from benchmark.suites.parse import suite_to_raw

    dcp, copy = "dynamic_channel_pruning", "dynamic_channel_pruning[scorer=server_copy]"
    raw = prereg()
    raw["defenses"] = ["no_pruning", {"name": dcp, "knob": [0.5, 0.75], "preregistered": 0.75},
                       {"name": dcp, "knob": [0.5], "config": {"scorer": "server_copy"}, "preregistered": 0.5}]
    s = parse_suite(raw, "t")
    assert [d.row_label for d in s.defenses] == ["no_pruning@0", f"{dcp}@0.5", f"{dcp}@0.75", f"{copy}@0.5"]
    assert s.preregistered == {dcp: {"*": 0.75}, copy: {"*": 0.5}}
    assert [(name, config["scorer"]) for name, _, config in s.preregistered_settings()] == [
        (dcp, "light"), (dcp, "server_copy")]
    cells = [c for _, cs in expand(s) for c in cs]  # the two variants are different computations, apart on disk
    assert len({c.hash() for c in cells}) == len({c.file_name for c in cells}) == len(cells)
    assert parse_suite(suite_to_raw(s), "again").presentation() == s.presentation()
    # --set defense.NAME.preregistered names every row of NAME; overriding the variant field leaves one row,
    # which then needs its own preregistration (the server copy's does not carry over to the light one)
    both = restrict(s, overrides={f"defense.{dcp}.preregistered": 0.5})
    assert both.preregistered == {dcp: {"*": 0.5}, copy: {"*": 0.5}}
    only_copy = parse_suite(raw | {"defenses": raw["defenses"][::2]}, "t")
    assert only_copy.preregistered == {copy: {"*": 0.5}}
    with pytest.raises(SplitbenchError, match=rf"defense '{dcp}' has no preregistered setting .* --set defense\.{dcp}"
                                              r"\.preregistered=0\.5"):
        restrict(only_copy, overrides={f"defense.{dcp}.scorer": "light"})
    light = restrict(only_copy, overrides={f"defense.{dcp}.scorer": "light", f"defense.{dcp}.preregistered": 0.5})
    assert light.preregistered == {dcp: {"*": 0.5}} and [d.row for d in light.defenses] == ["no_pruning", dcp]
    raw["defenses"][2]["config"] = {"scorer": "light"}
    with pytest.raises(SplitbenchError, match=r"defense settings listed twice: \['dynamic_channel_pruning@0.5'\] "
                                              r"\(two entries of one defense must differ in a variant field"):
        parse_suite(raw, "t")


def test_admission_seeds_fit_the_settings_admission_reads_once_each_with_a_model_cell():
    """More seeds for admission cost a fit, not an attack: under the preregistered rule the reference and each
    preregistered setting get a model cell at every admission seed; under selection every setting does (any may be
    chosen). The list reads back from a manifest's suite and is refused when malformed."""
    from benchmark.suites.parse import suite_to_raw

    raw = prereg(preregistered=0.25)
    raw["seeds"], raw["admission_seeds"] = [0], [5, 6]
    s = parse_suite(raw, "t")
    assert s.admission_seeds == (5, 6) and parse_suite(suite_to_raw(s), "again").admission_seeds == (5, 6)
    plan = expand(s)
    models = [(spec, cells) for spec, cells in plan if all(c.attack is None for c in cells)]
    assert all(c.attack is not None for spec, cells in plan if spec.seed == 0 for c in cells)
    assert sorted((spec.backbone.split, spec.seed, spec.defense.label) for spec, _ in models) == [
        (split, seed, label) for split in ("layer1", "layer2") for seed in (5, 6)
        for label in ("no_pruning@0", "random_pruning@0.25")]  # not random_pruning@0.5: admission never reads it
    assert all(len(cells) == 1 and "__model__s" in cells[0].file_name and "attack" not in cells[0].config()
               for _, cells in models)
    assert len({c.hash() for _, cells in plan for c in cells}) == sum(len(cells) for _, cells in plan)
    raw["admission"] = "selection"
    del raw["defenses"][1]["preregistered"]
    assert len([1 for _, cells in expand(parse_suite(raw, "t")) if cells[0].attack is None]) == 2 * 2 * 3
    assert "admission_seeds" not in suite_to_raw(parse_suite(base(), "t"))


@pytest.mark.parametrize("value, message", [
    ("5", "'admission_seeds' must be a list of integers, got '5'"),
    ([5, True], "'admission_seeds' must be a list of integers"),
    ([5, 5], r"'admission_seeds' lists \[5\] more than once"),
    ([0, 5], r"admission_seeds \[0\] are also in 'seeds'"),
])
def test_bad_admission_seeds_are_one_line_each(value, message):
    raw = {**base(), "seeds": [0], "admission_seeds": value}
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "t")


def test_curve_seeds_run_the_settings_admission_does_not_read_at_fewer_seeds():
    """Under the preregistered rule a defense's other knob settings (its curve's other points, never ranked) run only
    at ``curve_seeds``; the reference and the preregistered settings run every seed, and admission seeds are as
    before. The key reads back from a manifest's suite; without it every setting runs every seed."""
    from benchmark.suites.parse import suite_to_raw

    raw = prereg(preregistered=0.25)
    raw["seeds"], raw["admission_seeds"], raw["curve_seeds"] = [0, 1, 2], [5], [0, 1]
    s = parse_suite(raw, "t")
    assert s.curve_seeds == (0, 1) and parse_suite(suite_to_raw(s), "again").curve_seeds == (0, 1)
    attacked = sorted((spec.backbone.split, spec.defense.label, spec.seed) for spec, cells in expand(s)
                      if cells[0].attack is not None)
    want = sorted((split, label, seed) for split in ("layer1", "layer2")
                  for label, seeds in (("no_pruning@0", (0, 1, 2)), ("random_pruning@0.25", (0, 1, 2)),
                                       ("random_pruning@0.5", (0, 1))) for seed in seeds)
    assert attacked == want
    assert sorted((spec.defense.label, spec.seed) for spec, cells in expand(s) if cells[0].attack is None
                  and spec.backbone.split == "layer1") == [("no_pruning@0", 5), ("random_pruning@0.25", 5)]
    assert s.seeds_of(s.defenses[2]) == (0, 1) and s.seeds_of(s.defenses[1]) == (0, 1, 2)
    raw["curve_seeds"] = []  # only the settings admission reads
    assert {spec.defense.label for spec, _ in expand(parse_suite(raw, "t"))} == {"no_pruning@0", "random_pruning@0.25"}
    del raw["curve_seeds"]
    assert len([1 for spec, cells in expand(parse_suite(raw, "t")) if cells[0].attack is not None]) == 2 * 3 * 3
    assert "curve_seeds" not in suite_to_raw(parse_suite(raw, "t"))


@pytest.mark.parametrize("value, message", [
    ("0", "'curve_seeds' must be a list of integers, got '0'"),
    ([0, 0], r"'curve_seeds' lists \[0\] more than once"),
    ([0, 7], r"curve_seeds \[7\] are not in 'seeds' \[0, 1\] \(expected a subset"),
])
def test_bad_curve_seeds_are_one_line_each(value, message):
    raw = {**prereg(preregistered=0.25), "seeds": [0, 1], "curve_seeds": value}
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "t")


def test_curve_seeds_need_the_preregistered_rule_and_follow_narrowing():
    from benchmark.suites.narrow import restrict

    raw = {**prereg(preregistered=0.25), "seeds": [0, 1, 2], "curve_seeds": [0, 1]}
    with pytest.raises(SplitbenchError, match="'curve_seeds' runs the settings admission does not read at fewer "
                                              "seeds, but admission is 'selection'"):
        parse_suite({**base(), "seeds": [0, 1], "curve_seeds": [0]}, "t")
    s = parse_suite(raw, "t")
    assert restrict(s, seeds=[1, 2]).curve_seeds == (1,)
    assert restrict(s, seeds=[2]).curve_seeds == ()
    assert restrict(s, overrides={"curve_seeds": [2]}).curve_seeds == (2,)
    assert restrict(s, overrides={"curve_seeds": None}).curve_seeds is None
    # under selection any setting may be ranked: every setting runs every seed again
    assert restrict(s, overrides={"admission": "selection"}).curve_seeds is None
    with pytest.raises(SplitbenchError, match=r"curve_seeds \[3\] are not in 'seeds'"):
        restrict(s, overrides={"curve_seeds": [3]})


def test_narrowing_seeds_keeps_the_other_admission_seeds_and_they_can_be_set_from_the_command_line():
    from benchmark.suites.narrow import restrict

    s = parse_suite({**base(), "seeds": [0, 1], "admission_seeds": [5, 6]}, "t")
    assert restrict(s, seeds=[0]).admission_seeds == (5, 6)
    moved = restrict(s, seeds=[5])  # an admission seed named by --seed is attacked
    assert moved.seeds == (5,) and moved.admission_seeds == (6,)
    assert restrict(s, overrides={"admission_seeds": []}).admission_seeds == ()
    assert restrict(s, overrides={"admission_seeds": [7]}).admission_seeds == (7,)
    with pytest.raises(SplitbenchError, match=r"admission_seeds \[1\] are also in 'seeds'"):
        restrict(s, overrides={"admission_seeds": [1]})
