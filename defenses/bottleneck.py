"""``bottleneck``: a variational information bottleneck on the release (MID / VIB).

MID (Zou, Liu, Wang, Jiang, Yang, Liu, Gu, Li, "Mutual Information Regularization for Vertical Federated Learning",
arXiv 2301.01142; VFLAIR and SecretFlow implement it) bounds the mutual information between a party's input and what
it sends by a variational information bottleneck (Alemi et al. 2017): the client outputs a mean ``mu`` and a log
variance, sends a sample ``mu + sigma * eps``, and the loss adds ``beta * KL(N(mu, sigma^2) || N(0, I))``, an upper
bound on the information the release carries. splitbench's choices [inf]:

- **Where.** The backbone's client computes its features ``h``; a 1 x 1 convolution (a linear layer for token
  releases) maps them to ``mu`` and ``log sigma^2`` of the same shape as ``h``, so the release keeps the shape the
  server tail reads. The head is part of the client (it is costed with it).
- **KL** is averaged over the release's elements (not summed), so ``beta`` means the same on every backbone and
  split; the task loss is the usual cross-entropy, and client, head and server train together from scratch.
- **What is sent.** ``release = sample`` (default) sends a fresh sample on every query (stochastic: the suite's
  release draws, and white-box attackers average over draws, i.e. expectation over transformation); ``mean`` sends
  ``mu`` itself (deterministic: the bottleneck then only shapes training, which is what some implementations ship).
- The log variance is clamped to [-10, 10] for numerical safety.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig
from benchmark.core.fields import field
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class BottleneckConfig(DefenseConfig):
    beta: float = field(0.01, "the knob: weight of KL(N(mu, sigma^2) || N(0, I)) per release element in the loss")
    release: Literal["sample", "mean"] = field("sample", "what the client sends: a fresh sample, or the mean")

    def validate(self) -> None:
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if self.release not in ("sample", "mean"):
            raise ValueError(f"release must be 'sample' or 'mean', got {self.release!r}")


class GaussianHead(nn.Module):
    """Features -> (mu, log variance) of the same shape (1 x 1 conv on maps, linear on tokens)."""

    def __init__(self, shape: torch.Size):
        super().__init__()
        self.spatial = len(shape) == 3
        c = shape[0] if self.spatial else shape[-1]
        self.proj = nn.Conv2d(c, 2 * c, 1) if self.spatial else nn.Linear(c, 2 * c)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        out = self.proj(h)
        mu, logvar = out.chunk(2, dim=1 if self.spatial else -1)
        return mu, logvar.clamp(-10.0, 10.0)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over elements of KL(N(mu, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).mean()


@register_defense("bottleneck")
class Bottleneck(Defense):
    Config = BottleneckConfig
    knob = "beta"
    knob_grid = (0.001, 0.01, 0.1, 1.0)
    variants = ("release",)  # sending a sample and sending the mean are two rows
    stochastic_release = True  # with release=mean the draws coincide (and white-box attacks detect it: one draw)
    card = MethodCard(
        paper="Zou, Liu, Wang, Jiang, Yang, Liu, Gu, Li: Mutual Information Regularization for Vertical Federated "
              "Learning (arXiv 2301.01142)",
        year=2023,
        url="https://arxiv.org/abs/2301.01142",
        threat_model="honest-but-curious server sees a sample of a Gaussian whose information about the input is "
                     "penalised",
        knob="beta: weight of the KL bottleneck; higher = less information in the release, less utility",
        inferred=("a 1x1 conv (linear for tokens) head on the client's features gives mu and log variance of the "
                  "same shape, so the server tail is unchanged; the head is costed as client",
                  "KL averaged over release elements, not summed",
                  "a fresh sample is sent per query by default (stochastic; EOT for white-box attackers); "
                  "release=mean sends mu",
                  "trained from scratch with the task (MID regularises a pre-trained VFL party)"),
        code="",
        notes="VFLAIR's and SecretFlow's mid implement the bottleneck; there the bottleneck is an MLP on vectors.",
    )

    def build(self) -> None:
        super().build()
        self.head = GaussianHead(self.probe_client().shape[1:])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.client(x))

    def release(self, x: Tensor) -> Tensor:
        return self._draw(*self.encode(x))

    def _draw(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """One release from the encoded (mu, logvar): mu itself when releasing the mean, else a fresh sample."""
        if self.config.release == "mean" and not self.training:
            return mu
        eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)  # contiguous draw: layout-independent
        return mu + (0.5 * logvar).exp() * eps

    def white_box_release(self, x: Tensor, observed: Tensor) -> Tensor:
        return self.release(x)

    def white_box_draws(self, x: Tensor, observed: Tensor, draws: int) -> list[Tensor]:
        mu, logvar = self.encode(x)  # deterministic: encoded once, eps drawn per release as separate calls would
        return [self._draw(mu, logvar) for _ in range(draws)]

    def undefended_release(self, x: Tensor) -> Tensor:
        return self.encode(x)[0]

    def fit(self, data, trainer):
        tc, beta = self.train_config(), self.config.beta
        modules = [self.client, self.head, self.server]
        params = [p for m in modules for p in m.parameters()]

        def step(batch):
            mu, logvar = self.encode(batch.x)
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
            task = self.task_loss(self.predict(z), batch.y)
            kl = gaussian_kl(mu, logvar)
            return {"model": task + beta * kl, "kl": kl.detach()}

        trainer.fit({"model": ParamGroup(params, tc.lr, tc.weight_decay, tc.optimizer)}, step, data.train,
                    tc.epochs, tc.batch_size, modules=modules, desc="bottleneck")
