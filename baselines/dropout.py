"""``dropout``: every query zeroes each element of the release independently with probability ``p``.

He, Zhang, Lee (IEEE IoT-J 2021) evaluate dropout on the released features as a defense (GLASS's code cites their
ACSAC 2019 paper for it), and GLASS's and DRAG's evaluations include it. Unlike ``random_pruning``, which zeroes
whole channels (one mask per batch in training, per sample once deployed), dropout zeroes single elements and
redraws on every query. splitbench's
choices [inf]:

- **Rescaled** (inverted dropout, as ``torch.nn.Dropout``): survivors are multiplied by ``1 / (1 - p)`` so the
  release keeps its expected value; the server never sees an unscaled release.
- **Training**: client and server learn the task end to end through the same dropout (a fresh draw per batch
  element); the deployed client draws afresh on every query.
- **What a white-box attacker knows**: which elements arrived as zero (the release shows it). Its release function
  applies that observed zero pattern to the client's output, so it is deterministic given the observation and
  needs no expectation over draws (like ``random_pruning``); elements that are zero because the client's own
  activation was zero are indistinguishable from dropped ones and are masked the same way.
- **Bytes sent**: the smaller of the dense tensor and a sparse one (the non-zero values plus a one-bit-per-element
  map), what a sender would choose.
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
class DropoutConfig(DefenseConfig):
    p: float = field(0.5, "the knob: probability that each release element is zeroed on a query")

    def validate(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {self.p}")


@register_defense("dropout")
class Dropout(Defense):
    Config = DropoutConfig
    knob = "p"
    knob_grid = (0.25, 0.5, 0.75, 0.9)
    stochastic_release = True
    card = MethodCard(
        paper="He, Zhang, Lee: Attacking and Protecting Data Privacy in Edge-Cloud Collaborative Inference Systems "
              "(IEEE Internet of Things Journal 8(12), 2021) - dropout defense",
        year=2021,
        url="https://doi.org/10.1109/JIOT.2020.3022358",
        threat_model="honest-but-curious server sees the client activations with a fresh random set of elements "
                     "zeroed on every query",
        knob="p: probability that each element is zeroed; higher = less sent, less utility",
        inferred=("survivors rescaled by 1/(1-p) (inverted dropout, as torch.nn.Dropout)",
                  "the same dropout while client and server train end to end, a fresh draw per query once deployed",
                  "a white-box attacker applies the zero pattern it observed (deterministic given the observation, "
                  "so no expectation over draws); natural zeros are masked like dropped ones",
                  "bytes sent: the smaller of dense and sparse (non-zero values plus a one-bit-per-element map)"),
        code="",
        notes="Stochastic: evaluated over the suite's release draws.",
    )

    def _scale(self) -> float:
        return 1.0 / (1.0 - self.config.p)

    def release(self, x: Tensor) -> Tensor:
        z = self.client(x)
        if self.config.p == 0:
            return z
        keep = torch.rand(z.shape, device=z.device) >= self.config.p  # contiguous draw: layout-independent
        return z * keep.to(z.dtype) * self._scale()

    def white_box_release(self, x: Tensor, observed: Tensor) -> Tensor:
        z = self.client(x)
        if self.config.p == 0:
            return z
        return z * (observed != 0).to(z.dtype) * self._scale()

    def payload_bytes(self, released: Tensor) -> Tensor:
        per_sample = released[0].numel()
        dense = float(per_sample * released.element_size())
        sparse = (released != 0).flatten(1).sum(1).float().cpu() * released.element_size() + math.ceil(per_sample / 8)
        return sparse.clamp(max=dense)

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.release, [self.client, self.server], "dropout")
