"""``optimization``: He et al.'s regularized maximum-likelihood (rMLE) white-box inversion.

The attacker knows the client and the defense's release function (white box: for channel-pruning defenses the
mask it observed is applied inside) and searches the input space for an image whose release matches what the
server received::

    x* = argmin_x  mean_j (release(x)_j - z_j)^2 / s  +  lambda * TV_beta(x)
    TV_beta(x) = mean_{c,i,j} ((x[c,i+1,j] - x[c,i,j])^2 + (x[c,i,j+1] - x[c,i,j])^2 + eps)^(beta / 2)

The last iterate is reported: nothing is selected against ground truth.

Where the defaults leave the paper, and why. On a ReLU client a pixel that only feeds units whose
pre-activation stays negative (the black background of a digit, about 40% of each image on the quick suite's
test_resnet@layer1), or that a max pool does not pick, gets no gradient from the feature term and keeps its
starting value. From the paper's flat grey start such pixels stay grey, and rMLE scored *below* the attacker's
best constant guess on the quick suite (12.3 dB PSNR against 13.3 dB for the mean aux image). So:

- ``init="mean_aux"``: every image starts at the mean of the attacker's aux images. The white-box attacker
  legitimately holds aux data of the same distribution (the attack declares ``Access.AUX_PAIRS`` besides the
  client weights), and unconstrained pixels then keep its best constant guess. ``grey`` (paper), ``zeros`` in
  normalized space (code) and ``uniform`` noise (SIMBA) remain.
- ``parameterization="sigmoid"``: the optimised variable is a logit per pixel; the image is its sigmoid, always
  in [0, 1], normalized with the scenario's statistics before the release, and TV is taken on those pixels, so
  lambda does not depend on the normalization's std. ``"normalized"`` optimises the normalized input itself, TV
  on it, clamped to [0, 1] at the end, as the official code does. Starting pixels are clamped to
  [1e-3, 1 - 1e-3] before the logit (a black pixel would start at -inf).

``paper-he19`` sets the official code's values explicitly (zeros, normalized, mse, beta 2, its per-split TV
weights, 5000 steps at lr 1e-2).

How lr, tv_weight, tv_beta and steps were chosen: on the attacker's own data only. A white-box attacker can
release images it holds and invert them, so the defaults were chosen by inverting 32 of its aux images (started
from the mean of the other 327) on the quick suite's target (no_pruning, test_resnet@layer1, digits, 12 epochs
at lr 2e-3, batch 64), with the sigmoid variable, the mean-aux start and the relative feature loss, scoring SSIM
and PSNR against those aux images; no eval image was inverted to choose anything. Tried: at 200 steps, lr 0.05
to 2 (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2) against tv_weight 0 to 100 (coarse, then refined around the best);
at 500 steps, lr 0.2 to 1 against tv_weight 0.3 to 3; beta 1 at lr 0.5 with tv_weight 0.03 to 3. Found (the
mean aux image scores 13.5 dB / SSIM 0.340 there): lr 0.05 peaks at 16.9 dB / 0.641 (tv_weight 3); around
lr 0.5 and tv_weight 1 (lr 0.3 to 0.7, tv_weight 0.5 to 2) SSIM is 0.66 to 0.82 at 200 steps and 0.77 to 0.88
at 500; beyond it quality falls off a cliff (lr 1: 0.24 to 0.71 at 200 steps, 0.50 to 0.82 at 500, better only
with a heavier prior; lr 2: at most 0.26); beta 1 peaks at 0.748. The best mean SSIM over the two budgets is
lr 0.7 with tv_weight 2 (0.824 / 0.848); lr 0.5 with tv_weight 1 (20.6 dB / 0.809 at 200 steps, 21.4 dB / 0.852
at 500) is within 0.006 of it and further from the cliff, so the defaults are lr 0.5 (in logit units),
tv_weight 1, tv_beta 2, and the paper's 500 shallow-split steps.

Batched inversion: a chunk of ``batch_size`` images is one optimisation whose loss is the **sum** of the
per-image losses. Each image's gradient then depends on that image alone, and Adam's update is elementwise, so
the iterates equal those of inverting every image on its own (``batch_size=1``) up to float rounding (tested).

Expectation over transformation (``eot_samples``): when the defense's release is random (``target.stochastic``,
e.g. a white-box release that adds noise), the feature term of every step is the mean over that many release
draws, each with its own random draw: the defense's ``white_box_draws`` (by default a separate call of the
release function per draw, so a defense that draws its randomness once per call still gives independent draws; a
defense whose noise follows a deterministic client computes the client once). Deterministic releases are drawn
once whatever is set.

Other inferred choices, recorded in the card:

- ``feature_loss="relative"``: the feature error is divided by the observed release's mean square (s above),
  so that one lambda fits every split and a defense cannot weaken the attack by merely scaling its release
  down; ``"mse"`` (s = 1) is the official code's loss, with its per-split weights (0 at conv11, 10 at ReLU22,
  1e3 at ReLU32), which ``paper-he19`` uses.
- plain Adam (betas 0.9/0.999, eps 1e-8) instead of the code's AMSGrad with eps 1e-3 (the shared trainer's
  optimizer; the paper says "Adam").
- ``eps`` = 1e-8 inside the TV power so beta < 2 stays differentiable at a constant image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from attacks.inversion_kit import (  # noqa: F401 (other attacks import full_precision, release_mse from here)
    PlateauRule,
    Trajectory,
    ended_by,
    eot_draws,
    eot_mse,
    full_precision,
    is_grayscale,
    reduction_factor,
    release_energy,
    release_mse,
    run_checks,
    stopping_checks,
    summarize,
)
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.core.errors import AccessError
from benchmark.core.fields import field
from benchmark.data.types import ScenarioInfo
from benchmark.models.trainer import ParamGroup, Trainer

TV_EPS = 1e-8
#: starting pixels are clamped to [PIXEL_EPS, 1 - PIXEL_EPS] before the logit of the sigmoid variable (a black
#: pixel of the mean aux image would otherwise start at logit -inf)
PIXEL_EPS = 1e-3


def total_variation(x: Tensor, beta: float = 2.0, eps: float = TV_EPS) -> Tensor:
    """Per-image total variation ``[B]`` of images ``[B, C, H, W]`` (mean over channels and positions)."""
    dh = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dw = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    sq = full_precision(dh).pow(2) + full_precision(dw).pow(2)
    tv = sq if beta == 2.0 else (sq + eps).pow(beta / 2.0)
    return tv.flatten(1).mean(1)


def feature_scale(kind: str, observed: Tensor) -> Tensor:
    """Per-image divisor of the feature loss: 1 ("mse") or the observed release's mean square ("relative")."""
    if kind == "mse":
        return torch.ones(len(observed), device=observed.device)
    return release_energy(observed)


def image_seed(seed: int, index: int) -> int:
    """The seed of eval image ``index``'s random draws, the same whether it is inverted alone or in a batch."""
    return (seed * 1_000_003 + index * 7919 + 12345) % (2 ** 63)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size`` elements."""
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + max(1, size)))


def white_box_or_reason(target: Target) -> str | None:
    """The reason a white-box attack cannot run on ``target``, or None."""
    try:
        target.white_box()
    except AccessError as exc:
        return str(exc)
    return None


Init = Literal["mean_aux", "grey", "zeros", "uniform"]
Parameterization = Literal["sigmoid", "normalized"]


@dataclasses.dataclass(frozen=True)
class RMLEConfig:
    """Hyperparameters of the rMLE inversion (defaults: chosen on the attacker's aux images, see the module;
    ``paper-he19`` sets the official code's values explicitly)."""

    steps: int | None = field(None, "most Adam iterations per image (a run ends earlier when its objective has "
                                    "plateaued); None = He et al.'s budget for the split's depth: steps_shallow "
                                    "on shallow splits, steps_deep on deep ones")
    steps_shallow: int = field(500, "the cap on shallow splits when steps is None (paper: 500)")
    steps_deep: int = field(5000, "the cap on deep splits when steps is None (paper: 5000)")
    shallow_reduction: float = field(4.0, "[inferred] a split is shallow when the release's side is at most this "
                                          "many times smaller than the image's (timm's first stage, stride 4, and "
                                          "any image-shaped release); deeper stages are deep")
    lr: float = field(0.5, "[inferred] Adam learning rate in the units of the optimised variable: 0.5 on the "
                           "sigmoid's logits (chosen on aux images); paper and code, on the normalized input: "
                           "1e-2 (1e-3 on deep splits in the paper)")
    tv_weight: float = field(1.0, "[inferred] lambda of the TV prior (1 on pixels with the relative feature loss, "
                                  "chosen on aux images; the code's, with 'mse' on the normalized input: 0 at "
                                  "conv11, 10 at ReLU22, 1e3 at ReLU32)")
    tv_beta: float = field(2.0, "[inferred] TV exponent beta (code: 2, squared differences; paper: 1)")
    feature_loss: Literal["mse", "relative"] = field(
        "relative", "[inferred] feature term: per-image mean squared error divided by the observed release's "
                    "mean square (lambda independent of the release's scale), or the code's plain 'mse'")
    init: Init = field(
        "mean_aux", "[inferred] start: the attacker's mean aux image (default), constant grey 0.5 (paper), zeros "
                    "in normalized space (code), or uniform noise in [0, 1] (SIMBA's variant) drawn per image "
                    "from its own seed")
    parameterization: Parameterization = field(
        "sigmoid", "[inferred] optimised variable: logits whose sigmoid is the image in [0, 1] pixel space, TV "
                   "taken on those pixels (default); or the normalized model input itself, TV taken on it, as "
                   "in the official code")
    grayscale: Literal["auto", "never"] = field(
        "auto", "[inferred] auto: when every aux image has identical channels (grayscale data stored as copies), "
                "optimise one channel and replicate it; never: optimise every channel")
    eot_samples: int = field(8, "expectation over transformation: release draws (as separate calls of the "
                                "white-box release would give) the feature term is averaged over at every step "
                                "when the defense's release is random; 1 on deterministic ones, whatever is set")
    plateau_window: int = field(50, "[inferred] a run ends when the mean relative feature error of an image's last "
                                    "plateau_window steps improved on the window before by less than plateau_tol "
                                    "(0 = always run to the cap)")
    plateau_tol: float = field(1e-3, "[inferred] relative improvement per window below which an image's run ends")
    batch_size: int = field(256, "images inverted together in one optimisation (per-image losses summed); "
                                 "1 inverts image by image (same result, slower)")

    def validate(self) -> None:
        checks = (("steps", self.steps is None or self.steps >= 0, "null or an integer >= 0"),
                  ("steps_shallow", self.steps_shallow >= 0, "an integer >= 0"),
                  ("steps_deep", self.steps_deep >= 0, "an integer >= 0"),
                  ("shallow_reduction", self.shallow_reduction >= 1, "a number >= 1"),
                  ("lr", self.lr > 0, "a number > 0"),
                  ("tv_weight", self.tv_weight >= 0, "a number >= 0"),
                  ("tv_beta", self.tv_beta > 0, "a number > 0"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"))
        run_checks(self, [*checks, *stopping_checks(self)])

    def cap(self, image_size: int, observed: Tensor) -> int:
        """The step cap for releases like ``observed`` of ``image_size``-px images."""
        if self.steps is not None:
            return self.steps
        shallow = reduction_factor(image_size, observed) <= self.shallow_reduction
        return self.steps_shallow if shallow else self.steps_deep

    @property
    def plateau(self) -> PlateauRule:
        return PlateauRule(self.plateau_window, self.plateau_tol)


def start_pixels(init: str, n: int, first: int, seed: int, target: Target, device: torch.device,
                 channels: int | None = None) -> Tensor:
    """Starting images in [0, 1] pixel space for eval rows ``first .. first + n - 1`` (default float dtype), with
    ``channels`` channels (the image's by default; 1 for a grayscale inversion: the mean over channels)."""
    c = target.image_shape[0] if channels is None else channels
    shape = (n, c, *target.image_shape[1:])
    dtype = torch.get_default_dtype()
    if init == "uniform":
        draws = [torch.rand(shape[1:], generator=torch.Generator().manual_seed(image_seed(seed, first + i)))
                 for i in range(n)]
        return torch.stack(draws).to(device=device, dtype=dtype)
    full = (n, *target.image_shape)
    if init == "mean_aux":
        pixels = target.aux().images.mean(0).to(device=device, dtype=dtype).expand(full)
    elif init == "zeros":  # zeros in normalized space: the normalization's mean colour
        pixels = target.info.denormalize(torch.zeros(full, device=device)).to(dtype)
    else:
        pixels = torch.full(full, 0.5, device=device, dtype=dtype)
    return (pixels if c == full[1] else pixels.mean(1, keepdim=True)).clone()


class ImageVariable:
    """The optimised variable and how it maps to the model input, to the image TV is taken on, and back.

    ``sigmoid``: logits theta; the image is sigmoid(theta), always in [0, 1], and TV is taken on it.
    ``normalized``: the normalized model input itself (the official code), TV on it, clamped to [0, 1] at the end.
    With one channel for a ``channels``-channel model (``pixels`` of one channel: grayscale), the variable is that
    channel, replicated; in the normalized parameterization it is normalized with the mean of the channels'
    statistics (the same as each channel's for grayscale scenarios, whose statistics are equal).
    """

    def __init__(self, kind: str, info: ScenarioInfo, pixels: Tensor, channels: int):
        self.kind = kind
        self.info = info
        self.channels = channels
        self.gray = pixels.shape[1] == 1 and channels > 1
        mean = torch.tensor(info.mean, dtype=pixels.dtype, device=pixels.device).mean()
        std = torch.tensor(info.std, dtype=pixels.dtype, device=pixels.device).mean()
        self.gray_stats = (mean, std)
        if kind == "sigmoid":
            start = torch.logit(pixels.clamp(PIXEL_EPS, 1.0 - PIXEL_EPS))
        elif self.gray:
            start = (pixels - mean) / std
        else:
            start = info.normalize(pixels).to(pixels.dtype)
        self.param = nn.Parameter(start)

    def _expand(self, t: Tensor) -> Tensor:
        return t.expand(-1, self.channels, -1, -1) if self.gray else t

    def input_and_prior_image(self) -> tuple[Tensor, Tensor]:
        """(the normalized model input, the image the TV prior is computed on)."""
        if self.kind == "sigmoid":
            pixels = torch.sigmoid(self.param)
            return self.info.normalize(self._expand(pixels)).to(pixels.dtype), pixels
        if self.gray:
            mean, std = self.gray_stats
            pixels = self._expand(self.param * std + mean)
            return self.info.normalize(pixels).to(pixels.dtype), self.param
        return self.param, self.param

    @torch.no_grad()
    def image(self) -> Tensor:
        """The current image in [0, 1], with the model's channels."""
        if self.kind == "sigmoid":
            return self._expand(torch.sigmoid(self.param.detach()))
        if self.gray:
            mean, std = self.gray_stats
            return self._expand(self.param.detach() * std + mean).clamp(0, 1)
        return self.info.denormalize(self.param.detach()).clamp(0, 1)


def grayscale_of(mode: str, target: Target) -> bool:
    """Whether to invert one channel: ``mode`` is "auto" and the attacker's aux images are all grayscale."""
    return mode == "auto" and target.image_shape[0] > 1 and is_grayscale(target.aux().images)


@dataclasses.dataclass
class Inversion:
    """What one run returned: the images, their final relative feature error and plain feature MSE, and the run's
    record."""

    images: Tensor
    objective: Tensor
    mse: Tensor
    metrics: dict[str, float]
    cap: int
    draws: int
    grayscale: bool


def invert(target: Target, trainer: Trainer, cfg: RMLEConfig, seed: int) -> Inversion:
    """Run rMLE on every release the target hands out (the suite's eval count for reconstruction attacks)."""
    wb = target.white_box()
    observed = target.eval_releases()
    n = len(observed)
    channels = target.image_shape[0]
    gray = grayscale_of(cfg.grayscale, target)
    cap = cfg.cap(target.info.image_size, observed)
    draws = 1
    images, finals, mses, trajectories = [], [], [], []
    for part in chunks(n, cfg.batch_size):
        z = observed[part]
        var = ImageVariable(cfg.parameterization, target.info,
                            start_pixels(cfg.init, len(z), part.start, seed, target, z.device, 1 if gray else None),
                            channels)
        if part.start == 0:
            with trainer.autocast():
                draws = eot_draws(target.stochastic, cfg.eot_samples, wb.release, var.input_and_prior_image()[0], z)
        scale, energy = feature_scale(cfg.feature_loss, z), release_energy(z)
        kept = var.image().contiguous().clone()

        def snapshot(mask: Tensor, var: ImageVariable = var, kept: Tensor = kept) -> None:
            rows = mask.to(kept.device)
            kept[rows] = var.image()[rows]

        traj = Trajectory(len(z), cap, cfg.plateau, snapshot)

        def step(_i: int, var: ImageVariable = var, z: Tensor = z, scale: Tensor = scale, energy: Tensor = energy,
                 traj: Trajectory = traj, draws: int = draws) -> dict[str, Tensor]:
            x, prior_image = var.input_and_prior_image()
            mse = eot_mse(wb, x, z, draws)
            traj.record(mse / energy)
            return {"x": (mse / scale + cfg.tv_weight * total_variation(prior_image, cfg.tv_beta)).sum()}

        trainer.optimize({"x": ParamGroup([var.param], cfg.lr)}, step, cap, desc="rmle", stop=traj.stop)
        traj.finish()
        with torch.no_grad(), trainer.autocast():
            mses.append(eot_mse(wb, target.info.normalize(kept).to(kept.dtype), z, draws))
        finals.append(mses[-1] / energy)
        images.append(kept.float())
        trajectories.append(traj)
    return Inversion(torch.cat(images), torch.cat(finals), torch.cat(mses), summarize(trajectories, finals), cap,
                     draws, gray)


@register_attack("optimization")
class RMLEInversion(Attack):
    """White-box rMLE inversion, a whole batch of eval images per optimisation."""

    Config = RMLEConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.WHITE_BOX, Access.AUX_PAIRS})
    version = "2"
    smoke_config = {"steps": 20}
    search_space = {"lr": (0.2, 0.5, 1.0), "tv_weight": (0.3, 1.0, 3.0)}
    card = MethodCard(
        paper="He, Zhang, Lee: Model Inversion Attacks against Collaborative Inference (ACSAC 2019), "
              "white-box regularized maximum likelihood estimation (rMLE)",
        year=2019,
        url="https://doi.org/10.1145/3359789.3359824",
        threat_model="white-box: the server knows the client's weights and the defense's release function "
                     "(and the channel mask it observed) and optimises the input to match the release; it also "
                     "holds aux images of the same distribution, whose mean image is its starting point",
        knob="budget: steps x images (Adam iterations per image, capped; each image stops on a plateau)",
        inferred=("init='mean_aux': every image starts at the attacker's mean aux image (hence aux pairs besides "
                  "the client weights), since pixels in ReLU dead zones get no gradient and keep their start; the "
                  "paper's grey 0.5 and the code's zeros remain as options",
                  "parameterization='sigmoid': logits whose sigmoid is the image in [0, 1], normalized before the "
                  "release, TV on those pixels; 'normalized' optimises the normalized input as the code does",
                  "lr=0.5 (logit units), tv_weight=1, tv_beta=2: chosen by inverting 32 of the attacker's "
                  "own aux images on the quick suite's no_pruning target (lr 0.05-2 x tv_weight 0-100 at 200 and "
                  "500 steps, beta 1 and 2; 20.6 dB / SSIM 0.81 at 200 steps against 13.5 dB / 0.34 for the mean "
                  "image), never eval; the paper suite sets the code's values",
                  "step cap by split depth: the paper's 500 iterations on shallow splits and 5000 on deep ones, a "
                  "split being shallow when the release's side is at most 4 times smaller than the image's",
                  "each image's run ends when its relative feature error has plateaued (see the module)",
                  "grayscale data (every aux image with identical channels): one channel optimised, replicated",
                  "feature error relative to the observed release's mean square (scale-free lambda); 'mse' is the "
                  "code's loss; both are the per-image mean over release elements (the code's normalisation)",
                  "plain Adam of the shared trainer instead of the code's AMSGrad with eps 1e-3",
                  "TV with eps 1e-8 inside the power (beta < 2 stays differentiable)",
                  "expectation over transformation: on a random release the feature term is averaged over 8 "
                  "separate white-box release calls per step (one when two calls give identical releases)",
                  "batched: per-image losses summed, so every image's iterates equal its lone inversion",
                  "the last iterate is reported (no selection against ground truth)"),
        code="https://github.com/zechenghe/Inverse_Collaborative_Inference",
    )

    def applicable(self, target: Target) -> str | None:
        return super().applicable(target) or white_box_or_reason(target)

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        inv = invert(target, trainer, cfg, self.seed)
        images = inv.images
        return AttackOutput(
            index=torch.arange(len(images)), images=images,
            budget={"steps": inv.cap, "images": len(images), "lr": cfg.lr, "tv_weight": cfg.tv_weight,
                    "tv_beta": cfg.tv_beta, "feature_loss": cfg.feature_loss, "init": cfg.init,
                    "parameterization": cfg.parameterization, "grayscale": inv.grayscale,
                    "eot_samples": inv.draws, "plateau_window": cfg.plateau_window,
                    "plateau_tol": cfg.plateau_tol, "ended_by": ended_by(inv.metrics),
                    "batch_size": min(cfg.batch_size, len(images))},
            metrics={**inv.metrics, "final_feature_mse": float(inv.mse.mean())},
        )
