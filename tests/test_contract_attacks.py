"""Contract tests run over every registered attack, against a fitted no_pruning model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.cache import ModelCache
from benchmark.cards import MethodCard
from benchmark.interfaces import Attack, AttackKind, AttackOutput, Target
from benchmark.registry import ATTACKS
from benchmark.runner import score_attack
from benchmark.trainer import Trainer
from tests.helpers import fitted_frozen, smoke_attack

NAMES = ATTACKS.names()


@pytest.fixture(scope="module")
def defended(tiny_data, tiny_backbone):
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def test_registry_is_not_empty():
    assert {"attribute_inference", "inversion_decoder"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_and_config(name):
    cls = ATTACKS.get(name)
    assert issubclass(cls, Attack)
    assert isinstance(cls.card, MethodCard) and cls.card.missing() == []
    assert isinstance(cls.kind, AttackKind)
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    for f in dataclasses.fields(cls.Config):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    cls.Config()


@pytest.mark.parametrize("name", NAMES)
def test_runs_within_its_declared_access_and_is_scored(name, defended, tiny_data, tiny_backbone, tmp_path):
    cls = ATTACKS.get(name)
    attack = smoke_attack(cls)
    trainer = Trainer("cpu", seed=0, progress=False)
    # The target enforces `requires`: asking for more raises AccessError and fails this test.
    target = Target(defended, tiny_data, cls.requires, trainer, utility=0.9, backbone=tiny_backbone,
                    cache=ModelCache(tmp_path), seed=0)
    assert attack.applicable(target) is None
    out = attack.run(target, trainer)
    assert isinstance(out, AttackOutput)
    assert out.budget, "an attack must report its budget"
    n = len(out.index)
    assert 0 < n <= len(tiny_data.eval)
    if cls.kind == AttackKind.ATTRIBUTE:
        assert out.attributes.shape == (n,)
    elif cls.kind == AttackKind.RECONSTRUCTION:
        assert out.images.shape == (n, *target.image_shape)
        assert out.images.min() >= 0 and out.images.max() <= 1
    else:
        assert out.task_predictions and all(p.shape[0] == n for p in out.task_predictions.values())
    metrics = score_attack(cls.kind, out, tiny_data, 0.9)
    assert 0.0 <= metrics["leakage_chance"] <= 1.0
    assert all(isinstance(v, float) for v in metrics.values())


def test_inversion_decoder_starts_at_the_attackers_mean_image():
    from benchmark.nets import ReleaseDecoder

    prior = torch.rand(3, 16, 16) * 0.8 + 0.1
    dec = ReleaseDecoder(8, 4, (3, 16, 16), width=32, prior=prior)
    torch.nn.init.zeros_(dec.net[-1].weight)
    torch.nn.init.zeros_(dec.net[-1].bias)
    out = dec.eval()(torch.randn(2, 8, 4, 4))
    torch.testing.assert_close(out, prior.expand(2, -1, -1, -1), atol=1e-5, rtol=0)
