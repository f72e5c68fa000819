"""Attack tuning on the attacker's own data: candidates, the fit/select split of aux, the record of what was tried,
and bad input. Tuning never reads eval, train or val (booby-trapped)."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

import benchmark
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config, to_dict
from benchmark.core.registry import ATTACKS
from benchmark.engine.attacking import candidates, split_aux, tune
from benchmark.models.trainer import Trainer
from benchmark.store.records import iter_records
from benchmark.suites.parse import parse_suite
from benchmark.suites.tuning import Tuning
from tests.support.helpers import Forbidden, fitted_frozen


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_declared_search_space_is_valid(name):
    from benchmark.suites.tuning import check_space

    cls = ATTACKS.get(name)
    if cls.search_space:
        assert check_space(cls, cls.search_space, "test") == {k: tuple(v) for k, v in cls.search_space.items()}


def test_candidates_start_with_the_configured_one_and_respect_the_budget():
    cls = ATTACKS.get("attribute_inference")
    base = build_config(cls.Config, {"epochs": 7})
    t = Tuning({"lr": (1e-4, 1e-3, 1e-2), "epochs": (7, 9)}, budget=3)
    cands = candidates(cls, base, t, seed=0)
    assert cands[0] == base and len(cands) == 3 and len({str(to_dict(c)) for c in cands}) == 3
    assert candidates(cls, base, t, seed=0) == cands  # seeded
    everything = candidates(cls, base, dataclasses.replace(t, budget=50), seed=0)
    assert len(everything) == 6  # the whole 3 x 2 grid, the configured value included once


def test_aux_is_split_into_disjoint_fit_and_select_parts(tiny_data):
    fit, select = split_aux(tiny_data.aux, 0.25, seed=3)
    assert len(fit) + len(select) == len(tiny_data.aux) and len(select) == 10
    pool = {tuple(x.flatten()[:64].tolist()) for x in tiny_data.aux.images}
    assert {tuple(x.flatten()[:64].tolist()) for x in select.images} <= pool


def test_tuning_reads_only_the_attackers_data_and_keeps_the_strongest(tiny_data, tiny_backbone):
    defense = fitted_frozen("no_pruning", tiny_backbone, tiny_data)
    cls = ATTACKS.get("attribute_inference")
    base = build_config(cls.Config, {"epochs": 1})
    poisoned = dataclasses.replace(tiny_data, train=Forbidden("train"), val=Forbidden("val"),
                                   eval=Forbidden("eval"))
    trainer = Trainer("cpu", seed=0, progress=False)
    chosen, report = tune(cls, base, Tuning({"epochs": (1, 8)}, budget=2), 0, defense, poisoned, tiny_backbone,
                          trainer, None, None)
    assert [t["config"]["epochs"] for t in report["tried"]] == [1, 8]
    scores = [t["selection_score"] for t in report["tried"]]
    assert report["selection_score"] == max(scores)
    assert chosen.epochs == report["tried"][scores.index(max(scores))]["config"]["epochs"]
    assert report["select_samples"] + report["fit_samples"] == len(tiny_data.aux)


SUITE = textwrap.dedent("""
    name: tuned
    seeds: [0]
    scenarios: [{name: digits, config: {max_samples: 200}}]
    backbones: [{name: test_resnet, split: layer1}]
    train: {epochs: 1, batch_size: 32}
    defenses: [no_pruning]
    attacks:
      - {name: attribute_inference, config: {epochs: 1}}
      - {name: inversion_decoder, config: {epochs: 1}}
    tuning: {budget: 2, attacks: [attribute_inference], spaces: {attribute_inference: {epochs: [1, 3]}}}
""")


def test_a_tuned_run_records_the_space_the_choice_and_the_scores(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    summary = benchmark.run(str(tmp_path / "s.yaml"), out=tmp_path / "out", progress=False)
    assert summary.failed == 0
    recs = {r["config"]["attack"]["name"]: r for _, r in iter_records(tmp_path / "out")}
    tuned = recs["attribute_inference"]
    assert tuned["config"]["attack"]["tuning"] == {"space": {"epochs": [1, 3]}, "budget": 2, "select_fraction": 0.3}
    report = tuned["budget"]["tuning"]
    assert len(report["tried"]) == 2 and report["chosen"]["epochs"] in (1, 3)
    assert tuned["budget"]["epochs"] == report["chosen"]["epochs"]  # the eval run used the chosen config
    assert tuned["metrics"]["tuning_seconds"] == report["seconds"] > 0  # the search's time, on both clocks
    assert tuned["metrics"]["tuning_cpu_seconds"] == report["cpu_seconds"] > 0
    assert "tuning" not in recs["inversion_decoder"]["config"]["attack"]
    assert "tuning_cpu_seconds" not in recs["inversion_decoder"]["metrics"]
    from leaderboard import render_run

    assert "attribute_inference (tuned)" in render_run(tmp_path / "out", write=False)


def base_suite(**tuning):
    return {"name": "t", "scenarios": ["digits"], "backbones": [{"name": "test_resnet", "split": "layer1"}],
            "defenses": ["no_pruning"], "attacks": ["attribute_inference", "inversion_decoder"], "tuning": tuning}


@pytest.mark.parametrize("tuning, message", [
    ({"budget": 0}, "tuning.budget must be an integer of at least 1"),
    ({"budget": -2}, "tuning.budget must be an integer of at least 1"),
    ({"budget": 2, "spaces": {"attribute_inference": {"lrr": [0.1]}}},
     "attack 'attribute_inference' has no config field 'lrr' to search; did you mean 'lr'"),
    ({"budget": 2, "spaces": {"attribute_inference": {"lr": []}}},
     "attack 'attribute_inference' field 'lr': the search range must be a non-empty list"),
    ({"budget": 2, "spaces": {"attribute_inference": {"epochs": [-1]}}}, "epochs"),
    ({"budget": 2, "attacks": ["atribute_inference"]}, "did you mean 'attribute_inference'"),
    ({"budget": 2, "select_fraction": 1.5}, "select_fraction must be a number in \\(0, 1\\)"),
    ({"budget": 2, "bugdet": 3}, "unknown key 'bugdet'"),
])
def test_bad_tuning_blocks_are_one_line_errors(tuning, message):
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(base_suite(**tuning), "x.yaml")


def test_an_attack_asked_to_tune_without_a_search_space_is_named(monkeypatch):
    monkeypatch.setattr(ATTACKS.get("inversion_decoder"), "search_space", {})
    with pytest.raises(SplitbenchError, match="attack 'inversion_decoder' has no search space"):
        parse_suite(base_suite(budget=2, attacks=["inversion_decoder"]), "x.yaml")
    # tuning "every attack" skips the ones without a space instead of failing
    suite = parse_suite(base_suite(budget=2), "x.yaml")
    assert set(suite.tuning) == {"attribute_inference"}


def test_tuning_can_be_switched_on_from_the_command_line():
    from benchmark.suites.narrow import apply_overrides

    suite = parse_suite({k: v for k, v in base_suite().items() if k != "tuning"}, "x.yaml")
    assert suite.tuning == {}
    tuned = apply_overrides(suite, {"tuning.budget": 3})
    assert set(tuned.tuning) == {"attribute_inference", "inversion_decoder"}
    assert all(t.budget == 3 for t in tuned.tuning.values())
    with pytest.raises(SplitbenchError, match="tuning.budget"):
        apply_overrides(suite, {"tuning.budget": 0})
