"""Deep-image-prior inversion: the generators recover inputs from a shallow split far better than the best
constant image, G generators run together equal G generators run one at a time (with and without input noise),
the two convolution implementations compute the same network, and the level cap keeps the skip network valid
for small images."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.deep_image_prior import (
    UNFOLD_MAX_PIXELS,
    DeepImagePrior,
    DeepImagePriorConfig,
    GroupedConv2d,
    SkipGenerators,
    levels_for,
)
from benchmark.api.contract import Access
from benchmark.models.trainer import Trainer
from tests.support.helpers import fitted_frozen, float64, make_target, reconstruction_scores_of

SMALL = DeepImagePriorConfig(steps=100, lr=0.02, channels=(8, 16), kernels=(3, 3), code_channels=8)


@pytest.fixture(scope="module")
def shallow(tiny_data, tiny_backbone):
    """no_pruning on the quick suite's own backbone (test_resnet @ layer1), trained one epoch on the tiny data."""
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def white_box_target(defense, data, trainer, images):
    """What DIP sees: the client weights, and the aux pairs its mean-image start and grayscale test read."""
    return make_target(defense, data, DeepImagePrior.requires, trainer, limit=images)


def test_dip_recovers_the_input_far_better_than_a_constant_image(shallow, tiny_data, trainer):
    target = white_box_target(shallow, tiny_data, trainer, 4)
    out = DeepImagePrior(SMALL, seed=0).run(target, trainer)
    assert out.images.shape == (4, 3, 32, 32) and out.images.min() >= 0 and out.images.max() <= 1
    s = reconstruction_scores_of(out, tiny_data)
    # on the quick suite's ReLU client, trained one epoch on 102 images, 100 steps of a small generator
    assert s["psnr"] > s["psnr_baseline"] + 2.0, s
    assert s["ssim"] > s["ssim_baseline"] + 0.3, s
    assert out.budget["levels"] == 2 and out.budget["steps"] == 100 and out.budget["images"] == 4
    # white box plus the attacker's aux images (its mean-image start and the grayscale test)
    assert DeepImagePrior.requires == {Access.WHITE_BOX, Access.AUX_PAIRS} and out.budget["start_at_mean"]


def test_generators_fitted_together_equal_generators_fitted_alone(shallow, tiny_data):
    trainer = Trainer("cpu", seed=0, progress=False)
    cfg = dataclasses.replace(SMALL, steps=25)
    with float64(shallow) as d64:
        target = white_box_target(d64, tiny_data, trainer, 3)
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
    from benchmark.core.errors import SplitbenchError
    from benchmark.core.fields import build_config

    with pytest.raises(SplitbenchError, match="kernels"):
        build_config(DeepImagePriorConfig, {"channels": [8, 16, 32], "kernels": [3, 3]})
    with pytest.raises(SplitbenchError, match="odd"):
        build_config(DeepImagePriorConfig, {"kernels": [4, 4, 4, 4, 4, 4]})


@pytest.mark.parametrize("impl", ["unfold", "auto"])
def test_unfold_convolutions_compute_the_grouped_network(impl):
    """Same parameters, same outputs and same gradients (float64) whichever way the convolutions run."""
    cfg = DeepImagePriorConfig(channels=(4, 8, 8), kernels=(5, 3, 3), code_channels=3)
    nets = {}
    for name in ("grouped", impl):
        net = SkipGenerators(3, 3, cfg.channels, cfg.skip_channels, cfg.kernels, conv_impl=name).double()
        net.init_([torch.Generator().manual_seed(s) for s in (1, 2, 3)])
        nets[name] = net
    code = torch.rand(1, 9, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    outs = {name: net(code) for name, net in nets.items()}
    torch.testing.assert_close(outs[impl], outs["grouped"], atol=1e-12, rtol=0)
    for out in outs.values():
        out.square().sum().backward()
    for (name, a), (_, b) in zip(nets["grouped"].named_parameters(), nets[impl].named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-10, rtol=1e-8, msg=name)


def test_channels_last_generators_stay_channels_last_and_compute_the_same_network():
    """In the trainer's CPU layout (channels-last) every convolution and batch norm of the generators gets a
    channels-last map, whichever way its convolution runs (the unfold path's output and the skip concatenation keep
    the layout: converting at every layer took about a third of the quick suite's DIP time), and the images and
    gradients are those of the NCHW network (float64)."""
    cfg = DeepImagePriorConfig(channels=(4, 8, 8), kernels=(5, 3, 3), code_channels=3)
    nets = {}
    for layout in ("nchw", "channels_last"):
        net = SkipGenerators(3, 3, cfg.channels, cfg.skip_channels, cfg.kernels, conv_impl="auto").double()
        net.init_([torch.Generator().manual_seed(s) for s in (1, 2, 3)])
        nets[layout] = net
    nets["channels_last"].to(memory_format=torch.channels_last)
    code = torch.rand(1, 9, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen = []

    def check(module, inputs, _output):
        x = inputs[0]
        if x.shape[-1] > 1:  # a 1x1 map is both layouts
            seen.append((type(module).__name__, x.is_contiguous(memory_format=torch.channels_last)))

    for m in nets["channels_last"].modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            m.register_forward_hook(check)
    outs = {"nchw": nets["nchw"](code),
            "channels_last": nets["channels_last"](code.contiguous(memory_format=torch.channels_last))}
    assert len(seen) > 10 and all(cl for _, cl in seen), [name for name, cl in seen if not cl]
    assert any(isinstance(m, GroupedConv2d) and m.kernel_size[0] == 1 for m in nets["channels_last"].modules())
    torch.testing.assert_close(outs["channels_last"], outs["nchw"], atol=1e-12, rtol=0)
    for out in outs.values():
        out.square().sum().backward()
    for (name, a), (_, b) in zip(nets["nchw"].named_parameters(), nets["channels_last"].named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-10, rtol=1e-8, msg=name)


def test_auto_uses_matrix_products_for_1x1_kernels_and_the_smallest_maps_on_cpu():
    def conv(impl, k=3):
        return GroupedConv2d(2, 4, 4, k, impl=impl)

    def uses(c, side):
        return c.uses_unfold(torch.zeros(1, 8, side, side))

    assert uses(conv("auto"), 4) and uses(conv("auto"), 2) and UNFOLD_MAX_PIXELS == 16
    assert not uses(conv("auto"), 8) and not uses(conv("auto"), 32)
    assert uses(conv("unfold"), 32) and not uses(conv("grouped"), 2)
    assert uses(conv("auto", k=1), 32) and uses(conv("auto", k=1), 8) and not uses(conv("grouped", k=1), 8)


def test_tune_keeps_the_faster_implementation_per_shape(monkeypatch):
    """``tune`` times both implementations once per shape (here with a fake clock) and remembers the winner."""
    import attacks.deep_image_prior as dip

    monkeypatch.setattr(dip, "TUNED", {})
    calls = []

    def fake_latency(fn, x, warmup=3, repeats=20):
        fn(x)  # the probe really runs forward and backward
        calls.append(x.device)
        t = 1.0 if len(calls) % 2 else 2.0  # grouped is timed first: grouped 1 s, unfold 2 s
        return t, t

    monkeypatch.setattr(dip, "latency_ms", fake_latency)
    conv = GroupedConv2d(2, 4, 4, 3, impl="tune")
    x = torch.rand(1, 8, 6, 6)
    assert not conv.uses_unfold(x) and len(calls) == 2 and len(dip.TUNED) == 1
    key = next(iter(dip.TUNED))
    assert (key.groups, key.in_channels, key.out_channels, key.kernel, key.height, key.width) == (2, 4, 4, 3, 6, 6)
    assert not conv.uses_unfold(x) and len(calls) == 2  # remembered, not timed again
    assert conv.weight.grad is None  # probing leaves the parameters' gradients alone

    def unfold_faster(fn, x, warmup=3, repeats=20):
        calls.append(x.device)
        t = 3.0 if len(calls) % 2 else 1.0
        return t, t

    monkeypatch.setattr(dip, "latency_ms", unfold_faster)
    assert conv.uses_unfold(torch.rand(1, 8, 5, 5)) and len(calls) == 4  # a new shape is timed afresh
    y = conv(torch.rand(1, 8, 5, 5))
    assert y.shape == (1, 8, 5, 5)


def test_tune_on_the_real_clock_gives_the_same_network():
    cfg = DeepImagePriorConfig(channels=(4, 8), kernels=(3, 3), code_channels=3)
    torch.manual_seed(0)
    ref = SkipGenerators(2, 3, cfg.channels, cfg.skip_channels, cfg.kernels, conv_impl="grouped").double()
    tuned = SkipGenerators(2, 3, cfg.channels, cfg.skip_channels, cfg.kernels, conv_impl="tune").double()
    tuned.load_state_dict(ref.state_dict())
    code = torch.rand(1, 6, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(tuned(code), ref(code), atol=1e-12, rtol=0)


def test_input_noise_schedule_steps_down_then_stops():
    cfg = DeepImagePriorConfig(input_noise=((100, 10.0), (150, 2.0), (200, 0.5)))
    assert [cfg.noise_sigma(i) for i in (0, 99, 100, 149, 150, 199, 200, 5000)] == [10, 10, 2, 2, 0.5, 0.5, 0, 0]
    assert DeepImagePriorConfig().noise_sigma(0) == 0.0


def test_input_noise_from_yaml_and_bad_schedules_are_rejected():
    from benchmark.core.errors import SplitbenchError
    from benchmark.core.fields import build_config

    cfg = build_config(DeepImagePriorConfig, {"input_noise": [[100, 10], [200, "0.5"]]})
    assert cfg.input_noise == ((100, 10.0), (200, 0.5)) and isinstance(cfg.input_noise[0][1], float)
    with pytest.raises(SplitbenchError, match="increasing"):
        build_config(DeepImagePriorConfig, {"input_noise": [[200, 1.0], [100, 0.5]]})
    with pytest.raises(SplitbenchError, match="sigmas"):
        build_config(DeepImagePriorConfig, {"input_noise": [[200, -1.0]]})
    with pytest.raises(SplitbenchError, match=r"input_noise\[0\]: expected a list of 2 items"):
        build_config(DeepImagePriorConfig, {"input_noise": [[200]]})


def test_input_noise_is_per_image_and_changes_the_fit(shallow, tiny_data):
    """With input noise, a batch still equals its images fitted alone (each image draws from its own stream),
    and the noise does change what is fitted."""
    trainer = Trainer("cpu", seed=0, progress=False)
    cfg = dataclasses.replace(SMALL, steps=12, input_noise=((8, 0.5),))
    with float64(shallow) as d64:
        target = white_box_target(d64, tiny_data, trainer, 2)
        together = DeepImagePrior(dataclasses.replace(cfg, batch_size=2), seed=5).run(target, trainer)
        alone = DeepImagePrior(dataclasses.replace(cfg, batch_size=1), seed=5).run(target, trainer)
        quiet = DeepImagePrior(dataclasses.replace(cfg, batch_size=2, input_noise=()), seed=5).run(target, trainer)
    torch.testing.assert_close(together.images, alone.images, atol=1e-6, rtol=0)
    assert (together.images - quiet.images).abs().max() > 1e-3
    assert together.budget["input_noise"] == [[8, 0.5]]
