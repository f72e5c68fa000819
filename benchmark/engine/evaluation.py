"""What a trained defended model is worth before any attack: utility (per eval and validation sample, over
release draws), the eval releases the attacks will get, and the client's cost.

Releases of the eval split are computed **once per model** (once per draw for stochastic defenses) and shared by
every attack of that model, so attacks are never handed the eval images themselves. Utility is the designated
model's accuracy on those same releases; the validation split is released and scored the same way, for the
defender's choices (knob selection) that must never read eval.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.api.contract import Defense
from benchmark.data.types import ScenarioData, Split
from benchmark.kit.cost import count_macs, count_params_used, latency_ms
from benchmark.measure.metrics import DEPLOYED
from benchmark.models.trainer import Trainer, place


@dataclasses.dataclass
class ModelEvaluation:
    """Per-sample utility and the eval releases of one trained model.

    Attributes:
        utility_correct: ``[N_eval]`` designated-model correctness per eval sample, averaged over draws.
        val_correct: ``[N_val]`` the same on the defender's validation split.
        releases: one ``[N_eval, ...]`` tensor of eval releases per draw.
        payload_bytes: mean bytes per sample actually sent.
    """

    utility_correct: np.ndarray
    val_correct: np.ndarray
    releases: list[Tensor]
    payload_bytes: float

    @property
    def draws(self) -> int:
        return len(self.releases)

    def metrics(self) -> dict[str, float]:
        return {"utility": float(self.utility_correct.mean()), "val_utility": float(self.val_correct.mean()),
                "eval_samples": len(self.utility_correct), "val_samples": len(self.val_correct),
                "release_draws": self.draws, "payload_bytes": self.payload_bytes}

    def attack_releases(self, count: int | None, draws: int) -> tuple[Tensor, np.ndarray]:
        """The first ``count`` eval samples' releases of the first ``draws`` draws, stacked draw after draw, and
        the eval sample id of each row."""
        n = len(self.utility_correct) if count is None else count
        rows = torch.cat([r[:n] for r in self.releases[:draws]])
        return rows, np.tile(np.arange(n), draws)


def draw_seed(seed: int, split: str, draw: int) -> int:
    """The RNG seed of release draw ``draw`` of ``split`` for a model of seed ``seed`` (stable across runs)."""
    from benchmark.core.fields import config_hash

    return int(config_hash([seed, split, draw, "release"], 8), 16) % (2 ** 31)


@torch.no_grad()
def release_and_score(defense: Defense, split: Split, trainer: Trainer, seed: int, name: str, draws: int,
                      keep: bool) -> tuple[np.ndarray, list[Tensor], float]:
    """Release ``split`` ``draws`` times (seeded per draw) and score the designated model on each release.

    Returns per-sample correctness averaged over draws, the releases per draw (when ``keep``), and the mean payload.
    """
    correct = np.zeros(len(split))
    kept, payload, count = [], 0.0, 0
    for r in range(draws):
        torch.manual_seed(draw_seed(seed, name, r))
        outs, hits = [], []
        for batch in split.batches(trainer.eval_batch_size):
            with trainer.autocast():
                z = defense.release(batch.x)
                hits.append((defense.predict(z).float().argmax(1) == batch.y).float().cpu())
            z = z.float()
            payload += float(defense.payload_bytes(z).float().sum())
            count += len(z)
            if keep:
                outs.append(z)
        correct += torch.cat(hits).numpy()
        if keep:
            kept.append(torch.cat(outs))
    return correct / draws, kept, payload / max(count, 1)


def evaluate(defense: Defense, data: ScenarioData, trainer: Trainer, seed: int, draws: int) -> ModelEvaluation:
    """Utility on eval and validation (``draws`` release draws; 1 for deterministic defenses) and the eval
    releases the attacks will share."""
    draws = draws if defense.stochastic_release else 1
    util, releases, payload = release_and_score(defense, data.eval, trainer, seed, "eval", draws, keep=True)
    val, _, _ = release_and_score(defense, data.val, trainer, seed, "val", draws, keep=False)
    return ModelEvaluation(util.astype(np.float32), val.astype(np.float32), releases, payload)


#: the version of what :func:`client_cost` and :func:`deployed_cost` measure; the runner caches each model's cost
#: under it, so a change of the measure (e.g. the client's cost taken on ``Defense.sent``) is measured again
#: rather than read from a cache written before it
COST_VERSION = "2"


@torch.no_grad()
def client_cost(defense: Defense, data: ScenarioData, trainer: Trainer, latency_batch: int, repeats: int
                ) -> dict[str, float]:
    """The client's cost: latency at batch 1 and at ``latency_batch`` (per sample), server latency, parameters and
    multiply-accumulates of everything that runs on the client."""
    x_all = data.info.normalize(data.eval.images[:latency_batch])
    m1 = defense.sent(x_all[:1])
    cost = _release_cost(defense, x_all, trainer, repeats)

    def server(m: Tensor) -> Tensor:
        with trainer.autocast():
            return defense.serve(m)

    s1 = latency_ms(server, m1, repeats=repeats)
    cost.update({"server_ms_b1_p50": s1[0], "server_ms_b1_p90": s1[1]})
    return cost


def _release_cost(defense: Defense, x_all: Tensor, trainer: Trainer, repeats: int) -> dict[str, float]:
    """What the client device runs (:meth:`~benchmark.api.contract.Defense.sent`) costs."""
    x1 = x_all[:1]

    def client(x: Tensor) -> Tensor:
        with trainer.autocast():
            return defense.sent(x)

    c1 = latency_ms(client, x1, repeats=repeats)
    cb = latency_ms(client, x_all, repeats=max(1, repeats // 2))
    n = len(x_all)
    return {
        "client_params": count_params_used(defense.sent, x1, defense),
        "client_macs": count_macs(defense.sent, x1),
        "client_ms_b1_p50": c1[0], "client_ms_b1_p90": c1[1],
        "client_ms_bB_p50": cb[0] / n, "client_ms_bB_p90": cb[1] / n,
        "latency_batch": n,
    }


def deployed_client(defense: Defense, target: Any, device: torch.device, batch: int) -> tuple[Defense, Tensor]:
    """``defense`` deployed on ``target``'s real backbone (a suite's :class:`~benchmark.suites.model.DeploymentSpec`;
    :meth:`Defense.deployed_on`) on ``device``, and ``batch`` synthetic normalized inputs of its image size (what
    is timed does not depend on pixel values). Raises :class:`~benchmark.core.errors.NotApplicable` like
    ``deployed_on``."""
    copy = place(defense.deployed_on(target.backbone, target.image_size), device)
    info = copy.info
    x = torch.rand(batch, info.channels, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0))
    return copy, info.normalize(x.to(device))


def deployed_cost(defense: Defense, target: Any, trainer: Trainer, repeats: int) -> dict[str, float]:
    """The cost of ``defense`` deployed on ``target``'s real backbone (:func:`deployed_client`), timed at batch 1
    and ``target.batch``. Keys are :func:`client_cost`'s client figures under ``deployed/NAME@SPLIT/``, plus the
    image size."""
    copy, x = deployed_client(defense, target, trainer.device, target.batch)
    with torch.no_grad():
        cost = _release_cost(copy, x, trainer, repeats)
    cost["image_size"] = target.image_size
    return {f"{DEPLOYED}{target.backbone.label}/{k}": float(v) for k, v in cost.items()}
