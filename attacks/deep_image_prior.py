"""``deep_image_prior``: invert a release by fitting a randomly initialised image generator.

Ulyanov et al.'s "natural pre-image" applied to split inference (SIMBA's "model optimisation attack"): the
image is the output of a skip encoder-decoder G_theta fed a fixed random code eta, and the generator's weights
(not the pixels) are optimised so that the white-box release of G_theta(eta) matches what the server received::

    theta* = argmin_theta  mean_j (release(G_theta(eta))_j - z_j)^2

The generator's structure is the prior. The **last iterate** is reported: SIMBA keeps the iterate with the best
SSIM against the ground truth, an oracle no attacker has.

Generator (DIP's ``skip``): per level, a skip branch (1x1 conv, BN, LeakyReLU) beside a deeper branch (conv
then 2x2 average pooling, BN, LeakyReLU, conv, BN, LeakyReLU, the next level, nearest-neighbour x2
upsampling); the two are concatenated, batch-normalised, then conv, BN, LeakyReLU and a 1x1 conv, BN,
LeakyReLU; a final 1x1 conv and a sigmoid give the image. Zero padding, LeakyReLU(0.2), BN in training mode
(statistics of the one image), as in DIP's feature-inversion notebook. Defaults are that notebook's:
channels [16, 32, 64, 128, 128, 128] down and up, 4 skip channels, kernels [7, 7, 5, 5, 3, 3], a 32-channel
code eta ~ U(0, 0.1), Adam lr 1e-3, 3100 iterations. The number of levels is capped so that the deepest map
is at least 2x2 (DIP's six levels assume 256-px canvases), and the generator works on a canvas whose side is a
multiple of 2^levels, cropped to the image (DIP crops the same way).

Batched: one generator per image, all run together as a single network with **grouped convolutions** (group g
is image g's generator, BN statistics are per channel, hence per generator). The loss is the sum of the
per-image losses, so each generator's gradient is its own, and with Adam's elementwise update a batch gives
the same images as generators fitted one at a time (``batch_size=1``); each image's code and weights are
drawn from that image's own seed, so the two agree up to float rounding (tested in float64). In float32 the
two drift apart after a few dozen steps: BN makes some weights (the scales before another BN) almost
scale-invariant, their true gradients are near zero, and Adam's normalised step turns the last-bit differences
of a grouped vs a single convolution into full-size updates; the images differ, their quality does not.

Inferred choices (recorded in the card): the level cap and canvas; convolutions followed by BN have no bias
(BN cancels it; under Adam it would only integrate rounding noise); Adam (fused kernel); the code and weights drawn per
image from a seed derived from the attack seed and the eval index; no weight noise (the weight-noise line of
DIP and its copies is a Python no-op). Input-noise regularisation (``input_noise``, off by default as in DIP's
feature-inversion notebook) follows DIP's heavy-noise variant: noise N(0, sigma^2) is added to the code at every
step, sigma stepping down through the listed phases, none after the last one (SIMBA runs 25,000 steps with a
schedule that ends at 20,000); each image's noise comes from its own stream, so batching leaves it unchanged.

Speed: the convolutions of all generators run as grouped kernels or as unfold + batched matrix products
(``conv_impl``): by default, on CUDA, whichever was measured faster at each shape on first use; on CPU, the
matrix products for 1x1 kernels and on the smallest maps only. On the CPU the generators, their code and every
map between layers stay channels-last (the trainer's layout; the matrix-product path and the skip concatenation
keep it), since converting at each layer made a quick-suite DIP run take about 1.5x as long. The generators'
parameters are many (about 1.7 M per image at paper size on 32-px images, most of them in the deep levels), so the
optimizer's update is a large part of a step; the generators' parameter group uses the trainer's fused Adam kernel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.inversion_kit import (
    PlateauRule,
    Trajectory,
    ended_by,
    eot_draws,
    eot_mse,
    full_precision,
    release_energy,
    run_checks,
    stopping_checks,
    summarize,
)
from attacks.optimization import PIXEL_EPS, chunks, grayscale_of, image_seed, white_box_or_reason
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.core.fields import field
from benchmark.kit.cost import latency_ms
from benchmark.models.trainer import ParamGroup, Trainer, channels_last_on, place

ConvImpl = Literal["auto", "grouped", "unfold", "tune"]
UNFOLD_MAX_PIXELS = 16  # CPU rule: 1x1 kernels and maps of at most 4x4 pixels run as batched matrix products


class GroupedConv2d(nn.Conv2d):
    """``groups`` independent convolutions (one per generator) with two interchangeable implementations.

    ``grouped``: one grouped convolution (PyTorch's conv kernels). ``unfold``: im2col (``F.unfold``) and one
    batched matrix product, generator g's patches times generator g's weight matrix. They compute the same
    sums in a different order. Which is faster depends on the device and the shape: on CPU grouped kernels
    win on large maps, while on small maps with many channels per group (the deep levels of DIP's skip
    network, 4x4 and 2x2 maps with 128 channels) they were measured several times slower than the matrix
    products, and so were 1x1 kernels at every size once the maps are channels-last (the trainer's CPU layout;
    the quick suite's generators took 1.2x less time with them as matrix products). ``impl``:

    - ``grouped`` / ``unfold``: always that one.
    - ``tune``: time both (forward and backward, at the shape met) the first time a shape is seen on a device
      and keep the faster, like cuDNN's benchmark mode; remembered for the process (``TUNED``).
    - ``auto``: ``tune`` on CUDA; on other devices a fixed rule (``unfold`` for 1x1 kernels and on maps of at
      most ``UNFOLD_MAX_PIXELS`` pixels), so that CPU runs never depend on a timing.

    The parameters are an ordinary grouped ``nn.Conv2d``'s, whatever the implementation.
    """

    def __init__(self, groups: int, cin: int, cout: int, k: int, bias: bool = False, impl: ConvImpl = "auto"):
        super().__init__(groups * cin, groups * cout, k, padding=k // 2, groups=groups, bias=bias)
        self.impl = impl

    def uses_unfold(self, x: Tensor) -> bool:
        h, w = x.shape[-2:]
        if self.impl in ("grouped", "unfold"):
            return self.impl == "unfold"
        if self.impl == "tune" or x.device.type == "cuda":
            return self._tuned(x)
        return self.kernel_size[0] == 1 or h * w <= UNFOLD_MAX_PIXELS

    def _tuned(self, x: Tensor) -> bool:
        key = TuneKey(str(x.device), x.dtype, _autocast_on(x.device.type), self.groups,
                      self.in_channels // self.groups, self.out_channels // self.groups, self.kernel_size[0],
                      self.bias is not None, x.shape[-2], x.shape[-1])
        if key not in TUNED:
            times = {}
            for name, fn in (("grouped", super().forward), ("unfold", self._unfold)):
                def forward_backward(probe: Tensor, fn=fn) -> Tensor:
                    with torch.enable_grad():
                        probe = probe.detach().requires_grad_()
                        return torch.autograd.grad(fn(probe).float().sum(), [probe, *self.parameters()])[0]
                times[name] = latency_ms(forward_backward, x, warmup=1, repeats=3)[0]
            TUNED[key] = times["unfold"] < times["grouped"]
        return TUNED[key]

    def _unfold(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        g, k = self.groups, self.kernel_size[0]
        weight = self.weight.reshape(g, self.out_channels // g, -1)
        if _channels_last(x):
            # channels-last in, channels-last out: generator g's positions x channels times its weight, so the
            # next batch norm and convolution get the layout they run in (an NCHW output here made the following
            # layers convert it back, forward and backward)
            cols = (x.permute(0, 2, 3, 1).reshape(h * w, g, -1).transpose(0, 1) if k == 1
                    else F.unfold(x, k, padding=k // 2).reshape(g, -1, h * w).transpose(1, 2))
            y = torch.bmm(cols, weight.transpose(1, 2)).transpose(0, 1).reshape(1, h, w, -1).permute(0, 3, 1, 2)
        else:
            cols = x.reshape(g, -1, h * w) if k == 1 else F.unfold(x.reshape(g, -1, h, w), k, padding=k // 2)
            y = torch.bmm(weight, cols).reshape(1, self.out_channels, h, w)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != 1 or not self.uses_unfold(x):
            return super().forward(x)
        return self._unfold(x)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # PyTorch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


class TuneKey(NamedTuple):
    """What a ``tune`` timing holds for: the device and precision, one group's convolution, the map size."""

    device: str
    dtype: torch.dtype
    autocast: bool
    groups: int
    in_channels: int  # per group
    out_channels: int  # per group
    kernel: int
    bias: bool
    height: int
    width: int


TUNED: dict[TuneKey, bool] = {}  # ``tune``: whether unfold was the faster (median of 3 timed calls each)


def _conv(groups: int, cin: int, cout: int, k: int, bias: bool = False) -> GroupedConv2d:
    return GroupedConv2d(groups, cin, cout, k, bias=bias)


def _bn_act(groups: int, c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(groups * c, track_running_stats=False), nn.LeakyReLU(0.2)]


def _channels_last(x: Tensor) -> bool:
    """Whether ``x`` is laid out channels-last and not also NCHW-contiguous (a 1x1 map or one channel is both)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _cat_groups(groups: int, a: Tensor, b: Tensor) -> Tensor:
    """Concatenate two grouped maps channel-wise within each group: [N, G*ca] + [N, G*cb] -> [N, G*(ca+cb)], in
    the inputs' memory layout (channels-last maps are joined along their innermost dimension, so the merge's batch
    norm and convolution get a channels-last map, as every other layer does)."""
    n, _, h, w = a.shape
    if _channels_last(a):
        nhwc = torch.cat([a.permute(0, 2, 3, 1).reshape(n, h, w, groups, -1),
                          b.permute(0, 2, 3, 1).reshape(n, h, w, groups, -1)], dim=4)
        return nhwc.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    out = torch.cat([a.view(n, groups, -1, h, w), b.view(n, groups, -1, h, w)], dim=2)
    return out.view(n, -1, h, w)


class _Level(nn.Module):
    """One scale of the skip encoder-decoder, holding the deeper scales inside it."""

    def __init__(self, groups: int, cin: int, down: int, up: int, skip: int, k: int, inner: _Level | None,
                 inner_up: int):
        super().__init__()
        self.groups = groups
        self.skip = nn.Sequential(_conv(groups, cin, skip, 1), *_bn_act(groups, skip)) if skip else None
        self.down = nn.Sequential(_conv(groups, cin, down, k), nn.AvgPool2d(2), *_bn_act(groups, down),
                                  _conv(groups, down, down, k), *_bn_act(groups, down))
        self.inner = inner
        deep = inner_up if inner is not None else down
        self.merge = nn.BatchNorm2d(groups * (skip + deep), track_running_stats=False)
        self.up = nn.Sequential(_conv(groups, skip + deep, up, k), *_bn_act(groups, up),
                                _conv(groups, up, up, 1), *_bn_act(groups, up))

    def forward(self, x: Tensor) -> Tensor:
        d = self.down(x)
        if self.inner is not None:
            d = self.inner(d)
        d = F.interpolate(d, scale_factor=2, mode="nearest")
        y = d if self.skip is None else _cat_groups(self.groups, self.skip(x), d)
        return self.up(self.merge(y))


class SkipGenerators(nn.Module):
    """``groups`` independent DIP skip generators evaluated as one grouped network: [1, G*C_in, S, S] codes
    -> [G, out, S, S] images in [0, 1]."""

    def __init__(self, groups: int, in_channels: int, channels: tuple[int, ...], skip: int,
                 kernels: tuple[int, ...], out_channels: int = 3, conv_impl: ConvImpl = "auto"):
        super().__init__()
        self.groups, self.out_channels = groups, out_channels
        depth = [in_channels, *channels[:-1]]
        inner: _Level | None = None
        for i in reversed(range(len(channels))):
            inner_up = channels[i + 1] if i + 1 < len(channels) else 0
            inner = _Level(groups, depth[i], channels[i], channels[i], skip, kernels[i], inner, inner_up)
        self.body = inner
        self.head = _conv(groups, channels[0], out_channels, 1, bias=True)
        for m in self.modules():
            if isinstance(m, GroupedConv2d):
                m.impl = conv_impl
        self.prior_logit: Tensor | None = None

    def start_at(self, prior: Tensor, side: int) -> None:
        """Make every generator predict a deviation from ``prior`` (``[out, h, w]`` in [0, 1]): its logit, placed at
        the top left of the ``side`` x ``side`` canvas (0 elsewhere, cropped away), is added to the head's output
        before the sigmoid."""
        logit = torch.logit(prior.clamp(PIXEL_EPS, 1.0 - PIXEL_EPS))
        h, w = logit.shape[-2:]
        self.prior_logit = F.pad(logit, (0, side - w, 0, side - h))[None]  # broadcast over the generators

    def forward(self, code: Tensor) -> Tensor:
        y = full_precision(self.head(self.body(code)))
        y = y.view(self.groups, self.out_channels, *y.shape[-2:])
        if self.prior_logit is not None:
            y = y + self.prior_logit.to(y)
        return torch.sigmoid(y)

    @torch.no_grad()
    def init_(self, generators: list[torch.Generator]) -> None:
        """PyTorch's default conv init (U(+-1/sqrt(fan_in)) for weights and biases), drawn group by group from
        each generator's own stream, so generator g is the same network whatever the batch it is part of."""
        g_count = self.groups
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                per = m.out_channels // g_count
                for g, gen in enumerate(generators):
                    rows = slice(g * per, (g + 1) * per)
                    m.weight[rows].copy_(torch.rand(m.weight[rows].shape, generator=gen) * 2 * bound - bound)
                    if m.bias is not None:
                        m.bias[rows].copy_(torch.rand(per, generator=gen) * 2 * bound - bound)


@dataclasses.dataclass(frozen=True)
class DeepImagePriorConfig:
    """Hyperparameters (defaults: DIP's feature-inversion notebook; see the module docstring)."""

    steps: int = field(3100, "most Adam iterations (DIP's AlexNet inversion: 3100); each image's run ends earlier "
                             "when its objective has plateaued")
    lr: float = field(1e-3, "Adam learning rate (DIP: 1e-3; SIMBA: 1e-2)")
    channels: tuple[int, ...] = field((16, 32, 64, 128, 128, 128), "channels per level, down and up (DIP)")
    kernels: tuple[int, ...] = field((7, 7, 5, 5, 3, 3), "kernel size per level (DIP)")
    skip_channels: int = field(4, "channels of each skip branch (DIP: 4; 0 = no skips)")
    code_channels: int = field(32, "channels of the fixed random code eta (DIP: 32; SIMBA: 3)")
    code_scale: float = field(0.1, "eta ~ U(0, code_scale) (DIP: 0.1; SIMBA: 1)")
    max_levels: int | None = field(None, "[inferred] use at most this many levels (None = all listed); always "
                                         "capped so that the deepest map is at least 2x2")
    batch_size: int = field(64, "generators fitted together as one grouped network; 1 fits image by image "
                                "(same result, slower)")
    input_noise: tuple[tuple[int, float], ...] = field(
        (), "input-noise regularisation: [until_step, sigma] phases; before step until_step the code is "
            "eta + sigma * N(0, 1), drawn afresh each step, and after the last phase eta alone (DIP's heavy-noise "
            "variant and SIMBA: [[10000, 10], [15000, 2], [20000, 0.5]]; [] = none, DIP's notebook)")
    conv_impl: ConvImpl = field("auto", "how the per-image convolutions run: grouped kernels, unfold + batched "
                                        "matrix products, tune (time both per shape, keep the faster) or auto "
                                        "(tune on CUDA; elsewhere unfold for 1x1 kernels and on maps of at most "
                                        "4x4 pixels); the same sums, only speed and float rounding differ")
    start_at_mean: bool = field(True, "[inferred] the generators predict the deviation from the attacker's mean aux "
                                      "image (its logit is added before the sigmoid) instead of an image from "
                                      "scratch")
    grayscale: Literal["auto", "never"] = field(
        "auto", "[inferred] auto: when every aux image has identical channels (grayscale data stored as copies), "
                "the generators output one channel, replicated; never: one per image channel")
    eot_samples: int = field(8, "expectation over transformation: release draws (as separate calls of the "
                                "white-box release would give) the feature term is averaged over at every step "
                                "when the defense's release is random; 1 on deterministic ones, whatever is set")
    plateau_window: int = field(100, "[inferred] a run ends when the mean relative feature error of an image's "
                                     "last plateau_window steps improved on the window before by less than "
                                     "plateau_tol (0 = always run to the cap)")
    plateau_tol: float = field(1e-3, "[inferred] relative improvement per window below which an image's run ends")

    def validate(self) -> None:
        if not self.channels or len(self.kernels) < len(self.channels):
            raise ValueError("channels must be non-empty and kernels must give a size for every level")
        if any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernel sizes must be odd, got {self.kernels}")
        if self.steps < 0 or self.lr <= 0 or self.batch_size < 1 or self.code_channels < 1:
            raise ValueError("batch_size, code_channels >= 1, steps >= 0 and lr > 0 are required")
        run_checks(self, stopping_checks(self))
        ends = [until for until, _ in self.input_noise]
        if any(b <= a for a, b in zip(ends, ends[1:])) or any(e < 1 for e in ends):
            raise ValueError(f"input_noise phases must end at increasing steps >= 1, got {list(self.input_noise)}")
        if any(sigma < 0 for _, sigma in self.input_noise):
            raise ValueError(f"input_noise sigmas must be >= 0, got {list(self.input_noise)}")

    def noise_sigma(self, step: int) -> float:
        """Standard deviation of the noise added to the code at ``step`` (0 = none)."""
        return next((sigma for until, sigma in self.input_noise if step < until), 0.0)


def levels_for(cfg: DeepImagePriorConfig, size: int) -> int:
    """Levels used for images of side ``size``: as many as listed (or max_levels), deepest map >= 2x2."""
    fit = max(1, int(math.floor(math.log2(max(size, 2)))) - 1)
    return max(1, min(len(cfg.channels), cfg.max_levels or len(cfg.channels), fit))


@dataclasses.dataclass
class Fit:
    """One chunk's generators: the images they returned, their final relative feature error and the run's record."""

    images: Tensor
    objective: Tensor
    mse: Tensor
    trajectory: Trajectory
    draws: int


def fit_generators(target: Target, trainer: Trainer, cfg: DeepImagePriorConfig, seed: int,
                   z: Tensor, first: int, gray: bool) -> Fit:
    """Fit one generator per release in ``z`` (eval images ``first ..``); each image is kept as it was when its
    own run ended (plateau or cap)."""
    wb = target.white_box()
    c, h, w = target.image_shape
    out_c = 1 if gray else c
    levels = levels_for(cfg, min(h, w))
    side = 2 ** levels * math.ceil(max(h, w) / 2 ** levels)
    g_count = len(z)
    gens = [torch.Generator().manual_seed(image_seed(seed, first + g)) for g in range(g_count)]
    code = torch.cat([torch.rand(1, cfg.code_channels, side, side, generator=gen) * cfg.code_scale for gen in gens],
                     dim=1).to(z.device)
    net = SkipGenerators(g_count, cfg.code_channels, cfg.channels[:levels], cfg.skip_channels,
                         cfg.kernels[:levels], out_c, cfg.conv_impl)
    net.init_(gens)
    if cfg.start_at_mean:
        mean = target.aux().images.mean(0).to(device=z.device, dtype=torch.get_default_dtype())
        net.start_at(mean.mean(0, keepdim=True) if gray else mean, side)
    net = place(net, z.device).train()  # the trainer's memory format (channels-last on the CPU)
    if channels_last_on(z.device):  # the code too, so that no layer converts a map at every step
        code = code.contiguous(memory_format=torch.channels_last)
    # input noise: each image's own stream on the device, so a batch draws what the images would alone
    noise_gens = [torch.Generator(z.device).manual_seed(image_seed(seed, first + g) ^ 0x5EED)
                  for g in range(g_count)] if cfg.input_noise else []

    def images(eta: Tensor = code) -> Tensor:
        out = net(eta)[:, :, :h, :w]
        return out.expand(-1, c, -1, -1) if gray else out

    def noisy_code(sigma: float) -> Tensor:
        shape = (1, cfg.code_channels, side, side)
        noise = torch.cat([torch.randn(shape, generator=gen, device=z.device, dtype=code.dtype)
                           for gen in noise_gens], dim=1)
        return code + sigma * noise

    with torch.no_grad(), trainer.autocast():
        kept = full_precision(images()).contiguous().clone()
        draws = eot_draws(target.stochastic, cfg.eot_samples, wb.release, target.info.normalize(kept), z)
    energy = release_energy(z)

    def snapshot(mask: Tensor) -> None:
        with torch.no_grad(), trainer.autocast():
            rows = mask.to(kept.device)
            kept[rows] = full_precision(images())[rows].to(kept.dtype)

    traj = Trajectory(g_count, cfg.steps, PlateauRule(cfg.plateau_window, cfg.plateau_tol), snapshot)

    def step(i: int) -> dict[str, Tensor]:
        sigma = cfg.noise_sigma(i)
        x = images(noisy_code(sigma) if sigma > 0 else code)
        mse = eot_mse(wb, target.info.normalize(x), z, draws)
        traj.record(mse / energy)
        return {"generator": mse.sum()}

    trainer.optimize({"generator": ParamGroup(list(net.parameters()), cfg.lr, fused=True)}, step, cfg.steps,
                     desc="dip", stop=traj.stop)
    traj.finish()
    with torch.no_grad(), trainer.autocast():
        mse = eot_mse(wb, target.info.normalize(kept), z, draws)
    return Fit(kept.clamp(0, 1), mse / energy, mse, traj, draws)


@register_attack("deep_image_prior")
class DeepImagePrior(Attack):
    """White-box deep-image-prior inversion, one generator per image, all fitted together."""

    Config = DeepImagePriorConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.WHITE_BOX, Access.AUX_PAIRS})
    version = "3"  # 3: channels-last generators on the CPU (same algorithm, other float rounding)
    smoke_config = {"steps": 10, "channels": (8, 16), "kernels": (3, 3)}
    search_space = {"lr": (0.005, 0.01, 0.02, 0.05), "steps": (150, 400, 1000)}
    card = MethodCard(
        paper="Ulyanov, Vedaldi, Lempitsky: Deep Image Prior (CVPR 2018), natural pre-image; as a split-inference "
              "attack in SIMBA (Singh et al.) and GLASS",
        year=2018,
        url="https://arxiv.org/abs/1711.10925",
        threat_model="white-box: the server knows the client's weights and the defense's release function "
                     "(and the channel mask it observed) and fits a generator whose image matches the release",
        knob="budget: steps x images (capped; each image stops on a plateau; generator size: channels, kernels)",
        inferred=("levels capped so that the deepest map is at least 2x2; the canvas is the image side rounded "
                  "up to a multiple of 2^levels, cropped to the image",
                  "convolutions followed by BN have no bias (BN cancels it); the final 1x1 conv keeps one",
                  "Adam of the shared trainer (fused kernel); feature loss = per-image mean squared error of the "
                  "release",
                  "code and weights drawn per image from a seed of (attack seed, eval index)",
                  "no weight noise (DIP's weight noise is a no-op); input noise off by default, and when set, "
                  "none after the last listed phase",
                  "each image's run ends when its relative feature error has plateaued (window 100, 0.1%), the "
                  "configured steps being the cap; the image kept is the one it had then (no selection against "
                  "ground truth: SIMBA's best-SSIM-against-truth selection is an oracle)",
                  "the generators predict the deviation from the attacker's mean aux image (its logit added before "
                  "the sigmoid), so directions the client ignores stay at a plausible image instead of noise "
                  "(fixed a priori; measured afterwards on Fashion-MNIST no_pruning@layer1, standard-cpu seed 0, "
                  "128 eval images, 150 steps: SSIM 0.59 -> 0.78 with this start and one grayscale channel)",
                  "grayscale data (every aux image with identical channels): one output channel, replicated",
                  "expectation over transformation: 8 white-box release draws per step on a release with fresh "
                  "noise at every call"),
        code="https://github.com/DmitryUlyanov/deep-image-prior",
    )

    def applicable(self, target: Target) -> str | None:
        return super().applicable(target) or white_box_or_reason(target)

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        observed = target.eval_releases()  # the suite's eval count for reconstruction attacks
        gray = grayscale_of(cfg.grayscale, target)
        fits = [fit_generators(target, trainer, cfg, self.seed, observed[part], part.start, gray)
                for part in chunks(len(observed), cfg.batch_size)]
        out = torch.cat([f.images for f in fits])
        metrics = summarize([f.trajectory for f in fits], [f.objective for f in fits])
        levels = levels_for(cfg, min(target.image_shape[1:]))
        out_c = 1 if gray else target.image_shape[0]
        return AttackOutput(
            index=torch.arange(len(out)), images=out,
            budget={"steps": cfg.steps, "images": len(out), "lr": cfg.lr, "levels": levels,
                    "channels": list(cfg.channels[:levels]), "batch_size": min(cfg.batch_size, len(out)),
                    "input_noise": [list(p) for p in cfg.input_noise], "start_at_mean": cfg.start_at_mean,
                    "grayscale": gray, "eot_samples": fits[0].draws if fits else 1,
                    "plateau_window": cfg.plateau_window, "plateau_tol": cfg.plateau_tol,
                    "ended_by": ended_by(metrics),
                    "generator_params_per_image": generator_params(cfg, levels, out_c)},
            metrics={**metrics, "final_feature_mse": float(torch.cat([f.mse for f in fits]).mean())},
        )


def generator_params(cfg: DeepImagePriorConfig, levels: int, out_channels: int) -> int:
    """Parameters of one image's generator."""
    net = SkipGenerators(1, cfg.code_channels, cfg.channels[:levels], cfg.skip_channels, cfg.kernels[:levels],
                         out_channels)
    return sum(p.numel() for p in net.parameters())
