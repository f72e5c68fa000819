"""shredder: noise learned on a frozen task network grows with lambda; fresh draws per query; EOT for white-box."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion_kit import eot_draws
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def _fit(data, lam, noise_epochs=3):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    d = smoke_defense(DEFENSES.get("shredder"), SPEC, data.info, seed=1, lam=lam, noise_epochs=noise_epochs)
    d.fit(data, Trainer("cpu", seed=1, progress=False))
    return d.freeze()


def test_the_learned_noise_grows_with_lambda_on_a_frozen_task_network(tiny_data):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    plain = smoke_defense(DEFENSES.get("no_pruning"), SPEC, tiny_data.info, seed=1)
    plain.fit(tiny_data, Trainer("cpu", seed=1, progress=False))
    scale = {}
    for lam in (0.0, 10.0):
        d = _fit(tiny_data, lam)
        # the task network is no_pruning's, untouched by the noise phase
        ref = plain.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in d.split.state_dict().items() if k in ref)
        scale[lam] = float(d.noise.relative_scale().mean())
        assert float(d.noise.ref_std) > 0
    assert scale[10.0] > 1.2 * max(scale[0.0], 0.1), scale  # both start at 0.1; only the reward grows it


def test_every_query_draws_fresh_noise_and_white_box_attackers_average_draws(tiny_data):
    d = _fit(tiny_data, 0.1, noise_epochs=1)
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        z = d.release(x)
        assert not torch.equal(z, d.release(x))
    assert eot_draws(True, 8, d.white_box_release, x, z) == 8


def test_bad_settings_are_refused():
    cfg = DEFENSES.get("shredder").Config
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        cfg(lam=-1.0).validate()
    with pytest.raises(ValueError, match="init_scale > 0"):
        cfg(init_scale=0.0).validate()
