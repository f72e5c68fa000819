"""rMLE white-box inversion (``optimization``): on the quick suite's own backbone it recovers inputs better than
the attacker's best constant image, a batch gives the same images as one-by-one inversion, expectation over
transformation averages random releases, its TV prior is the documented one, bad configs are rejected in one
line, the paper suite keeps the official code's settings, and its record carries the budget."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import benchmark
from attacks.optimization import RMLEConfig, RMLEInversion, total_variation
from benchmark.api.contract import Access
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.suites.parse import load_suite
from tests.support.helpers import fitted_frozen, float64, make_target, reconstruction_scores_of, smoke_defense


def rmle_target(defense, data, trainer, limit=None):
    """The target rMLE sees: the client weights and the attacker's aux pairs (for its mean-image start)."""
    return make_target(defense, data, RMLEInversion.requires, trainer, limit=limit)


@pytest.fixture(scope="module")
def quick_model(tiny_data, tiny_backbone):
    """no_pruning on the quick suite's own backbone (test_resnet @ layer1, a ReLU client with dead zones),
    fitted with its smoke config on the tiny data."""
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def test_rmle_beats_the_mean_aux_image_on_the_quick_backbone(quick_model, tiny_data, trainer):
    """At the quick suite's budget, on test_resnet@layer1, the defaults beat the mean aux image (the attacker's
    best constant guess and rMLE's own starting point) in PSNR and SSIM."""
    cfg = RMLEConfig(steps=200)
    out = RMLEInversion(cfg, seed=0).run(rmle_target(quick_model, tiny_data, trainer, limit=8), trainer)
    assert out.images.shape == (8, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    s = reconstruction_scores_of(out, tiny_data)
    assert s["psnr"] > s["psnr_baseline"] + 2.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.2, s


@pytest.mark.parametrize(("parameterization", "init"), [("sigmoid", "mean_aux"), ("normalized", "uniform")])
def test_batched_inversion_equals_image_by_image(quick_model, tiny_data, trainer, parameterization, init):
    cfg = RMLEConfig(steps=25, parameterization=parameterization, init=init)
    with float64(quick_model) as d64:
        target = rmle_target(d64, tiny_data, trainer, limit=4)
        batched = RMLEInversion(dataclasses.replace(cfg, batch_size=4), seed=3).run(target, trainer)
        single = RMLEInversion(dataclasses.replace(cfg, batch_size=1), seed=3).run(target, trainer)
    torch.testing.assert_close(batched.images, single.images, atol=1e-6, rtol=0)
    # the images moved away from their start, each its own way
    assert (batched.images[0] - batched.images[1]).abs().max() > 1e-3


def test_sigmoid_images_start_at_the_mean_aux_image_and_stay_in_range(quick_model, tiny_data, trainer):
    target = rmle_target(quick_model, tiny_data, trainer, limit=3)
    start = RMLEInversion(RMLEConfig(steps=0), seed=0).run(target, trainer).images
    mean = (tiny_data.aux.images.float() / 255.0).mean(0)
    torch.testing.assert_close(start, mean.clamp(1e-3, 1 - 1e-3).expand_as(start), atol=1e-5, rtol=0)
    # a large step size drives pixels to the ends of the range; sigmoid keeps them inside without clamping
    out = RMLEInversion(RMLEConfig(steps=20, lr=5.0, tv_weight=0.0), seed=0).run(target, trainer)
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert (out.images - start).abs().max() > 0.5


def test_total_variation_is_the_documented_prior():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.all(total_variation(flat, beta=2.0) == 0)
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 3 of the 9 interior positions see a difference of 1
    assert total_variation(step, beta=2.0).item() == pytest.approx(3 / 9)
    assert total_variation(step, beta=1.0).item() == pytest.approx(3 / 9, abs=1e-3)  # eps inside the root
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert total_variation(2 * ramp, beta=2.0).item() == pytest.approx(4.0)  # (2^2 + 0) everywhere


#: a fixed perturbation of test_resnet@layer1's release (32 x 8 x 8 at 32 px)
DELTA = 0.5 * torch.randn(32, 8, 8, generator=torch.Generator().manual_seed(0))


class AntitheticNoise(DEFENSES.get("no_pruning")):
    """A random white-box release for testing expectation over transformation: it adds +DELTA and -DELTA on
    alternate calls, so the mean feature loss of any two consecutive draws is the clean loss plus a constant
    (the same gradient), while a single draw pulls the image towards a perturbed target."""

    stochastic_release = True

    def white_box_release(self, x, observed):
        self.draws = getattr(self, "draws", 0) + 1
        z = self.client(x)
        return z + (1.0 if self.draws % 2 else -1.0) * DELTA.to(z)


def with_weights_of(cls, fitted, data):
    """A ``cls`` defense carrying the weights of the fitted no_pruning model ``fitted``."""
    d = smoke_defense(cls, fitted.backbone, data.info)
    d.load_state_dict(fitted.state_dict())
    return d.freeze()


def test_eot_averages_the_feature_loss_over_release_draws(quick_model, tiny_data, trainer):
    cfg = RMLEConfig(steps=15)
    noisy = with_weights_of(AntitheticNoise, quick_model, tiny_data)
    with float64(quick_model) as clean64, float64(noisy) as noisy64:
        clean = RMLEInversion(cfg, seed=0).run(rmle_target(clean64, tiny_data, trainer, limit=2), trainer)
        target = rmle_target(noisy64, tiny_data, trainer, limit=2)
        averaged = RMLEInversion(dataclasses.replace(cfg, eot_samples=2), seed=0).run(target, trainer)
        one_draw = RMLEInversion(dataclasses.replace(cfg, eot_samples=1), seed=0).run(target, trainer)
    assert averaged.budget["eot_samples"] == 2 and one_draw.budget["eot_samples"] == 1
    torch.testing.assert_close(averaged.images, clean.images, atol=1e-6, rtol=0)
    assert (one_draw.images - clean.images).abs().max() > 1e-2
    # a deterministic release needs one draw, whatever is asked
    target = rmle_target(quick_model, tiny_data, trainer, limit=1)
    assert RMLEInversion(RMLEConfig(steps=0, eot_samples=4), seed=0).run(target, trainer).budget["eot_samples"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(("key", "value"), [("steps", -1), ("lr", 0.0), ("tv_weight", -1.0),
                                            ("tv_beta", 0.0), ("eot_samples", 0), ("batch_size", 0),
                                            ("init", "black"), ("parameterization", "tanh")])
def test_bad_config_values_are_one_line_errors_naming_the_field(key, value):
    with pytest.raises(SplitbenchError) as err:
        build_config(RMLEConfig, {key: value}, "attack optimization")
    message = str(err.value)
    assert "\n" not in message and key in message and repr(value) in message, message


def test_paper_suite_keeps_the_official_codes_settings():
    suite = load_suite("paper-he19")
    rmle = [a.config for a in suite.attacks if a.name == "optimization"]
    assert len(rmle) == 3
    assert all((c.init, c.parameterization, c.feature_loss, c.tv_beta, c.steps, c.lr) ==
               ("zeros", "normalized", "mse", 2.0, 5000, 1e-2) for c in rmle)
    assert sorted(c.tv_weight for c in rmle) == [0.0, 10.0, 1000.0]
    defaults = RMLEConfig()
    assert (defaults.init, defaults.parameterization) == ("mean_aux", "sigmoid")  # the suite overrides both


def test_needs_a_white_box_client(tiny_data, tiny_backbone, trainer):
    class Sealed(DEFENSES.get("no_pruning")):
        white_box_client = False

    d = smoke_defense(Sealed, tiny_backbone, tiny_data.info)
    reason = RMLEInversion(RMLEConfig(), seed=0).applicable(rmle_target(d, tiny_data, trainer, limit=2))
    assert reason and "client weights" in reason
    assert RMLEInversion.requires == {Access.WHITE_BOX, Access.AUX_PAIRS}


def test_the_record_carries_psnr_ssim_and_the_budget(tmp_path):
    suite = tmp_path / "t.yaml"
    suite.write_text(
        "name: t\nscenarios: [{name: digits, config: {max_samples: 200}}]\n"
        "backbones: [{name: test_resnet, split: layer1}]\ntrain: {epochs: 1, batch_size: 32}\n"
        "defenses: [no_pruning]\nattacks: [{name: optimization, config: {steps: 5}}]\n")
    summary = benchmark.run(str(suite), out=tmp_path / "out", progress=False)
    assert summary.ok == 1, summary.failures
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert rec["budget"]["steps"] == 5 and rec["budget"]["images"] >= 1
    assert rec["budget"]["init"] == "mean_aux" and rec["budget"]["parameterization"] == "sigmoid"
    m = rec["metrics"]
    assert {"psnr", "ssim", "psnr_baseline", "ssim_baseline", "attack.final_feature_mse"} <= set(m)
