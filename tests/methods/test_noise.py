"""noise: relative Gaussian / Laplace noise on every release; sigma 0 is no defense; attacked with EOT."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion_kit import eot_draws
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import assert_trains_no_pruning, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def _x(data, n=16):
    return data.info.normalize(data.eval.images[:n])


def test_sigma_zero_is_no_defense(tiny_data):
    models = assert_trains_no_pruning("noise", SPEC, tiny_data, sigma=0.0)
    x = _x(tiny_data)
    with torch.no_grad():
        assert torch.equal(models["noise"].release(x), models["no_pruning"].release(x))


@pytest.mark.parametrize("distribution,kurtosis", [("gaussian", 3.0), ("laplace", 6.0)])
def test_noise_has_the_relative_std_and_the_distribution_asked_for(tiny_data, distribution, kurtosis):
    d = smoke_defense(DEFENSES.get("noise"), SPEC, tiny_data.info, sigma=0.5, distribution=distribution).freeze()
    x = _x(tiny_data)
    torch.manual_seed(1)
    with torch.no_grad():
        z = d.client(x)
        n = (d.release(x) - z).flatten(1)
    ratio = n.std(dim=1) / (0.5 * z.flatten(1).std(dim=1))
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.05)  # thousands of elements per sample
    m4 = (n / n.std(dim=1, keepdim=True)).pow(4).mean()
    assert abs(float(m4) - kurtosis) < 0.6


def test_every_query_and_every_training_batch_draws_fresh_noise(tiny_data):
    d = smoke_defense(DEFENSES.get("noise"), SPEC, tiny_data.info, sigma=1.0)
    x = _x(tiny_data, 4)
    with torch.no_grad():
        d.train()
        assert not torch.equal(d.release(x), d.release(x))  # the server learns on noisy releases
        d.freeze()
        z = d.release(x)
        assert not torch.equal(z, d.release(x))
    assert d.stochastic_release
    # white-box attackers average their objective over draws: two white-box calls differ
    assert eot_draws(True, 8, d.white_box_release, x, z) == 8


def test_bad_settings_are_refused():
    cfg = DEFENSES.get("noise").Config
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        cfg(sigma=-1.0).validate()
    with pytest.raises(ValueError, match="distribution must be 'gaussian' or 'laplace'"):
        cfg(distribution="uniform").validate()
