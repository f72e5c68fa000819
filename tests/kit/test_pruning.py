"""Structured pruning utility: chain discovery, physical removal, restoring kept channels, interval bounds."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from benchmark.core.errors import NotApplicable, SplitbenchError
from benchmark.kit.bounds import IntervalNet
from benchmark.kit.chains import apply_kept, find_chains, prune_chain, require_chains
from benchmark.models.backbones import BackboneSpec, build_split


def _split(name="test_resnet", split="layer1", seed=0):
    s = build_split(BackboneSpec(name, split), 2, 32, seed)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        g = torch.Generator().manual_seed(seed)
        for m in s.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return s.eval()


def _x(n=4):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_chains_stop_at_residuals_and_the_release():
    client = _split().client
    chains = {c.producer: c for c in find_chains(client)}
    assert list(chains) == ["conv1.0", "conv1.3", "layer1.0.conv1"]
    assert chains["layer1.0.conv1"].norms == ("layer1.0.bn1",)
    assert chains["layer1.0.conv1"].consumers == ("layer1.0.conv2",)
    # the stem output feeds the residual addition and the block output is the release: never prunable
    assert "conv1.6" not in chains and "layer1.0.conv2" not in chains


def test_resnet18_chains_are_the_block_internals():
    client = build_split(BackboneSpec("resnet18", "layer2"), 2, 32).client
    assert [c.producer for c in find_chains(client)] == [
        "layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.1.conv1"]


def test_pruning_equals_zeroing_the_removed_channels_and_keeps_the_release_shape():
    s = _split()
    chain = find_chains(s.client)[2]
    keep = [0, 3, 5, 8, 13, 21, 30]
    simulated = copy.deepcopy(s)
    drop = [i for i in range(chain.width) if i not in keep]
    with torch.no_grad():
        simulated.client.get_submodule(chain.consumers[0]).weight[:, drop] = 0
    params_before = sum(p.numel() for p in s.client.parameters())
    prune_chain(s.client, chain, keep)
    conv = s.client.get_submodule(chain.producer)
    assert conv.weight.shape[0] == conv.out_channels == len(keep)
    assert s.client.get_submodule(chain.norms[0]).running_var.shape == (len(keep),)
    assert s.client.get_submodule(chain.consumers[0]).weight.shape[1] == len(keep)
    assert sum(p.numel() for p in s.client.parameters()) < params_before
    with torch.no_grad():
        z, z_ref = s.client(_x()), simulated.client(_x())
        torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
        assert s.server(z).shape == (4, 2)


def test_apply_kept_rebuilds_the_pruned_architecture():
    s = _split()
    chains = find_chains(s.client)
    kept = {chains[0].producer: [1, 2, 3], chains[2].producer: list(range(0, 32, 2))}
    for c in chains:
        if c.producer in kept:
            prune_chain(s.client, c, kept[c.producer])
    fresh = _split(seed=5)
    apply_kept(fresh.client, kept)
    fresh.load_state_dict(s.state_dict())  # strict: every shape matches
    with torch.no_grad():
        torch.testing.assert_close(fresh(_x()), s(_x()))
    with pytest.raises(SplitbenchError, match="not a prunable layer"):
        apply_kept(_split().client, {"layer1.0.conv2": [0]})


def test_linear_chains_inside_transformer_blocks():
    s = build_split(BackboneSpec("test_vit", "blocks.0"), 2, 32).eval()
    chains = find_chains(s.client)
    assert [(c.producer, c.kind, c.consumers) for c in chains] == [
        ("blocks.0.mlp.fc1", "linear", ("blocks.0.mlp.fc2",))]
    x = _x(2)
    shape = s.client(x).shape
    prune_chain(s.client, chains[0], range(0, chains[0].width, 3))
    assert s.client.get_submodule("blocks.0.mlp.fc1").out_features == len(range(0, chains[0].width, 3))
    assert s.client(x).shape == shape


def test_no_prunable_channels_is_a_clear_error():
    client = build_split(BackboneSpec("resnet18", "act1"), 2, 32).client  # conv, bn, relu: all released
    assert find_chains(client) == []
    with pytest.raises(SplitbenchError, match="resnet18@act1: the client has no prunable channels"):
        require_chains(client, "resnet18@act1")


def test_interval_bounds_contain_every_value_in_the_box():
    s = _split()
    net = IntervalNet(s, torch.zeros(1, 3, 32, 32))
    lo, hi = torch.full((1, 3, 32, 32), -1.0), torch.full((1, 3, 32, 32), 2.0)
    env = net.values(lo, hi)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 3 - 1
    with torch.no_grad():
        y = s(x).double()
    b_lo, b_hi = env[net.output_node()]
    assert (y >= b_lo - 1e-6).all() and (y <= b_hi + 1e-6).all()
    bn = env[net.node("client.conv1.1")]  # an inner layer too
    with torch.no_grad():
        inner = s.client.get_submodule("conv1.1")(s.client.get_submodule("conv1.0")(x)).double()
    assert (inner >= bn[0] - 1e-6).all() and (inner <= bn[1] + 1e-6).all()
    assert (b_hi - b_lo).min() > 0


def test_difference_bounds_contain_the_change_a_merge_causes():
    s = _split()
    chain = find_chains(s.client)[2]
    net = IntervalNet(s, torch.zeros(1, 3, 32, 32))
    box = (torch.full((1, 3, 32, 32), -1.0), torch.full((1, 3, 32, 32), 1.0))
    env = net.values(*box)
    consumer = net.node("client." + chain.consumers[0])
    v_lo, v_hi = env[consumer.args[0]]
    i, j = 3, 5
    d_lo, d_hi = v_lo[:, i:i + 1] - v_hi[:, j:j + 1], v_hi[:, i:i + 1] - v_lo[:, j:j + 1]
    w = s.client.get_submodule(chain.consumers[0]).weight.detach().double()[:, j:j + 1]
    mid, rad = F.conv2d((d_lo + d_hi) / 2, w, padding=1), F.conv2d((d_hi - d_lo) / 2, w.abs(), padding=1)
    out_lo, out_hi = net.difference({consumer: (mid - rad, mid + rad)})
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        before = s(x).double()
        wt = s.client.get_submodule(chain.consumers[0]).weight
        wt[:, i] += wt[:, j]
        wt[:, j] = 0
        change = s(x).double() - before
    assert change.abs().max() > 0
    assert (change >= out_lo - 1e-6).all() and (change <= out_hi + 1e-6).all()


def test_interval_bounds_refuse_unsupported_operations():
    s = build_split(BackboneSpec("test_vit", "blocks.0"), 2, 32).eval()
    net = IntervalNet(s.client, torch.zeros(1, 3, 32, 32))
    with pytest.raises(NotApplicable, match="interval bounds: unsupported"):
        net.values(torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32))
