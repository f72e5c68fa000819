"""The paper suites of dynamic channel pruning (``paper-dcp``) and latent masking (``paper-latent``): they parse,
expand to the paper's setting, carry the paper's numbers, and run end to end on tiny fixture copies of the
datasets in their real on-disk formats (no download)."""

from __future__ import annotations

import dataclasses
import json

import pytest

import benchmark
from benchmark.suites.expand import expand
from benchmark.suites.parse import load_suite
from tests.support.fixtures import write_cifar100, write_fairface

TINY = {"train.epochs": 1, "train.batch_size": 16, "attack.attribute_inference.epochs": 1,
        "attack.inversion_decoder.epochs": 1}
TINY_TRANSFER = {"attack.cross_model.models": ["test_resnet"], "attack.cross_model.epochs": 1,
                 "attack.cross_model.adaptive_epochs": 1}


def _numbers(suite):
    return {(n["defense"], n["metric"]): n["value"] for n in suite.paper["numbers"]}


def test_paper_dcp_is_the_papers_setting():
    suite = load_suite("paper-dcp")
    (scenario,) = suite.scenarios
    assert scenario.name == "fairface"
    assert (scenario.config.task, scenario.config.sensitive) == ("gender", "race")
    assert [(b.name, b.split) for b in suite.backbones] == [("resnet18", "layer3")]
    assert (suite.train.lr, suite.train.batch_size, suite.train.optimizer) == (0.01, 64, "adam")
    names = {m.defense.name for m, _ in expand(suite)}
    assert names == {"no_pruning", "random_pruning", "dynamic_channel_pruning"}
    nums = _numbers(suite)
    assert nums[("dynamic_channel_pruning", "attribute_accuracy")] == 0.20
    assert nums[("random_pruning", "attribute_accuracy")] == 0.43
    assert nums[("no_pruning", "attribute_accuracy")] == 0.40
    assert nums[("no_pruning", "attribute_majority")] == 0.14


def test_paper_latent_is_the_papers_setting():
    suite = load_suite("paper-latent")
    (scenario,) = suite.scenarios
    assert scenario.name == "cifar100" and scenario.config.task == "fine"
    plan = expand(suite)
    assert plan[0][0].defense.name == suite.reference == "no_pruning"
    knobs = sorted(m.defense.knob_value for m, _ in plan if m.defense.name == "latent_masking")
    assert len(knobs) >= 2
    assert _numbers(suite)[("latent_masking", "suppression_ratio_max")] == 45
    assert "cross_model" in {a.name for a in suite.attacks}


def _one_knob_each(suite):
    """The suite with only the first knob setting of each defense (the end-to-end test's cost)."""
    first = {}
    for d in suite.defenses:
        first.setdefault(d.name, d)
    return dataclasses.replace(suite, defenses=tuple(first.values()))


def _records(out):
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


@pytest.mark.parametrize("name, writer, overrides", [
    pytest.param("paper-dcp", lambda root: write_fairface(root, n=60), TINY, id="paper-dcp"),
    pytest.param("paper-latent", lambda root: write_cifar100(root, n_train=50, n_test=10),
                 {**TINY, **TINY_TRANSFER}, id="paper-latent"),
])
def test_paper_suite_runs_a_step_on_fixture_data(name, writer, overrides, tmp_path):
    root = writer(tmp_path / "data")
    out = tmp_path / "run"
    suite = _one_knob_each(load_suite(name))
    summary = benchmark.run(suite, out=out, data_root=root, scenario_args={"max_samples": 40, "image_size": 32},
                            overrides=overrides, progress=False)
    assert summary.failed == 0, summary.failures
    plan = expand(suite)
    assert {m.defense.name for m, _ in plan} == {d.name for d in load_suite(name).defenses}
    assert summary.total == sum(len(cells) for _, cells in plan)
    records = _records(out)
    assert len(records) == summary.total and all(r["status"] == "ok" for r in records)
    for r in records:
        m = r["metrics"]
        assert 0.0 <= m["utility"] <= 1.0 and m["payload_bytes"] > 0
        assert r["config"]["backbone"]["name"] == "resnet18"
        assert ("attribute_accuracy" in m) or ("psnr" in m) or ("suppression_ratio_max" in m)
    run = json.loads((out / "run.json").read_text())
    assert run["paper"]["numbers"], "the paper's numbers travel with the run"
