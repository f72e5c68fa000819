"""Learned-prior inversion (``learned_prior``): on the quick suite's own backbone its reconstructions beat the
attacker's mean aux image, a batch gives the images of one-at-a-time inversion and keeps each image's best restart,
the prior is trained once per aux set and shared through the model cache by every defended model, the VAE decodes
every latent on its own at any image size, and bad configs and sealed clients are turned away in one line."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import attacks.learned_prior as lp
from attacks.learned_prior import ConvVAE, LearnedPriorConfig, LearnedPriorInversion
from benchmark.api.contract import Access
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.store.cache import ModelCache
from tests.support.helpers import fitted_frozen, float64, make_target, reconstruction_scores_of, smoke_defense

#: a prior and a search small enough for the tiny data (40 aux images) and a few seconds of CPU
SMALL = LearnedPriorConfig(latent_dim=16, width=8, prior_epochs=40, prior_batch_size=10, steps=20, pixel_steps=20)
#: smaller still, for tests of the mechanics rather than of quality
TINY = LearnedPriorConfig(latent_dim=8, width=4, prior_epochs=3, prior_batch_size=20, steps=15, candidates=6,
                          restarts=3, pixel_steps=5)


@pytest.fixture(scope="module")
def quick_model(tiny_data, tiny_backbone):
    """no_pruning on the quick suite's backbone and split (test_resnet @ layer1), fitted with its smoke config."""
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def target_of(defense, data, trainer, images, cache=None):
    return make_target(defense, data, LearnedPriorInversion.requires, trainer, cache=cache, limit=images)


def test_reconstructions_beat_the_mean_aux_image_on_the_quick_backbone(quick_model, tiny_data, trainer):
    out = LearnedPriorInversion(SMALL, seed=0).run(target_of(quick_model, tiny_data, trainer, 6), trainer)
    assert out.images.shape == (6, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    assert torch.equal(out.index, torch.arange(6))
    s = reconstruction_scores_of(out, tiny_data)
    assert s["psnr"] > s["psnr_baseline"] + 3.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.25, s
    # the pixel steps lower the attacker's own objective below where the latent search left it
    assert out.metrics["objective_last"] < out.metrics["latent_objective"]
    assert out.budget["aux_images"] == len(tiny_data.aux) and out.budget["images"] == 6


def test_batched_search_equals_image_by_image_and_keeps_the_best_restart(quick_model, tiny_data, trainer, tmp_path):
    cache = ModelCache(tmp_path)
    with float64(quick_model) as d64:
        target = target_of(d64, tiny_data, trainer, 3, cache)
        batched = LearnedPriorInversion(dataclasses.replace(TINY, batch_size=3), seed=2).run(target, trainer)
        single = LearnedPriorInversion(dataclasses.replace(TINY, batch_size=1), seed=2).run(target, trainer)
        first = LearnedPriorInversion(dataclasses.replace(TINY, restarts=1, pixel_steps=0), seed=2).run(target, trainer)
    torch.testing.assert_close(batched.images, single.images, atol=1e-6, rtol=0)
    assert batched.metrics["final_feature_mse"] == pytest.approx(single.metrics["final_feature_mse"], rel=1e-9)
    assert (batched.images[0] - batched.images[1]).abs().max() > 1e-2  # different images, each its own
    # restart 0 (the encoder's guess, the default start) is searched exactly as with one restart; the kept one is
    # never worse
    assert batched.metrics["latent_objective"] <= first.metrics["latent_objective"] + 1e-12
    assert batched.budget["restarts"] == 3 and batched.budget["candidates"] == 6


def test_the_prior_is_trained_once_per_aux_set_and_shared_by_defended_models(quick_model, tiny_data, tiny_backbone,
                                                                             trainer, tmp_path, monkeypatch):
    fits = []
    original = lp.train_prior

    def counting(*args, **kwargs):
        fits.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lp, "train_prior", counting)
    cache = ModelCache(tmp_path)
    pruned = fitted_frozen("random_pruning", tiny_backbone, tiny_data)
    attack = LearnedPriorInversion(TINY, seed=0)
    a = attack.run(target_of(quick_model, tiny_data, trainer, 2, cache), trainer)
    b = attack.run(target_of(pruned, tiny_data, trainer, 2, cache), trainer)
    assert len(fits) == 1
    assert len(list((tmp_path / "prior").glob("*.safetensors"))) == 1
    assert a.metrics["prior_aux_mse"] == b.metrics["prior_aux_mse"]  # the same prior, read back from the cache
    # other aux images are another prior
    fewer = dataclasses.replace(tiny_data, aux=tiny_data.aux.subset(30))
    attack.run(target_of(quick_model, fewer, trainer, 2, cache), trainer)
    assert len(fits) == 2 and len(list((tmp_path / "prior").glob("*.safetensors"))) == 2
    # without a cache the prior is trained every time, from its own seed: the same prior again
    c = attack.run(target_of(quick_model, tiny_data, trainer, 2), trainer)
    assert len(fits) == 3 and c.metrics["prior_aux_mse"] == pytest.approx(a.metrics["prior_aux_mse"], rel=1e-6)


def test_the_release_encoder_predicts_the_latents_of_releases_it_never_saw(quick_model, tiny_data, trainer):
    """GLASS++'s start: the encoder is fitted on the aux pairs (release -> latent). Given latents that are a fixed
    function of the release (here its first channels' spatial means, standardised), it predicts them for eval
    releases it never saw far better than the attacker's mean latent; with start='encoder' the attack uses it."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, encoder_epochs=60, start="encoder")
    target = target_of(quick_model, tiny_data, trainer, 8)

    def latent_of(z):
        return z.mean((2, 3))[:, :cfg.latent_dim]

    aux_latents = latent_of(target.aux().released)
    mean, std = aux_latents.mean(0), aux_latents.std(0) + 1e-6
    encoder = lp.train_encoder(target, trainer, cfg, (aux_latents - mean) / std, seed=3)
    truth = (latent_of(target.eval_releases()) - mean) / std
    with torch.no_grad():
        guess = encoder(target.eval_releases())
    assert (guess - truth).pow(2).mean() < 0.5 * truth.pow(2).mean()
    out = LearnedPriorInversion(cfg, seed=0).run(target, trainer)
    assert out.budget["start"] == "encoder" and out.budget["encoder_epochs"] == 60


@pytest.mark.parametrize("size", [28, 32, 64])
def test_the_vae_decodes_each_latent_on_its_own_at_any_size(size):
    torch.manual_seed(0)
    vae = ConvVAE(3, size, latent_dim=6, width=4)
    z = torch.randn(4, 6)
    images = vae(z)
    assert images.shape == (4, 3, size, size) and images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(vae(z[2:3]), images[2:3], atol=1e-6, rtol=0)
    mu, logvar = vae.encode(images)
    assert mu.shape == logvar.shape == (4, 6)


@pytest.mark.parametrize(("key", "value"), [("latent_dim", 0), ("kl_weight", -1.0), ("prior_epochs", 0),
                                            ("steps", -1), ("lr", 0.0), ("restarts", 65), ("candidates", 0),
                                            ("pixel_steps", -1), ("tv_weight", -0.5), ("batch_size", 0)])
def test_bad_config_values_are_one_line_errors_naming_the_field(key, value):
    with pytest.raises(SplitbenchError) as err:
        build_config(LearnedPriorConfig, {key: value}, "attack learned_prior")
    message = str(err.value)
    assert "\n" not in message and key in message and repr(value) in message, message


def test_needs_a_white_box_client(tiny_data, tiny_backbone, trainer):
    class Sealed(DEFENSES.get("no_pruning")):
        white_box_client = False

    d = smoke_defense(Sealed, tiny_backbone, tiny_data.info)
    reason = LearnedPriorInversion(TINY, seed=0).applicable(target_of(d, tiny_data, trainer, 2))
    assert reason and "client weights" in reason
    assert LearnedPriorInversion.requires == {Access.WHITE_BOX, Access.AUX_PAIRS}
