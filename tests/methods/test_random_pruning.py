"""random_pruning: one mask per batch while training (as the official code), one per sample once deployed."""

from __future__ import annotations

import torch

from benchmark.core.registry import DEFENSES
from benchmark.kit.channels import observed_mask
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import smoke_defense


def _defense(tiny_data, ratio=0.5):
    torch.manual_seed(0)
    return smoke_defense(DEFENSES.get("random_pruning"), BackboneSpec("test_resnet", "layer1"), tiny_data.info,
                         prune_ratio=ratio)


def test_a_deployed_client_draws_a_mask_per_sample(tiny_data):
    d = _defense(tiny_data).freeze()
    x = tiny_data.info.normalize(tiny_data.eval.images[:16])
    with torch.no_grad():
        masks = observed_mask(d.release(x))
    c = masks.shape[1]
    assert (masks.sum(1) <= c - c // 2).all()  # at least the pruned share is zero in every sample
    assert len({tuple(m.tolist()) for m in masks}) > 8  # 16 samples, (almost) all with their own draw


def test_training_shares_one_mask_across_the_batch(tiny_data):
    d = _defense(tiny_data)
    d.client.train()
    x = tiny_data.info.normalize(tiny_data.eval.images[:16])
    with torch.no_grad():
        z = d.client(x)
        released = d.release(x)
    c = z.shape[1]
    zeroed = (released == 0).flatten(2).all(2) & ~(z == 0).flatten(2).all(2)  # channels the mask removed
    assert (zeroed == zeroed[0]).all() and int(zeroed[0].sum()) == c // 2
