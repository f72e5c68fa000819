"""quantize: 32 bits is no defense; k bits gives at most 2^k levels per channel and k bits per element sent."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import assert_trains_no_pruning, fitted_frozen

SPEC = BackboneSpec("test_resnet", "layer1")


def test_32_bits_is_no_defense(tiny_data):
    models = assert_trains_no_pruning("quantize", SPEC, tiny_data, bits=32)
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        assert torch.equal(models["quantize"].release(x), models["no_pruning"].release(x))


def test_k_bits_gives_at_most_2_to_the_k_levels_per_channel_within_the_training_range(tiny_data):
    d = fitted_frozen("quantize", SPEC, tiny_data)  # smoke config: 4 bits
    x = tiny_data.info.normalize(tiny_data.eval.images)
    with torch.no_grad():
        z = d.release(x)
    assert d.config.bits == 4
    for c in range(z.shape[1]):
        values = z[:, c].unique()
        assert len(values) <= 16
        assert values.min() >= d.lo[c] - 1e-6 and values.max() <= d.hi[c] + 1e-6
    assert (d.hi > d.lo).any()
    sent = d.payload_bytes(z)
    assert torch.equal(sent, torch.full((len(z),), z[0].numel() * 4 / 8))


def test_white_box_gradient_passes_the_rounding(tiny_data):
    d = fitted_frozen("quantize", SPEC, tiny_data)
    x = tiny_data.info.normalize(tiny_data.eval.images[:2]).requires_grad_(True)
    d.white_box_release(x, d.release(x).detach()).sum().backward()
    assert x.grad.abs().sum() > 0


def test_bits_below_one_are_refused():
    with pytest.raises(ValueError, match="bits must be >= 1"):
        DEFENSES.get("quantize").Config(bits=0).validate()
