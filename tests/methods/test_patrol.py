"""PATROL: a deeper client pruned to the budget, a sound Lipschitz bound that training lowers, clear errors."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import NotApplicable
from benchmark.core.registry import DEFENSES
from benchmark.kit.cost import count_macs, count_params_used
from benchmark.models.backbones import BackboneSpec, build_split
from benchmark.models.trainer import Trainer
from defenses.patrol import LipschitzBound
from tests.support.helpers import smoke_defense, train_only

PATROL = DEFENSES.get("patrol")


def _fit(tiny_data, tiny_backbone, **cfg):
    torch.manual_seed(0)
    d = smoke_defense(PATROL, tiny_backbone, tiny_data.info, **cfg)
    d.fit(train_only(tiny_data), Trainer("cpu", seed=0, progress=False))
    return d.eval()


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_backbone):
    """One smoke fit per budget metric, shared by the tests of this module."""
    cache = {}

    def get(metric):
        if metric not in cache:
            cache[metric] = _fit(tiny_data, tiny_backbone, budget_metric=metric)
        return cache[metric]

    return get


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_deeper_client_fits_the_budget(fitted, tiny_data, tiny_backbone, metric):
    d = fitted(metric)
    x = tiny_data.info.normalize(tiny_data.eval.images[:1])
    base = build_split(tiny_backbone, 2, 32).client
    deep = build_split(BackboneSpec("test_resnet", "layer2"), 2, 32).client
    # measured as the runner measures a record: what runs inside release()
    cost = count_macs(d.release, x) if metric == "macs" else count_params_used(d.release, x, d)
    base_cost = count_macs(base, x) if metric == "macs" else count_params_used(base, x, base)
    deep_cost = count_macs(deep, x) if metric == "macs" else count_params_used(deep, x, deep)
    assert d.tail_spec().split == "layer2" and d.structure()["split"] == "layer2"
    assert d.budget_value == pytest.approx(base_cost)
    assert cost <= base_cost < deep_cost
    assert d.kept and all(len(v) < w for v, w in zip(d.kept.values(), (16, 16, 32, 48)))
    with torch.no_grad():
        assert d.release(x).shape == deep(x).shape  # channels removed inside, the release keeps its shape


def test_lipschitz_estimate_is_held_down_by_the_regulariser(tiny_data, tiny_backbone):
    """Task training alone raises the (log) bound; the regulariser keeps it far below that (measured: 3.70 -> 6.30
    free, 3.70 -> 4.05 regularised, over 3 epochs of 120 digits)."""
    train = {"epochs": 3, "batch_size": 16, "lr": 0.003}
    runs = {w: _fit(tiny_data, tiny_backbone, lipschitz_weight=w, adv_weight=0.0, warmup_epochs=1, train=train)
            for w in (0.0, 1.0)}
    hist, free = runs[1.0].lipschitz_history, runs[0.0].lipschitz_history
    assert len(hist) == 5  # after pruning, after each epoch, after re-estimating batch-norm statistics
    assert hist[0] == pytest.approx(free[0])  # same model up to the first regularised step
    assert free[-1] > free[0] + 1.0  # task training alone raises it
    assert hist[-1] < free[-1] - 1.0  # the regulariser holds it down


def test_lipschitz_bound_holds_on_random_pairs(fitted, tiny_data):
    d = fitted("macs")
    x = tiny_data.info.normalize(tiny_data.eval.images[:32])
    bound = LipschitzBound(d.client, x[:1])
    log_l = bound.estimate(iterations=100)
    bound.close()
    g = torch.Generator().manual_seed(0)
    x2 = x + 0.05 * torch.randn(x.shape, generator=g)
    x3 = x.roll(1, dims=0)
    with torch.no_grad():
        for other in (x2, x3):
            ratio = (d.client(x) - d.client(other)).flatten(1).norm(dim=1) / (x - other).flatten(1).norm(dim=1)
            assert float(ratio.max().log()) <= log_l + 1e-3


def test_budget_too_small_is_a_clear_error(tiny_data, tiny_backbone):
    d = smoke_defense(PATROL, tiny_backbone, tiny_data.info, budget=0.05)
    with pytest.raises(NotApplicable, match="over the budget"):
        d.prune_to_budget()


def test_no_stage_past_the_last_one(tiny_data):
    with pytest.raises(NotApplicable, match="has no stage 1 past 'layer4'"):
        smoke_defense(PATROL, BackboneSpec("test_resnet", "layer4"), tiny_data.info)


def test_a_client_reaching_1x1_maps_fits_and_its_probe_leaves_batch_statistics_alone(tiny_data):
    """test_resnet cut after layer2, two stages more: the client ends on 1x1 maps, where a one-sample forward in
    training mode has no batch statistics (the probe of the Lipschitz bound used to fail there)."""
    d = smoke_defense(PATROL, BackboneSpec("test_resnet", "layer2"), tiny_data.info, extra_depth=2)
    running = {k: v.clone() for k, v in d.client.state_dict().items() if "running_mean" in k}
    d.client.train()
    LipschitzBound(d.client, tiny_data.info.normalize(tiny_data.train.images[:4]))
    assert d.client.training  # the probe gives the mode back
    assert all(torch.equal(v, d.client.state_dict()[k]) for k, v in running.items())
    d.fit(train_only(tiny_data), Trainer("cpu", seed=0, progress=False))
    assert d.release(tiny_data.info.normalize(tiny_data.train.images[:2])).shape[0] == 2
