"""``random_pruning``: zero a fresh random set of int(C * ratio) channels on every forward pass.

Training draws one mask per batch, shared by the whole batch, with no rescaling, as in the official workshop code.
A deployed client (the frozen model: eval mode) draws one mask per sample: every query is its own forward pass, so
a batch of eval images must not share one draw (the official code evaluates with one mask per test batch, which
makes its test accuracy the luck of a few draws, and makes the samples of a batch dependent, so a bootstrap over
them would understate the spread). Only the surviving channels and a channel bitmap count as sent.
"""

from __future__ import annotations

import dataclasses

import torch

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field
from benchmark.kit.channels import (
    apply_channel_mask,
    channel_payload_bytes,
    num_channels,
    observed_mask,
    random_channel_mask,
)


@dataclasses.dataclass(frozen=True)
class RandomPruningConfig(DefenseConfig):
    prune_ratio: float = field(0.5, "fraction of channels zeroed per forward pass (rho)")

    def validate(self) -> None:
        if not 0.0 <= self.prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1), got {self.prune_ratio}")


@register_defense("random_pruning")
class RandomPruning(Defense):
    Config = RandomPruningConfig
    knob = "prune_ratio"
    knob_grid = (0.05, 0.1, 0.25, 0.5, 0.75)
    stochastic_release = True
    card = MethodCard(
        paper="Singh, Chopra, Sharma, Garza, Vepakomma, Raskar: Dynamic Channel Pruning for Privacy "
              "(workshop precursor of DISCO, CVPR 2021) - random-pruning baseline",
        year=2020,
        url="https://arxiv.org/abs/2012.03257",
        threat_model="honest-but-curious server sees the client activations with random channels zeroed",
        knob="prune_ratio: fraction of channels zeroed; higher = less sent, less utility",
        inferred=("a white-box attacker is given the observed channel mask (the zeroed channels are visible in "
                  "what is sent)",
                  "the deployed (frozen) client draws a mask per sample, training one per batch as the code does; "
                  "the code also evaluates with one mask per test batch",
                  "no co-trained adversary (its gradient never reaches the client)"),
        code="https://github.com/aidecentralized/InferenceBenchmark",
    )

    def _mask(self, z: torch.Tensor) -> torch.Tensor:
        c = num_channels(z)
        prune = int(c * self.config.prune_ratio)
        if self.client.training or prune == 0:
            return random_channel_mask(c, prune, z.device)  # training: one draw per batch, as the official code
        drop = torch.rand(z.shape[0], c, device=z.device).argsort(dim=1)[:, :prune]  # deployed: one per sample
        return torch.ones(z.shape[0], c, device=z.device).scatter_(1, drop, 0.0)

    def release(self, x):
        z = self.client(x)
        return apply_channel_mask(z, self._mask(z))

    def white_box_release(self, x, observed):
        return apply_channel_mask(self.client(x), observed_mask(observed))

    def payload_bytes(self, released):
        return channel_payload_bytes(released, observed_mask(released))

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.release, [self.client, self.server], "random_pruning")
