"""nopeek: the distance correlation it penalises, and that penalising it lowers it on a tiny model."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from defenses.nopeek import distance_correlation
from tests.support.helpers import assert_trains_no_pruning, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def test_distance_correlation_sees_dependence_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    assert float(distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(distance_correlation(x, 5 * x + 2)) == pytest.approx(1.0, abs=1e-5)
    independent = float(distance_correlation(x, torch.randn(64, 3, generator=g)))
    nonlinear = float(distance_correlation(x, x.pow(2)))  # uncorrelated in each coordinate, yet dependent
    assert independent < 0.4 < nonlinear
    with pytest.raises(ValueError, match="two batches of equal size >= 2"):
        distance_correlation(x, x[:10])


def _fit(data, alpha, epochs=3, seed=2):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    name = "no_pruning" if alpha is None else "nopeek"
    over = {} if alpha is None else {"alpha": alpha}
    train = {"epochs": epochs, "batch_size": 32, "lr": 0.002}
    d = smoke_defense(DEFENSES.get(name), SPEC, data.info, seed=seed, train=train, **over)
    d.fit(data, Trainer("cpu", seed=seed, progress=False))
    return d.freeze()


def test_alpha_zero_is_no_defense(tiny_data):
    assert_trains_no_pruning("nopeek", SPEC, tiny_data, train={"epochs": 1, "batch_size": 32, "lr": 0.002}, alpha=0.0)


def test_distance_correlation_falls_as_alpha_grows(tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images)
    dcor = {}
    for alpha in (0.0, 30.0):
        d = _fit(tiny_data, alpha, epochs=10)  # the suites' learning rate
        with torch.no_grad():
            dcor[alpha] = float(distance_correlation(x, d.release(x)))
    assert dcor[30.0] < dcor[0.0] - 0.05, dcor  # measured: 0.99 vs 0.80 after 10 epochs
