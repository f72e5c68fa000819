"""Convergence, grayscale and EOT of the optimisation attacks (``optimization``, ``deep_image_prior``,
``learned_prior``, ``substitute_client``): every run records its objective's trajectory and what ended it, a tiny
step budget is reported as the cap and leaves a higher objective than a large one, the plateau rule ends a run on
an easy problem before its cap (and never while the objective still falls faster than the tolerance), batched and
one-at-a-time inversion stay equal when images stop at different steps, grayscale aux data make rMLE and DIP
optimise one channel, the step cap follows the split's depth, and on a noisy release expectation over
transformation brings the reconstruction closer to the noise-free release."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.deep_image_prior import DeepImagePrior, DeepImagePriorConfig
from attacks.inversion_kit import PlateauRule, Trajectory, eot_draws, is_grayscale, reduction_factor
from attacks.learned_prior import LearnedPriorConfig, LearnedPriorInversion
from attacks.optimization import RMLEConfig, RMLEInversion
from attacks.substitute_client import SubstituteClient, SubstituteClientConfig
from benchmark.core.registry import DEFENSES
from benchmark.data.types import Split
from tests.support.helpers import fitted_frozen, float64, make_target, smoke_defense

DIP_SMALL = DeepImagePriorConfig(lr=0.02, channels=(8, 16), kernels=(3, 3), code_channels=8)
LP_TINY = LearnedPriorConfig(latent_dim=8, width=4, prior_epochs=3, prior_batch_size=20, steps=15, candidates=6,
                             restarts=2, pixel_steps=5)
ATTACKS = {
    "optimization": (RMLEInversion, RMLEConfig(steps=30)),
    "deep_image_prior": (DeepImagePrior, dataclasses.replace(DIP_SMALL, steps=20)),
    "learned_prior": (LearnedPriorInversion, LP_TINY),
    "substitute_client": (SubstituteClient, SubstituteClientConfig(epochs=2, decoder_epochs=2, steps=20)),
}
RECORD = ("objective_first", "objective_best", "objective_last", "steps_run", "steps_run_max", "ended_by_cap")


@pytest.fixture(scope="module")
def quick_model(tiny_data, tiny_backbone):
    """no_pruning on the quick suite's backbone and split (test_resnet @ layer1), fitted with its smoke config."""
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def run(cls, cfg, defense, data, trainer, images, seed=0, tmp_path=None):
    from benchmark.store.cache import ModelCache

    cache = ModelCache(tmp_path) if tmp_path is not None else None
    return cls(cfg, seed=seed).run(make_target(defense, data, cls.requires, trainer, cache=cache, limit=images),
                                   trainer)


# -- the record -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_optimisation_attack_records_its_trajectory(name, quick_model, tiny_data, trainer, tmp_path):
    cls, cfg = ATTACKS[name]
    out = run(cls, cfg, quick_model, tiny_data, trainer, 3, tmp_path=tmp_path)
    m = out.metrics
    assert set(RECORD) <= set(m), sorted(m)
    assert all(isinstance(m[k], float) for k in RECORD)
    # the objective went down, and the best is no worse than where it started or ended
    assert m["objective_last"] < m["objective_first"], m
    assert m["objective_best"] <= min(m["objective_first"], m["objective_last"]) + 1e-9, m
    assert 1 <= m["steps_run"] <= m["steps_run_max"] and 0.0 <= m["ended_by_cap"] <= 1.0
    assert out.budget["ended_by"] in ("cap", "plateau", "both")


@pytest.mark.parametrize("name", ["optimization", "deep_image_prior"])
def test_a_tiny_budget_is_ended_by_the_cap_and_leaves_a_higher_objective(name, quick_model, tiny_data, trainer):
    cls, cfg = ATTACKS[name]
    tiny = run(cls, dataclasses.replace(cfg, steps=3), quick_model, tiny_data, trainer, 3)
    large = run(cls, dataclasses.replace(cfg, steps=150, plateau_window=10, plateau_tol=1e-2), quick_model,
                tiny_data, trainer, 3)
    assert tiny.budget["ended_by"] == "cap" and tiny.metrics["ended_by_cap"] == 1.0
    assert tiny.metrics["steps_run"] == 3 and tiny.budget["steps"] == 3
    assert tiny.metrics["objective_last"] > 2 * large.metrics["objective_last"], (tiny.metrics, large.metrics)


@pytest.mark.parametrize("name", ["optimization", "deep_image_prior"])
def test_the_plateau_ends_an_easy_inversion_before_its_cap(name, quick_model, tiny_data, trainer):
    cls, cfg = ATTACKS[name]
    cfg = dataclasses.replace(cfg, steps=3000, plateau_window=10, plateau_tol=1e-2)
    out = run(cls, cfg, quick_model, tiny_data, trainer, 3)
    m = out.metrics
    assert out.budget["ended_by"] == "plateau" and m["ended_by_cap"] == 0.0, m
    assert 20 <= m["steps_run"] <= m["steps_run_max"] < 3000, m  # never before two windows
    assert m["steps_run_max"] % 2 == 0  # checked every window // 5 = 2 steps


def test_the_plateau_rule_waits_while_the_objective_falls_faster_than_the_tolerance():
    """On a synthetic objective: image 0 halves every 10 steps for 100 steps then stays flat, image 1 falls by
    1% per step throughout, image 2 is flat from the start. The rule (window 10, tol 5%) ends image 2 at its
    first check, image 0 once two windows of flat values are in, and leaves image 1 to the cap."""
    steps = 300
    t = torch.arange(steps, dtype=torch.float64)
    objective = torch.stack([0.5 ** (t.clamp(max=100) / 10), 0.99 ** t, torch.ones(steps)], dim=1)
    kept = []
    traj = Trajectory(3, steps, PlateauRule(10, 0.05), lambda mask: kept.append(mask.clone()))
    for i in range(steps):
        traj.record(objective[i])
        if traj.stop(i):
            break
    traj.finish()
    assert traj.steps_run.tolist()[2] == 20  # the first check at which two windows exist
    assert 100 < traj.steps_run.tolist()[0] <= 120
    assert traj.steps_run.tolist()[1] == steps and traj.by_cap.tolist() == [False, True, False]
    assert [m.nonzero().flatten().tolist() for m in kept] == [[2], [0], [1]]  # each image kept when it stopped


@pytest.mark.parametrize("name", ["optimization", "deep_image_prior", "learned_prior"])
def test_batched_and_single_inversion_agree_when_images_stop_at_different_steps(name, quick_model, tiny_data,
                                                                                 trainer, tmp_path):
    cls, cfg = ATTACKS[name]
    rule = {"plateau_window": 5, "plateau_tol": 0.05}
    budget = {"optimization": {"steps": 150}, "deep_image_prior": {"steps": 200},
              "learned_prior": {"steps": 60, "pixel_steps": 200}}[name]
    cfg = dataclasses.replace(cfg, **budget, **rule)
    with float64(quick_model) as d64:
        batched = run(cls, dataclasses.replace(cfg, batch_size=3), d64, tiny_data, trainer, 3, tmp_path=tmp_path)
        single = run(cls, dataclasses.replace(cfg, batch_size=1), d64, tiny_data, trainer, 3, tmp_path=tmp_path)
    torch.testing.assert_close(batched.images, single.images, atol=1e-6, rtol=0)
    for key in RECORD:
        assert batched.metrics[key] == pytest.approx(single.metrics[key], rel=1e-6, abs=1e-12), key
    # the images did stop at different steps, before the cap (for the learned prior: in the pixel steps)
    phase = "pixel_" if name == "learned_prior" else ""
    m = batched.metrics
    assert m[f"{phase}steps_run"] < m[f"{phase}steps_run_max"] and m[f"{phase}ended_by_cap"] < 1, m


# -- the step cap by split depth --------------------------------------------------------------------------------
def test_the_rmle_cap_follows_the_splits_depth():
    cfg = RMLEConfig()
    layer1, layer2 = torch.zeros(1, 32, 8, 8), torch.zeros(1, 48, 4, 4)  # test_resnet at 32 px
    assert reduction_factor(32, layer1) == 4 and reduction_factor(32, layer2) == 8
    assert cfg.cap(32, layer1) == 500 and cfg.cap(32, layer2) == 5000  # He et al.'s shallow and deep budgets
    assert cfg.cap(28, torch.zeros(1, 32, 7, 7)) == 500 and cfg.cap(28, torch.zeros(1, 48, 4, 4)) == 5000
    assert cfg.cap(32, torch.zeros(1, 3, 32, 32)) == 500  # an image-shaped release
    assert cfg.cap(224, torch.zeros(1, 197, 192)) == 5000  # ViT tokens on a 14 x 14 grid
    assert dataclasses.replace(cfg, steps=200).cap(32, layer2) == 200  # a suite's explicit steps override
    assert dataclasses.replace(cfg, steps_deep=1000).cap(32, layer2) == 1000


def test_a_run_on_a_deep_split_is_capped_at_the_deep_budget(tiny_data, trainer):
    from benchmark.models.backbones import BackboneSpec

    deep = fitted_frozen("no_pruning", BackboneSpec("test_resnet", "layer2"), tiny_data)
    out = run(RMLEInversion, RMLEConfig(steps_deep=7), deep, tiny_data, trainer, 2)
    assert out.budget["steps"] == 7 and out.metrics["steps_run"] == 7


# -- grayscale --------------------------------------------------------------------------------------------------
def coloured(data):
    """The scenario with the attacker's aux images tinted (red channel raised): no longer grayscale."""
    aux = data.aux
    images = aux.images.clone()
    images[:, 0] = (images[:, 0].int() + 40).clamp(max=255).to(torch.uint8)
    return dataclasses.replace(data, aux=Split(images, aux.task, aux.sensitive, aux.info))


def test_grayscale_is_read_from_every_aux_image():
    gray = torch.rand(4, 1, 5, 5).expand(4, 3, 5, 5)
    assert is_grayscale(gray)
    tinted = gray.clone()
    tinted[3, 2, 0, 0] += 0.1  # one pixel of one image
    assert not is_grayscale(tinted) and not is_grayscale(gray[:, :1])


@pytest.mark.parametrize("name", ["optimization", "deep_image_prior"])
def test_grayscale_aux_makes_the_inversion_replicate_one_channel(name, quick_model, tiny_data, trainer):
    cls, cfg = ATTACKS[name]
    assert is_grayscale(tiny_data.aux.images)  # digits are stored as three identical channels
    gray = run(cls, cfg, quick_model, tiny_data, trainer, 2)
    assert gray.budget["grayscale"] is True
    assert torch.equal(gray.images[:, 0], gray.images[:, 1]) and torch.equal(gray.images[:, 0], gray.images[:, 2])
    colour = run(cls, cfg, quick_model, coloured(tiny_data), trainer, 2)
    assert colour.budget["grayscale"] is False
    assert (colour.images[:, 0] - colour.images[:, 1]).abs().max() > 1e-3
    never = run(cls, dataclasses.replace(cfg, grayscale="never"), quick_model, tiny_data, trainer, 2)
    assert never.budget["grayscale"] is False and (never.images[:, 0] - never.images[:, 2]).abs().max() > 1e-3


# -- expectation over transformation ------------------------------------------------------------------------------
NOISE_STD = 3.0  # the noise defense's noise, in standard deviations of the client's activations


@pytest.fixture
def noisy(quick_model, tiny_data):
    """A plugin defense (registered under a test-only name, unregistered afterwards) whose release adds Gaussian
    noise of NOISE_STD activation standard deviations to the client's output; the weights are quick_model's."""

    class TestNoise(DEFENSES.get("no_pruning")):
        stochastic_release = True

        def release(self, x):
            z = self.client(x)
            return z + NOISE_STD * z.detach().std() * torch.randn_like(z)

    DEFENSES.register("test_eot_noise", TestNoise)
    try:
        d = smoke_defense(TestNoise, quick_model.backbone, tiny_data.info)
        d.load_state_dict(quick_model.state_dict())
        yield d.freeze()
    finally:
        DEFENSES.unregister("test_eot_noise")


def noise_free_error(defense, data, images, observed):
    """Mean relative error of the noise-free release (the client's output) of the reconstructions against the
    observed releases: the attacker's expected objective, E over the noise of ||release(x) - z||^2, less the
    noise's own energy."""
    with torch.no_grad():
        z_rec = defense.client(data.info.normalize(images).float())
    return float(((z_rec - observed).pow(2).flatten(1).mean(1) / observed.pow(2).flatten(1).mean(1)).mean())


@pytest.mark.parametrize("name", ["optimization", "deep_image_prior"])
def test_eot_brings_the_inversion_of_a_noisy_release_closer(name, noisy, tiny_data, trainer):
    """Same seed and steps: averaging the feature term over 8 release draws brings the noise-free release of the
    reconstruction closer to the observed release than a single draw per step does (the single draw's gradient
    is dominated by the noise). This is the attacker's objective; whether it brings the image closer to the truth
    depends on how much of the observation's own noise the closer fit reproduces (see the module docstring of
    attacks.inversion_kit)."""
    cls, cfg = ATTACKS[name]
    cfg = dataclasses.replace(cfg, steps=60)
    errors = {}
    for draws in (1, 8):
        torch.manual_seed(0)
        target = make_target(noisy, tiny_data, cls.requires, trainer, limit=4)
        out = cls(dataclasses.replace(cfg, eot_samples=draws), seed=0).run(target, trainer)
        assert out.budget["eot_samples"] == draws
        errors[draws] = noise_free_error(noisy, tiny_data, out.images, target.eval_releases())
    assert errors[8] < 0.98 * errors[1], errors
    assert cls.Config().eot_samples == 8  # the default on stochastic targets


def test_eot_uses_one_draw_where_the_white_box_release_is_deterministic(tiny_data, tiny_backbone, trainer):
    """random_pruning is stochastic, but its white-box release applies the mask it observed: every draw would be the
    same, so one is made; a release with fresh noise gets the configured number."""
    d = smoke_defense(DEFENSES.get("random_pruning"), tiny_backbone, tiny_data.info).freeze()
    x = tiny_data.info.normalize(tiny_data.eval.images[:2])
    z = d.release(x)
    assert d.stochastic_release and eot_draws(True, 8, d.white_box_release, x, z) == 1
    assert eot_draws(True, 8, lambda x, z: z + torch.randn_like(z), x, z) == 8
    assert eot_draws(False, 8, lambda x, z: z + torch.randn_like(z), x, z) == 1
