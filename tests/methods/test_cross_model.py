"""Cross-model transfer: the suppression ratios in a record are computed from the unintended accuracies in the same
record, unintended models are trained once (on the attacker's aux images) and then come from the cache,
image-shaped releases need no white box and share one unintended set across defenses, and activation releases
need the client's weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

import benchmark
from attacks.cross_model import CrossModelConfig, CrossModelTransfer
from benchmark.api.contract import Access, Defense, ReleaseKind
from benchmark.core.registry import DEFENSES
from benchmark.measure.scoring import scorer_for
from benchmark.models.backbones import BackboneSpec, fresh_model
from benchmark.models.trainer import Trainer
from benchmark.store.cache import ModelCache
from leaderboard.verification import is_timing
from tests.support.helpers import make_target, smoke_defense

SUITE = """
name: t
scenarios: [{name: digits, config: {max_samples: 200}}]
backbones: [{name: test_resnet, split: layer1}]
train: {epochs: 1, batch_size: 32}
defenses: [no_pruning, {name: random_pruning, knob: [0.5]}]
attacks:
  - name: cross_model
    config: {models: [test_resnet, test_efficientnet], epochs: 1, adaptive_epochs: 1, input_size: 16}
"""


def records(out):
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("xm")
    (root / "t.yaml").write_text(SUITE)
    summary = benchmark.run(str(root / "t.yaml"), out=root / "a", cache_dir=root / "cache", progress=False)
    return root, summary


def test_suppression_ratio_is_computed_from_the_numbers_in_the_record(first_run):
    root, summary = first_run
    assert summary.ok == 2, summary.failures
    for rec in records(root / "a"):
        m = rec["metrics"]
        for prefix in ("", "adaptive_"):
            accs = [m[f"{prefix}unintended_acc/{n}"] for n in ("test_resnet", "test_efficientnet")]
            assert m[f"{prefix}unintended_acc_max"] == pytest.approx(max(accs))
            assert m[f"{prefix}unintended_acc_mean"] == pytest.approx(sum(accs) / 2)
            assert m[f"{prefix}suppression_ratio_max"] == pytest.approx(m["utility"] / m[f"{prefix}unintended_acc_max"])
            c = m["unintended_chance"]
            assert m[f"{prefix}transfer_advantage"] == pytest.approx((m[f"{prefix}unintended_acc_max"] - c) / (1 - c))
        assert m["leakage"] == m["adaptive_transfer_advantage"]  # the adaptive attacker is the headline
        assert rec["budget"]["models"] == ["test_resnet", "test_efficientnet"] and rec["budget"]["epochs"] == 1


def test_unintended_models_are_trained_once_then_loaded(first_run, monkeypatch):
    root, _ = first_run
    cached = sorted((root / "cache" / "unintended").glob("*.safetensors"))
    # activation releases: one set per defended client (two clients here), two architectures each
    assert len(cached) == 4
    trained = []
    original = CrossModelTransfer._train

    def spy(self, model, data, epochs, trainer, desc, *args, **kw):
        trained.append(desc)
        return original(self, model, data, epochs, trainer, desc, *args, **kw)

    monkeypatch.setattr(CrossModelTransfer, "_train", spy)
    summary = benchmark.run(str(root / "t.yaml"), out=root / "b", cache_dir=root / "cache", progress=False)
    assert summary.ok == 2 and summary.models_loaded == 2
    assert trained and not [d for d in trained if d.startswith("unintended")], trained
    assert sorted((root / "cache" / "unintended").glob("*.safetensors")) == cached
    # a record reads the same whether its unintended models were trained or loaded (their final losses included)
    for a, b in zip(records(root / "a"), records(root / "b")):
        figures = {k: v for k, v in a["metrics"].items() if not is_timing(k)}
        assert any(k.startswith("attack.final_train_loss/") for k in figures) and any(
            k.startswith("unintended_acc") for k in figures)
        assert {k: v for k, v in b["metrics"].items() if not is_timing(k)} == figures


class ImageRelease(Defense):
    """A minimal image-shaped release (identity or mirrored image) read by a whole classifier."""

    Config = dict
    knob = "x"
    card = None
    release_kind = ReleaseKind.IMAGE

    def build(self):
        self.classifier = fresh_model(self.backbone.name, self.info.num_task_classes, self.info.image_size, 0)

    @property
    def client(self) -> nn.Module:
        return nn.Identity()

    def release(self, x):
        return x.flip(-1) if self.config.get("mirror") else x

    def predict(self, released):
        return self.classifier(released)

    def fit(self, data, trainer):  # the release is fixed; nothing to learn for this test
        pass


def test_image_releases_need_no_white_box_and_share_one_unintended_set(tiny_data, tmp_path, monkeypatch):
    cache = ModelCache(tmp_path)
    access = frozenset({Access.CLEAN_DATA, Access.AUX_PAIRS})  # no white box: asking for it would raise
    attack = CrossModelTransfer(CrossModelConfig(models=("test_resnet",), epochs=2, adaptive=False), seed=0)
    outs = {}
    for mirror in (False, True):
        d = ImageRelease({"mirror": mirror}, BackboneSpec("test_resnet", "layer1"), tiny_data.info).eval()
        trainer = Trainer("cpu", seed=0, progress=False)
        target = make_target(d, tiny_data, access, trainer, cache=cache)
        assert attack.applicable(target) is None
        outs[mirror] = attack.run(target, trainer)
        if not mirror:  # the second defense must reuse the unintended model trained for the first
            monkeypatch.setattr(CrossModelTransfer, "_train", lambda *a, **k: pytest.fail("retrained"))
    assert len(list((tmp_path / "unintended").glob("*.safetensors"))) == 1
    assert outs[True].extra_task_predictions is None
    assert outs[True].metrics == outs[False].metrics and "final_train_loss/test_resnet" in outs[True].metrics
    from benchmark.engine.evaluation import ModelEvaluation
    from benchmark.engine.runner import Runner

    n = len(tiny_data.eval)
    ev = ModelEvaluation(np.full(n, 0.8, dtype=np.float32), np.ones(1, dtype=np.float32), [], 0.0)
    truth = Runner.truth(tiny_data, np.arange(n), ev, CrossModelTransfer.kind)
    m, _ = scorer_for(CrossModelTransfer.kind).score(outs[False], truth)
    assert m["suppression_ratio_max"] == pytest.approx(0.8 / m["unintended_acc/test_resnet"])


def test_activation_releases_need_the_client_weights(tiny_data, tiny_backbone, trainer):
    class Sealed(DEFENSES.get("no_pruning")):
        white_box_client = False

    d = smoke_defense(Sealed, tiny_backbone, tiny_data.info)
    target = make_target(d, tiny_data, CrossModelTransfer.requires, trainer)
    reason = CrossModelTransfer(CrossModelConfig(), seed=0).applicable(target)
    assert reason and "client weights" in reason


def test_repeated_architectures_get_their_own_names():
    attack = CrossModelTransfer(CrossModelConfig(models=("test_vit", "test_resnet", "test_vit")), seed=2)
    assert attack._names() == ["test_vit#0", "test_resnet", "test_vit#1"]


def test_an_unintended_model_that_cannot_read_the_input_size_fails_the_cell_in_one_line(tmp_path):
    """test_convnext's downsampling leaves nothing for its last kernel below 32 px: the cell fails with a line naming
    the model, the size and the key to change, before any training, and the run goes on."""
    suite = SUITE.replace("[test_resnet, test_efficientnet]", "[test_resnet, test_convnext]")
    (tmp_path / "t.yaml").write_text(suite)
    summary = benchmark.run(str(tmp_path / "t.yaml"), out=tmp_path / "a", progress=False)
    assert summary.failed == 2 and summary.ok == 0
    for rec in records(tmp_path / "a"):
        assert rec["status"] == "failed" and "traceback" not in rec
        assert rec["reason"].startswith("cross_model: the unintended model test_convnext cannot read 16x16 inputs (")
        assert rec["reason"].endswith("set the attack's input_size to a size it reads (e.g. 32)")
        assert "\n" not in rec["reason"] and rec["metrics"]["utility"] >= 0.0  # the model's figures are kept


def test_a_patch_size_that_does_not_divide_the_input_size_is_the_same_one_line(tmp_path):
    """timm's ViT asserts (AssertionError, not RuntimeError) that its patch size divides the input: same line."""
    suite = SUITE.replace("[test_resnet, test_efficientnet]", "[test_vit]").replace("input_size: 16", "input_size: 24")
    (tmp_path / "t.yaml").write_text(suite)
    summary = benchmark.run(str(tmp_path / "t.yaml"), out=tmp_path / "a", progress=False, defenses=["no_pruning"])
    (rec,) = records(tmp_path / "a")
    assert summary.failed == 1 and "traceback" not in rec
    assert rec["reason"].startswith("cross_model: the unintended model test_vit cannot read 24x24 inputs (Input "
                                    "height (24) should be divisible by patch size (16).)")
