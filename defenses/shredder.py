"""``shredder``: learned additive noise on the release, as large as the frozen task network tolerates.

Shredder (Mireshghallah, Taram, Ramrakhya, Jalali, Tullsen, Esmaeilzadeh, ASPLOS 2020, arXiv 1905.11814) keeps a
trained network fixed and learns a noise tensor in the shape of the cut-layer activation, with the loss
``cross-entropy - lambda * noise magnitude``: the noise grows wherever the network does not need the signal. At
inference the client samples noise from what was learned. The official code (``mireshghallah/shredder``, and a later
self-supervised version) is the reference; splitbench writes its own. Its choices [inf]:

1. **Task training first.** Client and server are trained end to end on the task exactly as ``no_pruning``; then
   both are frozen (eval mode, no gradient) and only the noise is learned, for ``noise_epochs``.
2. **The noise is a distribution, not a tensor.** Each release element gets zero-mean Laplace noise with a learned
   scale (reparameterised: ``scale * unit Laplace draw``), sampled afresh on every query; the scales are learned
   with the draws, so what is learned is what is sampled at inference. The paper's learned *mean* is left out:
   a fixed offset is known to the server (it holds the model) and hides nothing.
3. **Magnitude** is the mean learned scale relative to the clean release's standard deviation on the training
   split (measured once after task training, stored with the model), so ``lambda`` means the same on every
   backbone and split; the noise in release units is that relative scale times the stored deviation.
4. The scales start at ``init_scale`` (relative) and are optimised with Adam (``noise_lr``) on their logarithm, so
   they stay positive.

Stochastic: evaluated over the suite's release draws, and white-box attackers get a release that draws afresh on
every call (expectation over transformation).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class ShredderConfig(DefenseConfig):
    lam: float = field(0.1, "the knob lambda: weight of the noise magnitude the loss rewards")
    noise_epochs: int = field(3, "epochs of noise learning with the task network frozen")
    noise_lr: float = field(0.05, "Adam learning rate of the log noise scales")
    init_scale: float = field(0.1, "initial noise scale relative to the clean release's standard deviation")

    def validate(self) -> None:
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if self.noise_epochs < 0 or self.noise_lr <= 0 or self.init_scale <= 0:
            raise ValueError("noise_epochs >= 0, noise_lr > 0 and init_scale > 0 required")


def unit_laplace(shape: torch.Size, like: Tensor) -> Tensor:
    """Laplace(0, 1) draws of ``shape`` (contiguous, whatever ``like``'s memory layout)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(1e-7, 1 - 1e-7) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs())


class LearnedNoise(nn.Module):
    """Per-element zero-mean Laplace noise with learned scales (relative to ``ref_std``)."""

    def __init__(self, shape: torch.Size, init_scale: float):
        super().__init__()
        self.log_scale = nn.Parameter(torch.full(tuple(shape), math.log(init_scale)))
        self.register_buffer("ref_std", torch.ones(()))

    def relative_scale(self) -> Tensor:
        return self.log_scale.exp()

    def forward(self, z: Tensor) -> Tensor:
        scale = self.relative_scale() * self.ref_std
        return z + scale * unit_laplace(z.shape, z)


@register_defense("shredder")
class Shredder(Defense):
    Config = ShredderConfig
    knob = "lam"
    knob_grid = (0.01, 0.1, 1.0)
    stochastic_release = True
    smoke_config = {"noise_epochs": 1}
    card = MethodCard(
        paper="Mireshghallah, Taram, Ramrakhya, Jalali, Tullsen, Esmaeilzadeh: Shredder: Learning Noise "
              "Distributions to Protect Inference Privacy (ASPLOS 2020)",
        year=2020,
        url="https://arxiv.org/abs/1905.11814",
        threat_model="honest-but-curious server sees the client activations plus learned random noise",
        knob="lam: weight of the noise magnitude rewarded in the noise-learning loss; higher = more noise, less "
             "utility",
        inferred=("task network trained end to end first (as no_pruning), then frozen while the noise is learned",
                  "the noise is zero-mean Laplace with a learned per-element scale, sampled afresh per query; the "
                  "paper's learned mean is omitted (a fixed offset is known to the server)",
                  "magnitude = mean learned scale relative to the clean release's std on the training split",
                  "3 noise epochs, Adam 0.05 on log scales, initial relative scale 0.1",
                  "white-box attackers get a release drawing fresh noise per call (EOT)"),
        code="https://github.com/mireshghallah/shredder",
        notes="Stochastic: evaluated over the suite's release draws and attacked with expectation over "
              "transformation.",
    )

    def build(self) -> None:
        super().build()
        self.noise = LearnedNoise(self.probe_client().shape[1:], self.config.init_scale)

    def release(self, x: Tensor) -> Tensor:
        return self.noise(self.client(x))

    def white_box_release(self, x: Tensor, observed: Tensor) -> Tensor:
        return self.release(x)  # the learned scales are public to a white-box attacker, the draw is not

    def white_box_draws(self, x: Tensor, observed: Tensor, draws: int) -> list[Tensor]:
        z = self.client(x)  # deterministic: computed once, the noise drawn per release as separate calls would
        return [self.noise(z) for _ in range(draws)]

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.client, [self.client, self.server], "shredder (task)")
        frozen = [p for m in (self.client, self.server) for p in m.parameters()]
        for p in frozen:
            p.requires_grad_(False)
        self.client.eval()
        self.server.eval()
        with torch.no_grad():
            stds = trainer.map(lambda b: self.client(b.x).flatten(1).std(dim=1), data.train)
        self.noise.ref_std.fill_(float(stds.mean()))
        cfg, lam = self.config, self.config.lam

        def step(batch):
            with torch.no_grad():
                z = self.client(batch.x)
            loss = self.task_loss(self.server(self.noise(z)), batch.y)
            magnitude = self.noise.relative_scale().mean()
            return {"noise": loss - lam * magnitude, "relative_scale": magnitude.detach()}

        trainer.fit({"noise": ParamGroup(list(self.noise.parameters()), cfg.noise_lr, 0.0, "adam")}, step,
                    data.train, cfg.noise_epochs, self.train_config().batch_size, modules=[self.noise],
                    desc="shredder (noise)", seed_offset=7)
        for p in frozen:
            p.requires_grad_(True)
