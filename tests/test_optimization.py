"""rMLE white-box inversion (``optimization``): it recovers inputs from a shallow split far better than the best
constant image, a batch gives the same images as one-by-one inversion, its TV prior is the documented one,
and its record carries the budget."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
import torch

import benchmark
from attacks.optimization import RMLEConfig, RMLEInversion, total_variation
from benchmark.backbones import BackboneSpec
from benchmark.interfaces import Access, Target
from benchmark.metrics import reconstruction_scores
from benchmark.registry import DEFENSES
from tests.helpers import fitted_frozen, smoke_defense

#: a shallow split whose activations have no dead zone (SiLU): on digits, test_resnet's ReLU clients leave the
#: black background unconstrained wherever a unit's pre-activation stays negative, so rMLE's PSNR there stays
#: under the mean image's even when its SSIM is far above it.
SHALLOW = BackboneSpec("test_efficientnet", "blocks.0")


def fitted_no_pruning(data, backbone=SHALLOW):
    """no_pruning trained one epoch on the tiny data, frozen as the runner freezes it."""
    return fitted_frozen("no_pruning", backbone, data)


def white_box_target(defense, data, trainer):
    return Target(defense, data, frozenset({Access.WHITE_BOX}), trainer, utility=1.0, backbone=SHALLOW)


def scores(out, data):
    truth = data.eval.images[out.index].float() / 255.0
    baseline = (data.aux.images.float() / 255.0).mean(0, keepdim=True)
    return reconstruction_scores(out.images, truth, baseline)


@contextlib.contextmanager
def float64(defense):
    """Run a defense and everything an attack creates in float64, where rounding noise is far below Adam's eps
    (in float32, Adam's normalised steps turn the last-bit differences of batched vs single convolutions into
    visible drift after enough steps, so float32 agreement would only be checkable for a handful of steps)."""
    defense = defense.double()
    plain = type(defense).release
    defense.release = lambda x: plain(defense, x.double())
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield defense
    finally:
        torch.set_default_dtype(old)
        del defense.release
        defense.float()


@pytest.fixture(scope="module")
def shallow(tiny_data):
    return fitted_no_pruning(tiny_data)


def test_rmle_recovers_the_input_far_better_than_a_constant_image(shallow, tiny_data, trainer):
    cfg = RMLEConfig(max_images=8, steps=200, lr=0.05)
    target = white_box_target(shallow, tiny_data, trainer)
    out = RMLEInversion(cfg, seed=0).run(target, trainer)
    assert out.images.shape == (8, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    s = scores(out, tiny_data)
    assert s["psnr"] > s["psnr_baseline"] + 3.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.25, s
    energy = float(target.eval_releases(8).pow(2).mean())
    assert out.metrics["final_feature_mse"] < 0.05 * energy  # the release is matched, not just smoothed


def test_batched_inversion_equals_image_by_image(shallow, tiny_data, trainer):
    cfg = RMLEConfig(max_images=4, steps=60, lr=0.05, init="uniform")
    with float64(shallow) as d64:
        target = white_box_target(d64, tiny_data, trainer)
        batched = RMLEInversion(dataclasses.replace(cfg, batch_size=4), seed=3).run(target, trainer)
        single = RMLEInversion(dataclasses.replace(cfg, batch_size=1), seed=3).run(target, trainer)
    torch.testing.assert_close(batched.images, single.images, atol=1e-6, rtol=0)
    # the uniform start is drawn per image: different images start (and end) differently
    assert (batched.images[0] - batched.images[1]).abs().max() > 1e-3


def test_total_variation_is_the_documented_prior():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.all(total_variation(flat, beta=2.0) == 0)
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 3 of the 9 interior positions see a difference of 1
    assert total_variation(step, beta=2.0).item() == pytest.approx(3 / 9)
    assert total_variation(step, beta=1.0).item() == pytest.approx(3 / 9, abs=1e-3)  # eps inside the root
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert total_variation(2 * ramp, beta=2.0).item() == pytest.approx(4.0)  # (2^2 + 0) everywhere


def test_needs_a_white_box_client(tiny_data, trainer):
    class Sealed(DEFENSES.get("no_pruning")):
        white_box_client = False

    d = smoke_defense(Sealed, SHALLOW, tiny_data.info)
    reason = RMLEInversion(RMLEConfig(), seed=0).applicable(white_box_target(d, tiny_data, trainer))
    assert reason and "client weights" in reason


def test_the_record_carries_psnr_ssim_and_the_budget(tmp_path):
    suite = tmp_path / "t.yaml"
    suite.write_text(
        "name: t\nscenarios: [{name: digits, config: {max_samples: 200}}]\n"
        "backbones: [{name: test_efficientnet, split: blocks.0}]\ntrain: {epochs: 1, batch_size: 32}\n"
        "defenses: [no_pruning]\nattacks: [{name: optimization, config: {max_images: 6, steps: 5}}]\n")
    summary = benchmark.run(str(suite), out=tmp_path / "out", progress=False)
    assert summary.ok == 1, summary.failures
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert rec["budget"]["steps"] == 5 and rec["budget"]["images"] == 6
    assert rec["samples"]["eval"] == 6
    m = rec["metrics"]
    assert {"psnr", "ssim", "psnr_baseline", "ssim_baseline", "attack.final_feature_mse"} <= set(m)
    assert m["leakage"] == m["ssim"] and m["leakage_chance"] == m["ssim_baseline"]
