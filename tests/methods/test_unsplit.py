"""UnSplit's data-free inversion (``unsplit``): on an undefended LeNet release of Fashion-MNIST-shaped garments it
beats the constant images a data-free attacker could guess, it needs no aux data (a target without any serves
it), one surrogate serves a chunk and each chunk's is drawn from its own seed, its priors are the documented
ones, bad configs are rejected in one line, and the paper suite keeps its budgets apart."""

from __future__ import annotations

import pytest
import torch

from attacks.unsplit import UnSplit, UnSplitConfig, grayscale_scenario, l2_prior, minmax, tv_prior
from benchmark.api.contract import Target, data_free
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.data.types import ScenarioInfo
from benchmark.measure.metrics import pixel_mse
from benchmark.models.backbones import BackboneSpec
from benchmark.suites.parse import load_suite

#: Fashion-MNIST's public description at 28 px (grayscale stored as three equal channels)
INFO = ScenarioInfo("fashion_like", 28, 3, (0.286,) * 3, (0.353,) * 3, "class", ("top", "trousers", "shoe", "bag"))


def garments() -> torch.Tensor:
    """Four 28 x 28 garment silhouettes on black, as three equal channels in [0, 1]."""
    x = torch.zeros(4, 1, 28, 28)
    x[0, :, 5:24, 9:19] = 0.8
    x[0, :, 5:12, 4:24] = 0.8  # a top with sleeves
    x[1, :, 4:25, 8:13] = 0.6
    x[1, :, 4:25, 15:20] = 0.6
    x[1, :, 4:8, 8:20] = 0.6  # trousers
    x[2, :, 15:22, 4:25] = 0.9
    x[2, :, 11:15, 16:25] = 0.9  # a shoe
    x[3, :, 10:24, 6:22] = 0.7
    x[3, :, 5:7, 10:18] = 0.7  # a bag and its handle
    return x.expand(-1, 3, -1, -1).contiguous()


@pytest.fixture(scope="module")
def lenet_target():
    """An undefended, freshly initialised UnSplit LeNet cut at the paper's depth 1 (``relu1``), and a target
    holding the releases of the garments and nothing else (no aux split at all)."""
    from benchmark.models.trainer import Trainer

    cls = DEFENSES.get("no_pruning")
    defense = cls(cls.Config(), BackboneSpec("unsplit_lenet", "relu1"), INFO, seed=0).freeze()
    images = garments()
    with torch.no_grad():
        releases = defense.release(INFO.normalize(images))

    def target(rows=slice(None)):
        trainer = Trainer("cpu", seed=0, progress=False)
        return Target(defense, UnSplit.requires, trainer, releases[rows], None, INFO, defense.backbone), trainer

    return target, images


def test_unsplit_inverts_an_undefended_lenet_release(lenet_target):
    """1,000 alternating steps (20 outer iterations of 25 + 25) at the code's learning rates and priors: the
    reconstructions' pixel MSE is at most 70% of that of the grey image the attack starts from, and below the
    all-black image's (where the L2 prior pulls)."""
    make, images = lenet_target
    target, trainer = make()
    out = UnSplit(UnSplitConfig(outer_iters=20, input_steps=25, model_steps=25), seed=0).run(target, trainer)
    assert out.images.shape == (4, 3, 28, 28) and out.images.min() >= 0 and out.images.max() <= 1
    mse = float(pixel_mse(out.images, images).mean())
    grey = float(pixel_mse(torch.full_like(images, 0.5), images).mean())
    black = float(pixel_mse(torch.zeros_like(images), images).mean())
    assert mse < 0.7 * grey and mse < black, (mse, grey, black)
    # the record: the feature error through the surrogate fell, every step of both phases was run
    m = out.metrics
    assert m["objective_best"] < 0.5 * m["objective_first"] and m["steps_run"] == 1000
    assert out.budget["aux_samples"] == 0 and out.budget["grayscale"] is True
    assert out.budget["surrogate"] == "unsplit_lenet@relu1"
    assert torch.equal(out.images[:, 0], out.images[:, 2])  # one channel, replicated


def test_unsplit_is_data_free():
    assert UnSplit.requires == frozenset() and data_free(UnSplit.requires)
    assert "data-free" in UnSplit.card.threat_model and "zero-data" in UnSplit.card.threat_model


def test_each_chunk_has_its_own_surrogate_seeded_by_its_first_image(lenet_target):
    """With batch_size 1 every image gets a fresh surrogate drawn from (seed, its index): image 0 comes out the same
    inverted alone; inverted in a chunk of two it shares a surrogate, and differs."""
    make, _ = lenet_target
    cfg = UnSplitConfig(outer_iters=2, input_steps=5, model_steps=5, batch_size=1)
    target, trainer = make()
    each = UnSplit(cfg, seed=3).run(target, trainer).images
    target, trainer = make(slice(0, 1))
    alone = UnSplit(cfg, seed=3).run(target, trainer).images
    torch.testing.assert_close(each[:1], alone, atol=1e-6, rtol=0)
    target, trainer = make(slice(0, 2))
    shared = UnSplit(UnSplitConfig(outer_iters=2, input_steps=5, model_steps=5, batch_size=2), seed=3)
    assert (shared.run(target, trainer).images[:1] - alone).abs().max() > 1e-6


def test_no_model_steps_leave_the_surrogate_as_drawn(lenet_target):
    """model_steps 0 is plain inversion through the random surrogate: the feature error only falls from where
    the grey start put it, and every step is an input step."""
    make, _ = lenet_target
    target, trainer = make()
    out = UnSplit(UnSplitConfig(outer_iters=3, input_steps=4, model_steps=0), seed=0).run(target, trainer)
    assert out.budget["steps"] == 12 and out.metrics["steps_run"] == 12


def test_priors_are_the_documented_ones():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :, 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal differences are 1, no vertical ones
    assert tv_prior(x).item() == pytest.approx(4 / 12)
    assert l2_prior(x).item() == pytest.approx(0.5)
    assert tv_prior(torch.full((2, 3, 5, 5), 0.3)).tolist() == [0.0, 0.0]


def test_minmax_output_rescales_each_image_on_its_own():
    x = torch.stack([torch.linspace(-2.0, 3.0, 16).view(1, 4, 4), torch.full((1, 4, 4), 7.0)])
    out = minmax(x)
    assert out[0].min() == 0 and out[0].max() == 1 and torch.equal(out[1], torch.zeros(1, 4, 4))
    torch.testing.assert_close(out[0], (x[0] + 2.0) / 5.0)


def test_grayscale_is_read_from_the_scenarios_description_only():
    assert grayscale_scenario("auto", INFO)
    assert not grayscale_scenario("never", INFO)
    color = ScenarioInfo("c", 32, 3, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), "t", ("a", "b"))
    assert not grayscale_scenario("auto", color)


@pytest.mark.parametrize(("key", "value"), [("outer_iters", -1), ("input_steps", 0), ("model_steps", -1),
                                            ("input_lr", 0.0), ("model_lr", -1.0), ("tv_weight", -0.1),
                                            ("l2_weight", -1.0), ("init", 1.5), ("batch_size", 0),
                                            ("plateau_window", -1), ("grayscale", "always"), ("output", "sigmoid")])
def test_bad_config_values_are_one_line_errors_naming_the_field(key, value):
    with pytest.raises(SplitbenchError) as err:
        build_config(UnSplitConfig, {key: value}, "attack unsplit")
    message = str(err.value)
    assert "\n" not in message and key in message and repr(value) in message, message


def test_paper_suite_runs_the_code_budget_at_one_depth_and_a_reduced_one_at_every_depth():
    suite = load_suite("paper-unsplit")
    tracks = [b.label for b in suite.backbones]
    assert tracks == [f"unsplit_lenet@{s}" for s in ("relu1", "pool1", "conv2", "relu2", "pool2", "fc1")]
    by_label = {a.label: a for a in suite.attacks}
    reduced, full = by_label["unsplit_reduced"], by_label["unsplit_code_budget"]
    assert reduced.backbones == () and len(full.backbones) == 1
    assert full.config == UnSplitConfig(batch_size=full.config.batch_size)  # the code's settings, untouched
    assert reduced.config.total_steps < full.config.total_steps
    assert {n["metric"] for n in suite.paper["numbers"]} >= {"mse"}
