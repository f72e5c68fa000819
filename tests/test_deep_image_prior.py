"""Deep-image-prior inversion: the generators recover inputs from a shallow split far better than the best
constant image, G generators run together equal G generators run one at a time, and the level cap keeps the
skip network valid for small images."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.deep_image_prior import DeepImagePrior, DeepImagePriorConfig, SkipGenerators, levels_for
from benchmark.trainer import Trainer
from tests.test_optimization import fitted_no_pruning, float64, scores, white_box_target

SMALL = DeepImagePriorConfig(max_images=4, steps=100, lr=0.02, channels=(8, 16), kernels=(3, 3), code_channels=8)


@pytest.fixture(scope="module")
def shallow(tiny_data):
    return fitted_no_pruning(tiny_data)


def test_dip_recovers_the_input_far_better_than_a_constant_image(shallow, tiny_data, trainer):
    target = white_box_target(shallow, tiny_data, trainer)
    out = DeepImagePrior(SMALL, seed=0).run(target, trainer)
    assert out.images.shape == (4, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    s = scores(out, tiny_data)
    assert s["psnr"] > s["psnr_baseline"] + 8.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.4, s
    assert out.budget["levels"] == 2 and out.budget["steps"] == 100 and out.budget["images"] == 4


def test_generators_fitted_together_equal_generators_fitted_alone(shallow, tiny_data):
    trainer = Trainer("cpu", seed=0, progress=False)
    cfg = dataclasses.replace(SMALL, max_images=3, steps=25)
    with float64(shallow) as d64:
        target = white_box_target(d64, tiny_data, trainer)
        together = DeepImagePrior(dataclasses.replace(cfg, batch_size=3), seed=5).run(target, trainer)
        alone = DeepImagePrior(dataclasses.replace(cfg, batch_size=1), seed=5).run(target, trainer)
    torch.testing.assert_close(together.images, alone.images, atol=1e-6, rtol=0)
    assert (together.images[0] - together.images[1]).abs().max() > 1e-2  # and they are different images


@pytest.mark.parametrize("skip", [4, 0])
def test_grouped_network_is_independent_generators(skip):
    """Group g of a G-group network computes exactly what a lone generator with g's weights computes."""
    cfg = DeepImagePriorConfig(channels=(4, 8, 8), kernels=(5, 3, 3), code_channels=3, skip_channels=skip)
    gens = [torch.Generator().manual_seed(s) for s in (11, 12, 13)]
    net = SkipGenerators(3, 3, cfg.channels, cfg.skip_channels, cfg.kernels)
    net.init_(gens)
    code = torch.rand(1, 9, 16, 16)
    together = net(code)
    assert together.shape == (3, 3, 16, 16) and together.min() >= 0 and together.max() <= 1
    for g, seed in enumerate((11, 12, 13)):
        lone = SkipGenerators(1, 3, cfg.channels, cfg.skip_channels, cfg.kernels)
        lone.init_([torch.Generator().manual_seed(seed)])
        torch.testing.assert_close(lone(code[:, 3 * g:3 * (g + 1)]), together[g:g + 1], atol=1e-5, rtol=1e-5)
    # changing one image's code changes that image only
    code2 = code.clone()
    code2[:, 3:6] += 1.0
    moved = (net(code2) - together).flatten(1).abs().amax(1)
    assert moved[1] > 1e-3 and moved[0] == 0 and moved[2] == 0


@pytest.mark.parametrize("size, listed, expected", [(32, 6, 4), (32, 2, 2), (8, 6, 2), (64, 6, 5), (224, 6, 6)])
def test_levels_are_capped_so_the_deepest_map_is_at_least_2x2(size, listed, expected):
    cfg = DeepImagePriorConfig(channels=(4,) * listed, kernels=(3,) * listed)
    assert levels_for(cfg, size) == expected
    assert size / 2 ** expected >= 2


def test_bad_configs_are_rejected():
    from benchmark.config import build_config
    from benchmark.errors import SplitbenchError

    with pytest.raises(SplitbenchError, match="kernels"):
        build_config(DeepImagePriorConfig, {"channels": [8, 16, 32], "kernels": [3, 3]})
    with pytest.raises(SplitbenchError, match="odd"):
        build_config(DeepImagePriorConfig, {"kernels": [4, 4, 4, 4, 4, 4]})
