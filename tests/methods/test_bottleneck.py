"""bottleneck: a Gaussian release whose KL to N(0, I) falls as beta grows; sample vs mean release."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion_kit import eot_draws
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from defenses.bottleneck import gaussian_kl
from tests.support.helpers import smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def _fit(data, beta, epochs=4, **over):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    d = smoke_defense(DEFENSES.get("bottleneck"), SPEC, data.info, seed=2, beta=beta,
                      train={"epochs": epochs, "batch_size": 32, "lr": 0.002}, **over)
    d.fit(data, Trainer("cpu", seed=2, progress=False))
    return d.freeze()


def test_kl_by_hand():
    assert float(gaussian_kl(torch.zeros(3), torch.zeros(3))) == 0.0
    # KL(N(1, e) || N(0, 1)) = (1 + e - 1 - 1) / 2 per element
    assert float(gaussian_kl(torch.ones(2), torch.ones(2))) == pytest.approx((1 + torch.e - 2) / 2, rel=1e-6)


def test_the_bottleneck_tightens_as_beta_grows(tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images)
    kl = {}
    for beta in (0.0, 1.0):
        d = _fit(tiny_data, beta)
        with torch.no_grad():
            kl[beta] = float(gaussian_kl(*d.encode(x)))
    assert kl[1.0] < 0.5 * kl[0.0], kl


def test_a_sampled_release_is_fresh_per_query_and_the_mean_release_is_mu(tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    d = _fit(tiny_data, 0.01, epochs=1)
    with torch.no_grad():
        z = d.release(x)
        assert not torch.equal(z, d.release(x))
        assert z.shape == d.client(x).shape  # the server tail reads the usual shape
    assert eot_draws(True, 8, d.white_box_release, x, z) == 8
    m = _fit(tiny_data, 0.01, epochs=1, release="mean")
    with torch.no_grad():
        torch.testing.assert_close(m.release(x), m.encode(x)[0])
        assert eot_draws(True, 8, m.white_box_release, x, m.release(x)) == 1
