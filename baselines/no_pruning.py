"""``no_pruning``: release the client's activations as they are (Singh et al.'s (2020) "no pruning" baseline).

The client and server are trained end to end on the task. The workshop code also co-trains an adversary, but
its gradient never reaches the client, so it cannot change what is released; splitbench omits it and measures
leakage with fresh attackers instead.
"""

from __future__ import annotations

import dataclasses

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field


@dataclasses.dataclass(frozen=True)
class NoPruningConfig(DefenseConfig):
    prune_ratio: float = field(0.0, "fraction of channels removed; always 0 for this baseline")

    def validate(self) -> None:
        if self.prune_ratio != 0.0:
            raise ValueError(f"no_pruning has prune_ratio 0 by definition, got {self.prune_ratio}")


@register_defense("no_pruning")
class NoPruning(Defense):
    Config = NoPruningConfig
    knob = "prune_ratio"
    card = MethodCard(
        paper="Singh, Chopra, Sharma, Garza, Vepakomma, Raskar: Dynamic Channel Pruning for Privacy "
              "(workshop precursor of DISCO, CVPR 2021) - no-pruning baseline",
        year=2020,
        url="https://arxiv.org/abs/2012.03257",
        threat_model="honest-but-curious server sees the raw client activations",
        knob="none (prune_ratio fixed at 0)",
        inferred=("no co-trained adversary: its gradient is stopped before the client, so it cannot change the "
                  "release",),
        code="https://github.com/aidecentralized/InferenceBenchmark",
    )

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.release, [self.client, self.server], "no_pruning")
