"""siamese: the contrastive loss, and that weighting it pulls the task's classes together in the release."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from defenses.siamese import contrastive_loss, rms_distances
from tests.support.helpers import assert_trains_no_pruning, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def test_contrastive_loss_by_hand():
    z = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])  # rms distances: 0, sqrt(2), sqrt(2)
    y = torch.tensor([0, 0, 1])
    assert torch.allclose(rms_distances(z)[0, 2], torch.tensor(2.0 ** 0.5))
    assert float(contrastive_loss(z, y, margin=1.0)) == pytest.approx(0.0)  # same pair at 0, others beyond 1
    assert float(contrastive_loss(z, y, margin=2.0)) == pytest.approx((2 - 2 ** 0.5) ** 2, rel=1e-5)
    z2 = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]])  # the same pair 2 apart: d^2 = 4
    assert float(contrastive_loss(z2, y, margin=1.0)) == pytest.approx(4.0 + 0.5 * 1.0, rel=1e-5)


def _fit(data, alpha, epochs):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    d = smoke_defense(DEFENSES.get("siamese"), SPEC, data.info, seed=2, alpha=alpha,
                      train={"epochs": epochs, "batch_size": 32, "lr": 0.002})
    d.fit(data, Trainer("cpu", seed=2, progress=False))
    return d.freeze()


def test_alpha_zero_is_no_defense(tiny_data):
    assert_trains_no_pruning("siamese", SPEC, tiny_data, train={"epochs": 1, "batch_size": 32, "lr": 0.002}, alpha=0.0)


def test_weighting_it_pulls_each_class_together(tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images)
    y = tiny_data.eval.task
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    ratio = {}
    for alpha in (0.0, 3.0):
        model = _fit(tiny_data, alpha, 20)  # measured: 0.94 at alpha 0, 0.84 at 3 (0.93 vs 0.94 after 6 epochs)
        with torch.no_grad():
            d = rms_distances(model.release(x))
        ratio[alpha] = float(d[same].mean() / d[(y[:, None] != y[None, :])].mean())
    assert ratio[3.0] < ratio[0.0] - 0.05, ratio  # within-class over between-class distance falls
