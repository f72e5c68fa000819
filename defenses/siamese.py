"""``siamese``: a contrastive loss on the release, so that it keeps the task's classes apart and little else.

Osia et al. (A Hybrid Deep Learning Architecture for Privacy-Preserving Mobile Analytics, IEEE IoT-J 2020, arXiv
1703.02952) fine-tune the client with a Siamese (contrastive) objective so that the released feature separates the
task's classes and carries less of anything else; SIMBA's ``siamese_embedding`` adds the contrastive loss of
Hadsell, Chopra, LeCun (2006) to the task loss with a weight ``alpha`` and a ``margin``. splitbench's choices [inf]:

- **Pairs** are all pairs of the training batch (``B (B - 1) / 2`` at batch ``B``: cost ``O(B^2)``, negligible at
  the suites' 64): a pair of the same task class adds ``d^2``, a pair of different classes ``max(0, margin - d)^2``,
  averaged over the pairs of each kind and summed.
- **Distance** ``d`` is the root-mean-square difference of the two flattened releases (Euclidean distance divided by
  the square root of the release's size), so one ``margin`` means the same on every backbone and split.
- **Loss** ``task + alpha * contrastive``, client and server trained together from scratch (the paper fine-tunes a
  pre-trained network; splitbench's tracks train from scratch); ``alpha = 0`` is ``no_pruning``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field


@dataclasses.dataclass(frozen=True)
class SiameseConfig(DefenseConfig):
    alpha: float = field(1.0, "the knob: weight of the contrastive loss on the release")
    margin: float = field(1.0, "distance (root-mean-square per element) beyond which different-class pairs cost "
                               "nothing")

    def validate(self) -> None:
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0, got {self.margin}")


def rms_distances(z: Tensor) -> Tensor:
    """``[B, B]`` root-mean-square distances between the flattened rows of ``z``."""
    flat = z.flatten(1).float()
    return torch.cdist(flat, flat) / math.sqrt(flat.shape[1])


def contrastive_loss(z: Tensor, y: Tensor, margin: float) -> Tensor:
    """Mean ``d^2`` over same-label pairs plus mean ``max(0, margin - d)^2`` over different-label pairs."""
    d = rms_distances(z)
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same = (y[:, None] == y[None, :]) & upper
    diff = (y[:, None] != y[None, :]) & upper
    loss = d.new_zeros(())
    if same.any():
        loss = loss + d[same].pow(2).mean()
    if diff.any():
        loss = loss + (margin - d[diff]).clamp_min(0).pow(2).mean()
    return loss


@register_defense("siamese")
class Siamese(Defense):
    Config = SiameseConfig
    knob = "alpha"
    knob_grid = (0.1, 0.3, 1.0, 3.0)
    card = MethodCard(
        paper="Osia, Shamsabadi, Sajadmanesh, Taheri, Katevas, Rabiee, Lane, Haddadi: A Hybrid Deep Learning "
              "Architecture for Privacy-Preserving Mobile Analytics (IEEE Internet of Things Journal 2020)",
        year=2020,
        url="https://arxiv.org/abs/1703.02952",
        threat_model="honest-but-curious server sees activations trained to separate only the task's classes",
        knob="alpha: weight of the contrastive loss; higher = release closer to a class code, less of the input",
        inferred=("all pairs of each training batch (O(B^2)); Hadsell et al.'s contrastive loss, the two pair kinds "
                  "averaged separately",
                  "distance = RMS difference of the flattened releases, margin 1.0 in those units",
                  "trained from scratch with the task loss (the paper fine-tunes a pre-trained network)"),
        code="",
        notes="SIMBA's siamese_embedding implements the same loss (alpha, margin).",
    )

    def fit(self, data, trainer):
        margin = self.config.margin
        train_task(self, data, trainer, self.release, [self.client, self.server], "siamese",
                   penalty=lambda batch, z: contrastive_loss(z, batch.y, margin), weight=self.config.alpha)
