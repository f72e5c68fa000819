"""PAODING: data-free, deterministic, exact at ratio 0, merges duplicate channels losslessly, physically smaller."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.data.types import Split, TensorSplit
from benchmark.kit.cost import count_macs, count_params_used
from benchmark.models.trainer import Trainer
from defenses.paoding import interval_entropy
from tests.support.helpers import Forbidden, smoke_defense

PAODING = DEFENSES.get("paoding")


@pytest.fixture(scope="module")
def trained_state(tiny_data, tiny_backbone):
    """The split model after the task training that precedes pruning (ratio 0: nothing pruned)."""
    torch.manual_seed(0)
    d = smoke_defense(PAODING, tiny_backbone, tiny_data.info, prune_ratio=0.0)
    d.fit(tiny_data, Trainer("cpu", seed=0, progress=False))
    return {k: v.clone() for k, v in d.state_dict().items()}


def _trained(state, tiny_data, tiny_backbone, **cfg):
    d = smoke_defense(PAODING, tiny_backbone, tiny_data.info, **cfg)
    d.load_state_dict(state)
    return d.eval()


def _outputs(d, tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images[:16])
    with torch.no_grad():
        return d.release(x), d.predict(d.release(x))


def test_pruning_reads_no_data(trained_state, tiny_data, tiny_backbone, monkeypatch):
    d = _trained(trained_state, tiny_data, tiny_backbone, prune_ratio=0.5)

    def forbidden(*_a, **_k):
        raise AssertionError("the pruning step read a data split")

    monkeypatch.setattr(Split, "batches", forbidden)
    monkeypatch.setattr(TensorSplit, "batches", forbidden)
    kept = d.prune_data_free()
    assert kept and all(len(v) < 32 for v in kept.values())


def test_fit_without_task_epochs_touches_no_split(tiny_data, tiny_backbone):
    d = smoke_defense(PAODING, tiny_backbone, tiny_data.info, prune_ratio=0.5, train={"epochs": 0})
    data = dataclasses.replace(tiny_data, train=Forbidden("train"), aux=Forbidden("aux"), eval=Forbidden("eval"))
    d.fit(data, Trainer("cpu", seed=0, progress=False))
    assert {k: len(v) for k, v in d.kept.items()} == {"conv1.0": 8, "conv1.3": 8, "layer1.0.conv1": 16}


def test_ratio_zero_leaves_the_outputs_unchanged(trained_state, tiny_data, tiny_backbone):
    d = _trained(trained_state, tiny_data, tiny_backbone, prune_ratio=0.0)
    before = _outputs(d, tiny_data)
    assert d.prune_data_free() == {} and d.structure() == {}
    after = _outputs(d, tiny_data)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("mode", ["impact", "stochastic"])
def test_deterministic_for_a_fixed_seed(trained_state, tiny_data, tiny_backbone, mode):
    runs = []
    for _ in range(2):
        d = _trained(trained_state, tiny_data, tiny_backbone, prune_ratio=0.5, mode=mode, step=0.1)
        runs.append((d.prune_data_free(), d.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_duplicate_channels_merge_without_changing_the_output(trained_state, tiny_data, tiny_backbone):
    """Two channels with the same incoming weights carry the same activation: merging them is exact."""
    d = _trained(trained_state, tiny_data, tiny_backbone, prune_ratio=1 / 32)  # one channel of the 32-wide chain
    with torch.no_grad():
        conv, bn = d.client.get_submodule("layer1.0.conv1"), d.client.get_submodule("layer1.0.bn1")
        for t in (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t[7] = t[4]
    before = _outputs(d, tiny_data)
    kept = d.prune_data_free()
    assert list(kept) == ["layer1.0.conv1"] and set(range(32)) - set(kept["layer1.0.conv1"]) in ({4}, {7})
    for a, b in zip(before, _outputs(d, tiny_data)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_pruned_client_is_physically_smaller(trained_state, tiny_data, tiny_backbone):
    d = _trained(trained_state, tiny_data, tiny_backbone, prune_ratio=0.5)
    x = tiny_data.info.normalize(tiny_data.eval.images[:1])
    macs, params = count_macs(d.release, x), count_params_used(d.release, x, d)
    shape = d.release(x).shape
    d.prune_data_free()
    assert d.client.get_submodule("layer1.0.conv1").weight.shape[0] == 16
    assert count_macs(d.release, x) < 0.8 * macs and count_params_used(d.release, x, d) < 0.8 * params
    assert d.release(x).shape == shape


def test_interval_entropy():
    same = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    apart = torch.tensor([[0.0, 10.0, 20.0]]), torch.tensor([[1.0, 11.0, 21.0]])
    assert float(interval_entropy(*same, 0.9)) == 0.0
    assert float(interval_entropy(*apart, 0.9)) == pytest.approx(3 * (1 / 3) * torch.log(torch.tensor(3.0)).item())
