"""``optimization``: He et al.'s regularized maximum-likelihood (rMLE) white-box inversion.

The attacker knows the client and the defense's release function (white box: for channel-pruning defenses the
mask it observed is applied inside) and searches the input space for an image whose release matches what the
server received::

    x* = argmin_x  mean_j (release(x)_j - z_j)^2 / s  +  lambda * TV_beta(x)
    TV_beta(x) = mean_{c,i,j} ((x[c,i+1,j] - x[c,i,j])^2 + (x[c,i,j+1] - x[c,i,j])^2 + eps)^(beta / 2)

``x`` is the normalized model input (what the official code optimises) and the result is returned
un-normalized and clamped to [0, 1]. The last iterate is reported: nothing is selected against ground truth.

Batched inversion: a chunk of ``batch_size`` images is one optimisation whose loss is the **sum** of the
per-image losses. Each image's gradient then depends on that image alone, and Adam's update is elementwise, so
the iterates equal those of inverting every image on its own (``batch_size=1``) up to float rounding (tested).

Defaults follow the paper where it speaks (constant grey start, Adam, lr 1e-2, 500 iterations for shallow
splits) and the official code where it is silent (per-image mean of the feature error, squared-difference TV
with beta = 2). Inferred choices, recorded in the card:

- ``feature_loss="relative"``: the feature error is divided by the observed release's mean square (s above),
  so that one lambda fits every split and a defense cannot weaken the attack by merely scaling its release
  down; ``"mse"`` (s = 1) is the official code's loss, with its per-split weights (0 at conv11, 10 at ReLU22,
  1e3 at ReLU32), which ``paper-he19`` uses.
- ``tv_weight=1``: chosen from {0.1, 1, 10} by inverting the attacker's own *aux* images on digits (the
  white-box attacker can release and invert images it holds), never eval images.
- plain Adam (betas 0.9/0.999, eps 1e-8) instead of the code's AMSGrad with eps 1e-3 (the shared trainer's
  optimizer; the paper says "Adam").
- TV is computed on the normalized input, with ``eps`` = 1e-8 inside the power so beta < 2 stays
  differentiable at a constant image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark import MethodCard, register_attack
from benchmark.config import field
from benchmark.errors import AccessError
from benchmark.interfaces import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.trainer import ParamGroup, Trainer

TV_EPS = 1e-8


def full_precision(t: Tensor) -> Tensor:
    """``t`` in at least float32 (bf16 / fp16 values from autocast are upcast; float64 stays float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def total_variation(x: Tensor, beta: float = 2.0, eps: float = TV_EPS) -> Tensor:
    """Per-image total variation ``[B]`` of images ``[B, C, H, W]`` (mean over channels and positions)."""
    dh = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dw = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    sq = full_precision(dh).pow(2) + full_precision(dw).pow(2)
    tv = sq if beta == 2.0 else (sq + eps).pow(beta / 2.0)
    return tv.flatten(1).mean(1)


def release_mse(released: Tensor, observed: Tensor) -> Tensor:
    """Per-image mean squared error ``[B]`` between a release and the observed one."""
    return (full_precision(released) - full_precision(observed)).pow(2).flatten(1).mean(1)


def feature_scale(kind: str, observed: Tensor) -> Tensor:
    """Per-image divisor of the feature loss: 1 ("mse") or the observed release's mean square ("relative")."""
    if kind == "mse":
        return torch.ones(len(observed), device=observed.device)
    return full_precision(observed).pow(2).flatten(1).mean(1).clamp_min(1e-12)


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


@dataclasses.dataclass(frozen=True)
class RMLEConfig:
    """Hyperparameters of the rMLE inversion (defaults: the paper's shallow-split settings, see the module)."""

    max_images: int = field(64, "invert the first max_images eval samples")
    steps: int = field(500, "Adam iterations per image (paper: 500 on shallow splits, 5000 on deep ones)")
    lr: float = field(1e-2, "Adam learning rate (paper and code: 1e-2; the paper uses 1e-3 on deep splits)")
    tv_weight: float = field(1.0, "[inferred] lambda of the TV prior (1 with the relative feature loss; the "
                                  "code's, with 'mse': 0 at conv11, 10 at ReLU22, 1e3 at ReLU32)")
    tv_beta: float = field(2.0, "[inferred] TV exponent beta (code: 2, squared differences; paper: 1)")
    feature_loss: Literal["mse", "relative"] = field(
        "relative", "[inferred] feature term: per-image mean squared error divided by the observed release's "
                    "mean square (lambda independent of the release's scale), or the code's plain 'mse'")
    init: Literal["grey", "zeros", "uniform"] = field(
        "grey", "start: constant grey 0.5 image (paper), zeros in normalized space (code), or uniform noise in "
                "[0, 1] (SIMBA's variant), drawn per image from its own seed")
    batch_size: int = field(256, "images inverted together in one optimisation (per-image losses summed); "
                                 "1 inverts image by image (same result, slower)")

    def validate(self) -> None:
        if self.max_images < 1 or self.steps < 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("max_images >= 1, steps >= 0, lr > 0 and batch_size >= 1 are required")
        if self.tv_weight < 0 or self.tv_beta <= 0:
            raise ValueError(f"tv_weight must be >= 0 and tv_beta > 0, got {self.tv_weight}, {self.tv_beta}")


def initial_images(init: str, shape: tuple[int, ...], first: int, seed: int, target: Target,
                   device: torch.device) -> Tensor:
    """Starting points in normalized space for eval images ``first .. first + shape[0] - 1``."""
    n = shape[0]
    if init == "zeros":
        return torch.zeros(shape, device=device)
    if init == "grey":
        return target.info.normalize(torch.full(shape, 0.5, device=device))
    draws = [torch.rand(shape[1:], generator=torch.Generator().manual_seed(image_seed(seed, first + i)))
             for i in range(n)]
    return target.info.normalize(torch.stack(draws).to(device))


def invert(target: Target, trainer: Trainer, cfg: RMLEConfig, seed: int) -> tuple[Tensor, Tensor]:
    """Run rMLE on the first ``cfg.max_images`` eval releases; return (images in [0, 1], final feature MSE)."""
    wb = target.white_box()
    observed = target.eval_releases(cfg.max_images)
    n = len(observed)
    shape = (n, *target.image_shape)
    images, losses = [], []
    for part in chunks(n, cfg.batch_size):
        z = observed[part]
        x = nn.Parameter(initial_images(cfg.init, (len(z), *shape[1:]), part.start, seed, target, z.device))
        scale = feature_scale(cfg.feature_loss, z)

        def step(_i: int, x: nn.Parameter = x, z: Tensor = z, scale: Tensor = scale) -> dict[str, Tensor]:
            feat = release_mse(wb.release(x, z), z) / scale
            return {"x": (feat + cfg.tv_weight * total_variation(x, cfg.tv_beta)).sum()}

        trainer.optimize({"x": ParamGroup([x], cfg.lr)}, step, cfg.steps, desc="rmle")
        with torch.no_grad(), trainer.autocast():
            losses.append(release_mse(wb.release(x, z), z))
        images.append(target.info.denormalize(x.detach()).clamp(0, 1))
    return torch.cat(images), torch.cat(losses)


@register_attack("optimization")
class RMLEInversion(Attack):
    """White-box rMLE inversion, a whole batch of eval images per optimisation."""

    Config = RMLEConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.WHITE_BOX})
    smoke_config = {"max_images": 8, "steps": 20}
    card = MethodCard(
        paper="He, Zhang, Lee: Model Inversion Attacks against Collaborative Inference (ACSAC 2019), "
              "white-box regularized maximum likelihood estimation (rMLE)",
        year=2019,
        url="https://doi.org/10.1145/3359789.3359824",
        threat_model="white-box: the server knows the client's weights and the defense's release function "
                     "(and the channel mask it observed) and optimises the input to match the release",
        knob="budget: steps x images (Adam iterations per image)",
        inferred=("feature error relative to the observed release's mean square (scale-free lambda); 'mse' is "
                  "the code's loss",
                  "tv_weight=1, chosen on the attacker's own aux images (digits), never eval; tv_beta=2 as in the "
                  "code (the paper's beta=1 comes with no weight)",
                  "plain Adam of the shared trainer instead of the code's AMSGrad with eps 1e-3",
                  "TV on the normalized input with eps 1e-8 inside the power; feature loss = per-image mean "
                  "squared error (the code's normalisation)",
                  "batched: per-image losses summed, so every image's iterates equal its lone inversion",
                  "the last iterate is reported (no selection against ground truth)"),
        code="https://github.com/zechenghe/Inverse_Collaborative_Inference",
    )

    def applicable(self, target: Target) -> str | None:
        return super().applicable(target) or white_box_or_reason(target)

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        images, feature_mse = invert(target, trainer, cfg, self.seed)
        return AttackOutput(
            index=torch.arange(len(images)), images=images,
            budget={"steps": cfg.steps, "images": len(images), "lr": cfg.lr, "tv_weight": cfg.tv_weight,
                    "tv_beta": cfg.tv_beta, "feature_loss": cfg.feature_loss, "init": cfg.init,
                    "batch_size": min(cfg.batch_size, len(images))},
            metrics={"final_feature_mse": float(feature_mse.mean())},
        )
