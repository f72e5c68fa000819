"""A suite's ``deployment``: each track's defended clients also timed on a real backbone (cost only)."""

from __future__ import annotations

import json
import textwrap

import pytest

import benchmark
from benchmark.core.errors import NotApplicable, SplitbenchError
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from benchmark.suites.parse import parse_suite
from leaderboard.render import render_run
from tests.support.helpers import smoke_defense

SUITE = textwrap.dedent("""
    name: deploy
    description: tiny suite with a deployment backbone
    reference: no_pruning
    seeds: [0]
    scenarios:
      - {name: digits, config: {max_samples: 200}}
    backbones:
      - {name: test_resnet, split: layer1}
    deployment:
      test_resnet@layer1: {name: resnet18, split: layer1, image_size: 48, batch: 4}
    train: {epochs: 1, batch_size: 32}
    defenses:
      - name: no_pruning
      - {name: paoding, knob: [0.5]}
    attacks:
      - {name: attribute_inference, config: {epochs: 1}}
""")

KEY = "deployed/resnet18@layer1/"


@pytest.fixture(scope="module")
def deployed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    (root / "deploy.yaml").write_text(SUITE)
    summary = benchmark.run(str(root / "deploy.yaml"), out=root / "out", progress=False)
    assert summary.exit_code == 0
    render_run(root / "out")
    return root


def _metrics(root):
    out = {}
    for p in sorted((root / "out" / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        out[rec["config"]["defense"]["name"]] = rec["metrics"]
    return out


def test_records_hold_the_client_cost_on_the_deployment_backbone(deployed_run):
    m = _metrics(deployed_run)
    assert set(m) == {"no_pruning", "paoding"}
    for name, metrics in m.items():
        for leaf in ("client_ms_b1_p50", "client_ms_bB_p50", "client_macs", "client_params"):
            assert metrics[KEY + leaf] > 0, (name, leaf)
        assert metrics[KEY + "image_size"] == 48 and metrics[KEY + "latency_batch"] == 4
        # resnet18 at 48 px costs far more than the tiny track model at 32 px
        assert metrics[KEY + "client_macs"] > 5 * metrics["client_macs"]
    # PAODING's pruning carried over: half of every prunable chain's channels gone, so fewer MACs than undefended
    assert m["paoding"][KEY + "client_macs"] < m["no_pruning"][KEY + "client_macs"]
    assert m["paoding"][KEY + "client_params"] < m["no_pruning"][KEY + "client_params"]


def test_the_leaderboard_shows_the_deployed_cost_and_says_what_it_is(deployed_run):
    text = (deployed_run / "out" / "leaderboard.md").read_text()
    assert "ms on resnet18@layer1 (b1 p50)" in text and "MACs on resnet18@layer1" in text
    assert "Deployed on `resnet18@layer1`" in text and "at 48 px" in text
    csv = (deployed_run / "out" / "leaderboard.csv").read_text().splitlines()[0]
    assert KEY + "client_ms_b1_p50" in csv


def test_the_deployed_cost_is_cached_and_a_rerun_reads_it(deployed_run, tmp_path):
    cached = sorted((deployed_run / "out" / "cache" / "models").glob("*.deployed.*.json"))
    assert len(cached) == 2
    summary = benchmark.run(str(deployed_run / "deploy.yaml"), out=tmp_path / "again",
                            cache_dir=deployed_run / "out" / "cache", progress=False)
    assert summary.models_loaded == 2 and summary.models_trained == 0
    again = {}
    for p in sorted((tmp_path / "again" / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        again[rec["config"]["defense"]["name"]] = rec["metrics"]
    before = _metrics(deployed_run)
    for name in before:  # timings included: read from the cache, not measured again
        assert {k: v for k, v in again[name].items() if k.startswith(KEY)} == \
            {k: v for k, v in before[name].items() if k.startswith(KEY)}


def test_a_deployment_key_that_is_no_backbone_of_the_suite_is_one_line():
    raw = {"name": "t", "scenarios": ["digits"], "backbones": [{"name": "test_resnet", "split": "layer1"}],
           "defenses": ["no_pruning"], "attacks": ["attribute_inference"],
           "deployment": {"test_resnet@layer2": {"name": "resnet18"}}}
    with pytest.raises(SplitbenchError, match=r"deployment key 'test_resnet@layer2' is not a backbone of this "
                                              r"suite; did you mean 'test_resnet@layer1'"):
        parse_suite(raw, "t")


@pytest.mark.parametrize("spec, message", [
    ({"name": "resnet181"}, "unknown backbone 'resnet181'"),
    ({"name": "resnet18", "image_size": 4}, "image_size must be at least 8"),
    ({"name": "resnet18", "batch": 0}, "batch must be at least 1"),
    ({"name": "resnet18", "size": 32}, "unknown key 'size'"),
    ("resnet18", "expected a mapping of DeploymentSpec fields"),
])
def test_a_bad_deployment_entry_is_one_line_naming_it(spec, message):
    raw = {"name": "t", "scenarios": ["digits"], "backbones": [{"name": "test_resnet", "split": "layer1"}],
           "defenses": ["no_pruning"], "attacks": ["attribute_inference"],
           "deployment": {"test_resnet@layer1": spec}}
    with pytest.raises(SplitbenchError, match=message):
        parse_suite(raw, "t")


def test_a_deployment_split_the_backbone_lacks_stops_the_run_before_training(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE.replace("{name: resnet18, split: layer1,", "{name: resnet18, split: layr1,"))
    with pytest.raises(SplitbenchError, match="deployment backbone 'resnet18' has no split point 'layr1'; did you "
                                              "mean 'layer1'"):
        benchmark.run(str(tmp_path / "s.yaml"), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "cache").exists() or not list((tmp_path / "out" / "cache").rglob("*.safetensors"))


def test_the_resolved_suite_keeps_the_deployment(tmp_path):
    from benchmark.suites.parse import suite_to_raw

    suite = parse_suite(__import__("yaml").safe_load(SUITE), "deploy")
    again = parse_suite(suite_to_raw(suite), "again")
    assert again.deployment == suite.deployment
    assert again.deployment["test_resnet@layer1"].backbone == BackboneSpec("resnet18", "layer1")


def test_a_defense_that_cannot_carry_its_fitted_structure_is_not_deployable(tiny_data, tiny_backbone):
    base = DEFENSES.get("no_pruning")

    class Reshaping(base):  # records a structure, says nothing of how to carry it
        def structure(self):
            return {"kept": {"conv1": [0]}}

    d = smoke_defense(Reshaping, tiny_backbone, tiny_data.info)
    with pytest.raises(NotApplicable, match="does not say how to carry that onto another backbone"):
        d.deployed_on(BackboneSpec("resnet18", "layer1"), 32)


def test_patrol_deployed_meets_its_budget_on_the_real_backbone(tiny_data, tiny_backbone):
    from benchmark.kit.cost import count_macs

    d = smoke_defense(DEFENSES.get("patrol"), tiny_backbone, tiny_data.info)
    copy = d.deployed_on(BackboneSpec("resnet18", "layer1"), 48)
    import torch

    x = torch.zeros(1, 3, 48, 48)
    assert copy.structure()["kept"], "resnet18 two stages deeper is over PATROL's budget: it must prune"
    assert count_macs(copy.client, x) <= copy.budget_value


def test_odd_labels_in_records_are_not_rendered():
    from leaderboard.protocol import Row
    from leaderboard.render import deployed_labels

    r = Row("no_pruning", "prune_ratio", 0.0, "higher", True, (0,))
    r.cost = {"deployed/resnet18@layer1/client_ms_b1_p50": 1.0,
              "deployed/<script>x</script>@a/client_ms_b1_p50": 2.0}
    assert deployed_labels([r]) == ["resnet18@layer1"]


def test_a_defense_that_breaks_on_the_deployment_backbone_keeps_its_cells(tmp_path, caplog, monkeypatch):
    """A cost-only figure never fails a model: its cells run, its records lack the deployed figures, the log
    says why."""
    from benchmark.api.contract import Defense

    def broken(self, backbone, image_size):
        raise RuntimeError("no such layer on this backbone")

    (tmp_path / "s.yaml").write_text(SUITE.replace("  - {name: paoding, knob: [0.5]}\n", ""))
    monkeypatch.setattr(Defense, "deployed_on", broken)
    with caplog.at_level("WARNING", logger="splitbench"):
        summary = benchmark.run(str(tmp_path / "s.yaml"), out=tmp_path / "out", progress=False)
    assert summary.ok == 1 and summary.failed == 0
    rec = json.loads(next((tmp_path / "out" / "records").glob("*.json")).read_text())
    assert rec["status"] == "ok" and not any(k.startswith("deployed/") for k in rec["metrics"])
    assert "could not time the client deployed on resnet18@layer1 at 48 px: RuntimeError: no such layer" in caplog.text
