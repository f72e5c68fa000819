"""``substitute_client``: the substitute learns the client's mapping from aux pairs, its loss looks only at sent
channels, the inversion through it is the same batched or image by image, it needs no client weights, and it
recovers digits better than the attacker's best constant guess."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.substitute_client import (
    SubstituteClient,
    SubstituteClientConfig,
    build_substitute,
    fit_substitute,
    invert_through,
    sent_energy,
    sent_error,
)
from benchmark.api.contract import Access
from benchmark.core.errors import AccessError, SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.data.types import Split
from benchmark.kit.channels import apply_channel_mask, as_spatial, observed_mask
from benchmark.measure.metrics import reconstruction_scores
from benchmark.models.backbones import seeded
from tests.support.helpers import fitted_frozen, make_target, smoke_defense

AUX = frozenset({Access.AUX_PAIRS})


@pytest.fixture(scope="module")
def defended(tiny_data, tiny_backbone):
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def split_part(split: Split, part: slice) -> Split:
    return Split(split.images[part], split.task[part], None if split.sensitive is None else split.sensitive[part],
                 split.info)


def relative_error(module, x, z):
    with torch.no_grad():
        pred = as_spatial(module(x))
    z = as_spatial(z)
    mask = observed_mask(z)
    return float((sent_error(pred, z, mask) / sent_energy(z, mask)).mean())


def test_the_substitute_matches_held_out_releases_far_better_than_a_fresh_one(defended, tiny_data, trainer):
    fit_part, held_out = split_part(tiny_data.aux, slice(0, 30)), split_part(tiny_data.aux, slice(30, None))
    target = make_target(defended, dataclasses.replace(tiny_data, aux=fit_part), AUX, trainer)
    shape = tuple(as_spatial(target.aux().released[:1]).shape[1:])
    fresh, arch = build_substitute(target, shape, seed=1)
    fitted, _ = build_substitute(target, shape, seed=1)
    assert arch == "test_resnet@layer1"
    fit_substitute(fitted, target, trainer, SubstituteClientConfig(epochs=40, lr=1e-2, batch_size=16))
    fresh.eval()
    x = tiny_data.info.normalize(held_out.images)
    with torch.no_grad():
        z = defended.release(x)
    fitted_err, fresh_err = relative_error(fitted, x, z), relative_error(fresh, x, z)
    assert fitted_err < 0.3 * fresh_err, (fitted_err, fresh_err)
    assert not any(p.requires_grad for p in fitted.parameters())  # frozen for the inversion


def test_the_loss_ignores_channels_that_were_not_sent():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 6, 4, 4, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    observed = apply_channel_mask(z, mask)
    assert torch.equal(observed_mask(observed), mask)
    pred = torch.randn(3, 6, 4, 4, generator=g)
    base = sent_error(pred, observed, mask)
    changed = pred.clone()
    changed[~mask] += 100.0  # anything in unsent channels
    torch.testing.assert_close(sent_error(changed, observed, mask), base)
    changed[0, 0] += 1.0  # a sent channel of image 0 only
    moved = sent_error(changed, observed, mask)
    assert moved[0] > base[0] and torch.equal(moved[1:], base[1:])
    # the mean is over sent elements: image 2 sent 2 channels of 16 values each
    expected = (pred[2, [0, 5]] - z[2, [0, 5]]).pow(2).mean()
    torch.testing.assert_close(base[2], expected)
    # with every channel sent it is the plain per-image mean squared error
    full = torch.ones(3, 6, dtype=torch.bool)
    torch.testing.assert_close(sent_error(pred, z, full), (pred - z).pow(2).flatten(1).mean(1))


def test_batched_inversion_equals_image_by_image(defended, tiny_data, trainer):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # rounding far below Adam's eps, so the two runs can agree to 1e-6
    try:
        target = make_target(defended, tiny_data, AUX, trainer)
        observed = target.eval_releases(4).double()
        observed = apply_channel_mask(observed, torch.tensor([[1.0] * 32, [0.0] * 8 + [1.0] * 24] * 2))
        substitute, _ = build_substitute(target, tuple(observed.shape[1:]), seed=1)
        substitute = substitute.double().eval().requires_grad_(False)
        with seeded(5):
            start = torch.rand(4, *target.image_shape)
        cfg = SubstituteClientConfig(steps=20, inversion_lr=0.05, tv_weight=0.1, prior_weight=1.0)
        batched, err_b, rec_b = invert_through(substitute, observed, start, target, trainer,
                                        dataclasses.replace(cfg, batch_images=4))
        single, err_s, rec_s = invert_through(substitute, observed, start, target, trainer,
                                       dataclasses.replace(cfg, batch_images=1))
    finally:
        torch.set_default_dtype(old)
    assert batched.dtype == torch.float64
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(err_b, err_s, atol=1e-8, rtol=0)
    assert rec_b["steps_run"] == rec_s["steps_run"]
    assert rec_b["objective_last"] == pytest.approx(rec_s["objective_last"])
    assert (batched - start).abs().max() > 1e-2  # the images moved
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_substitute_architecture_follows_the_release_shape(defended, tiny_data, trainer):
    target = make_target(defended, tiny_data, AUX, trainer)
    deeper, arch = build_substitute(target, (48, 4, 4), seed=1)  # e.g. patrol releasing a deeper stage
    assert arch == "test_resnet@layer2"
    image_like, arch = build_substitute(target, (3, 32, 32), seed=1)  # no split point gives an image
    assert arch == "generic_encoder"
    x = torch.zeros(2, 3, 32, 32)
    assert tuple(deeper.eval()(x).shape) == (2, 48, 4, 4)
    assert tuple(image_like.eval()(x).shape) == (2, 3, 32, 32)
    _, arch = build_substitute(target, (5, 4, 4), seed=1)
    assert arch == "generic_encoder"


def test_it_attacks_a_defense_that_denies_white_box_access(defended, tiny_data, tiny_backbone, trainer):
    class Sealed(DEFENSES.get("no_pruning")):
        white_box_client = False

    sealed = smoke_defense(Sealed, tiny_backbone, tiny_data.info)
    sealed.load_state_dict(defended.state_dict())
    sealed.freeze()
    target = make_target(sealed, tiny_data, AUX | {Access.WHITE_BOX}, trainer)
    with pytest.raises(AccessError):
        target.white_box()
    target = make_target(sealed, tiny_data, SubstituteClient.requires, trainer)
    attack = SubstituteClient(SubstituteClientConfig(epochs=2, steps=5, decoder_epochs=1), seed=0)
    assert attack.applicable(target) is None
    out = attack.run(target, trainer)
    assert out.images.shape == (len(tiny_data.eval), *target.image_shape)
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert out.budget["substitute"] == "test_resnet@layer1" and out.budget["images"] == len(tiny_data.eval)


def test_it_recovers_digits_better_than_the_mean_aux_image(defended, tiny_data, trainer):
    target = make_target(defended, tiny_data, SubstituteClient.requires, trainer)
    cfg = SubstituteClientConfig(epochs=10, batch_size=16, decoder_epochs=30, steps=20)
    out = SubstituteClient(cfg, seed=0).run(target, trainer)
    truth = tiny_data.eval.images[out.index].float() / 255.0
    baseline = (tiny_data.aux.images.float() / 255.0).mean(0, keepdim=True)
    s = reconstruction_scores(out.images, truth, baseline)
    assert s["psnr"] > s["psnr_baseline"] + 3.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.3, s


@pytest.mark.parametrize("key, value, expected", [
    ("epochs", -1, "epochs must be >= 0"), ("batch_images", 0, "batch_images must be >= 1"),
    ("inversion_lr", 0.0, "inversion_lr must be > 0"), ("prior_weight", -1.0, "prior_weight must be >= 0"),
    ("init", "grey", "expected one of"),
])
def test_bad_config_values_are_reported_by_name(key, value, expected):
    with pytest.raises(SplitbenchError, match=expected):
        build_config(SubstituteClientConfig, {key: value}, "attack.substitute_client")
