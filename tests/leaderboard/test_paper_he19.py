"""The ``paper-he19`` suite (He et al., ACSAC 2019, CIFAR-10): it parses, expands to their setting, every paper
number names a cell the suite runs, and it runs a step end to end on a fixture copy of CIFAR-10 in its real
on-disk format (with a tiny backbone by default; with the suite's vgg13_bn in the slow lane)."""

from __future__ import annotations

import json

import pytest

import benchmark
from benchmark.core.fields import to_dict
from benchmark.models.backbones import split_points
from benchmark.suites.expand import expand
from benchmark.suites.parse import load_suite
from tests.support.fixtures import write_cifar10

TINY = {"train.epochs": 1, "train.batch_size": 16, "attack.optimization.steps": 2,
        "attack.inversion_decoder.epochs": 1, "eval_counts.reconstruction": 4}


def test_paper_he19_is_the_papers_setting():
    suite = load_suite("paper-he19")
    (scenario,) = suite.scenarios
    assert scenario.name == "cifar10" and scenario.config.image_size == 32
    assert [(b.name, b.split) for b in suite.backbones] == [
        ("vgg13_bn", "features.5"), ("vgg13_bn", "features.12"), ("vgg13_bn", "features.19")]
    assert {b.split for b in suite.backbones} <= set(split_points("vgg13_bn"))
    assert (suite.train.epochs, suite.train.batch_size, suite.train.lr, suite.train.optimizer) == (50, 32, 1e-3, "adam")
    rmle = [a.config for a in suite.attacks if a.name == "optimization"]
    assert sorted(c.tv_weight for c in rmle) == [0.0, 10.0, 1000.0]
    assert all((c.steps, c.lr, c.init, c.feature_loss, c.tv_beta) == (5000, 1e-2, "zeros", "mse", 2.0) for c in rmle)
    plan = expand(suite)
    assert len(plan) == 3 and all(len(cells) == 4 for _, cells in plan)


def test_every_paper_number_names_a_cell_of_the_suite():
    suite = load_suite("paper-he19")
    cells = {(c.model.defense.name, c.attack.label, c.model.backbone.label): to_dict(c.attack.config)
             for _, cs in expand(suite) for c in cs}
    numbers = suite.paper["numbers"]
    assert len(numbers) == 11
    for n in numbers:
        assert (n["defense"], n["attack"], n["backbone"]) in cells, f"no cell for {n}"
    # each rMLE number belongs to the cell with the code's TV weight for that split
    tv = {"features.5": 0.0, "features.12": 10.0, "features.19": 1000.0}
    for n in numbers:
        if n["attack"].startswith("rmle"):
            split = n["backbone"].split("@")[1]
            assert cells[(n["defense"], n["attack"], n["backbone"])]["tv_weight"] == tv[split], n
    got = {(n["attack"], n["backbone"].split("@")[1], n["metric"]): n["value"] for n in numbers}
    assert got[("rmle_tv10", "features.12", "psnr")] == 19.47
    assert got[("rmle_tv1000", "features.19", "ssim")] == 0.163
    assert got[("inversion_decoder", "features.12", "ssim")] == 0.680


def _run(tmp_path, backbones):
    root = write_cifar10(tmp_path / "data", n_per_batch=12)
    out = tmp_path / "run"
    summary = benchmark.run("paper-he19", out=out, data_root=root, backbones=backbones,
                            scenario_args={"max_samples": 60}, overrides=TINY, progress=False)
    assert summary.failed == 0, summary.failures
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    assert len(records) == summary.total == 4 and all(r["status"] == "ok" for r in records)
    for r in records:
        assert {"psnr", "ssim", "psnr_baseline", "ssim_baseline"} <= set(r["metrics"])
        assert r["config"]["scenario"]["name"] == "cifar10"
    rmle = [r for r in records if r["config"]["attack"]["name"] == "optimization"]
    assert sorted(r["budget"]["tv_weight"] for r in rmle) == [0.0, 10.0, 1000.0]
    # the attack inverts the 4 eval releases and the attacker's hold-out of aux beside them
    assert all(r["budget"]["steps"] == 2 and r["samples"]["eval"] == 4 for r in rmle)
    assert all(r["budget"]["images"] == 4 + r["samples"]["holdout"] and r["samples"]["holdout"] > 0 for r in rmle)
    run = json.loads((out / "run.json").read_text())
    # the run carries the paper's numbers of the backbones it ran (a narrowed suite drops the others, so that its
    # worker processes read it back): none for a stand-in backbone, the split's four for one of the suite's
    assert run["paper"]["numbers"] == [n for n in load_suite("paper-he19").paper["numbers"]
                                       if n["backbone"] in backbones]
    return records


def test_paper_he19_runs_a_step_on_fixture_data(tmp_path):
    records = _run(tmp_path, ["test_resnet@act1"])  # the suite's vgg13_bn (129M parameters) runs in the slow lane
    assert {r["config"]["backbone"]["name"] for r in records} == {"test_resnet"}


@pytest.mark.slow
def test_paper_he19_runs_a_step_with_its_backbone_on_fixture_data(tmp_path):
    records = _run(tmp_path, ["vgg13_bn@features.12"])
    assert {r["config"]["backbone"]["split"] for r in records} == {"features.12"}
