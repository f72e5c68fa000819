"""``adversarial``: adversarial representation learning against proxy attackers trained alongside the client.

DeepObfuscator (Li, Guo, Wu, Xiong, Liu, Chen, arXiv 1909.04126) trains the client against a proxy image decoder
and a proxy classifier of a private attribute, in a min-max game: the proxies learn to invert the release and to
predict the attribute, the client learns the task while defeating them. SIMBA's ``deep_obfuscator`` implements it;
PAN and AIOI are variants. splitbench's choices [inf]:

- **The game.** Each batch, the proxies minimise their own losses on the current release (the decoder the pixel
  MSE in [0, 1], the classifier the cross-entropy of the sensitive attribute), and the client minimises
  ``task + lam * (attribute term - reconstruction MSE)``; the server minimises the task alone (simultaneous
  updates through the trainer's gradient routing; ``adversary_steps`` extra proxy updates per batch).
- **Attribute term = 1 - normalised entropy** of the proxy's prediction (0 when it is uniform), not the proxy's
  negative cross-entropy: maximising a cross-entropy is unbounded and is won by making the proxy confidently
  *wrong*, which still leaks the attribute (flip the labels); pushing the proxy to indifference does not.
- **Proxies**: the decoder is a small conv / transposed-conv network (``decoder_width``); the attribute proxy is a
  fresh copy of the server tail with a sensitive-class head (what the attribute attackers train). Which proxies
  play is ``proxies``: ``both`` (default; the reconstruction proxy alone where the scenario has no sensitive
  attribute), ``reconstruction`` or ``attribute``.
- ``lam = 0`` routes no proxy gradient to the client: its model is ``no_pruning``'s. The benchmark's attackers are
  fresh ones trained after the fact, never these proxies (a co-trained proxy that loses says nothing about a
  fresh attacker).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig
from benchmark.core.fields import field
from benchmark.kit.channels import as_spatial
from benchmark.kit.nets import ReleaseDecoder
from benchmark.models.backbones import fresh_server
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class AdversarialConfig(DefenseConfig):
    lam: float = field(1.0, "the knob lambda: weight of the proxy attackers' terms in the client's loss")
    proxies: Literal["both", "reconstruction", "attribute"] = field(
        "both", "which proxy attackers the client plays against (both: the reconstruction proxy alone when the "
                "scenario has no sensitive attribute)")
    adversary_steps: int = field(1, "proxy updates per batch (>1: extra proxy-only updates before the joint one)")
    decoder_width: int = field(32, "channels of the proxy decoder's first layer")

    def validate(self) -> None:
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if self.proxies not in ("both", "reconstruction", "attribute"):
            raise ValueError(f"proxies must be both, reconstruction or attribute, got {self.proxies!r}")
        if self.adversary_steps < 1 or self.decoder_width < 1:
            raise ValueError("adversary_steps >= 1 and decoder_width >= 1 required")


def normalised_entropy(logits: Tensor) -> Tensor:
    """Mean entropy of the softmax of ``logits`` ``[B, K]`` divided by log K (1 = uniform)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean() / math.log(logits.shape[1])


@register_defense("adversarial")
class Adversarial(Defense):
    Config = AdversarialConfig
    knob = "lam"
    knob_grid = (0.1, 0.3, 1.0, 3.0)
    variants = ("proxies",)  # each set of proxy adversaries is a row of its own
    card = MethodCard(
        paper="Li, Guo, Wu, Xiong, Liu, Chen: DeepObfuscator: Obfuscating Intermediate Representations with "
              "Privacy-Preserving Adversarial Learning on Smartphones (arXiv 1909.04126)",
        year=2019,
        url="https://arxiv.org/abs/1909.04126",
        threat_model="honest-but-curious server inverts or classifies activations trained against proxy attackers",
        knob="lam: weight of the proxy attackers' terms in the client's loss; higher = stronger obfuscation, less "
             "utility",
        inferred=("client loss task + lam * (1 - normalised entropy of the attribute proxy - decoder MSE); server "
                  "loss task only; proxies minimise their own losses, simultaneous updates",
                  "the attribute term pushes the proxy to indifference (entropy), not to a maximal cross-entropy "
                  "(unbounded, and won by a confidently wrong proxy that still leaks)",
                  "proxies: a width-32 conv decoder to [0, 1] pixels (MSE) and a fresh copy of the server tail "
                  "with a sensitive-class head",
                  "one proxy update per batch; trained from scratch together with the client (no warm-up)"),
        code="",
        notes="The benchmark attacks the released model with fresh attackers, never the co-trained proxies.",
    )

    def build(self) -> None:
        super().build()
        info, size = self.info, self.info.image_size
        z = self.probe_client()
        kind = self.config.proxies
        if kind == "attribute" and not info.has_sensitive:
            raise ValueError(f"proxies='attribute' needs a sensitive attribute; scenario {info.name!r} has none")
        self.use_attribute = kind in ("both", "attribute") and info.has_sensitive
        self.use_reconstruction = kind in ("both", "reconstruction")
        zs = as_spatial(z)
        self.decoder = ReleaseDecoder(zs.shape[1], zs.shape[-1], (info.channels, size, size),
                                      self.config.decoder_width) if self.use_reconstruction else None
        self.attribute_proxy = (fresh_server(self.backbone, info.num_sensitive_classes, size, self.seed + 2)
                                if self.use_attribute else None)

    def _proxies(self) -> dict[str, torch.nn.Module]:
        return {k: m for k, m in (("decoder", self.decoder), ("attribute_proxy", self.attribute_proxy))
                if m is not None}

    def losses(self, x: Tensor, y: Tensor, s: Tensor | None) -> dict[str, Tensor]:
        z = self.client(x)
        task = self.task_loss(self.server(z), y)
        out = {"server": task, "task_loss": task.detach()}
        privacy = torch.zeros((), device=z.device)
        if self.decoder is not None:
            target = self.info.denormalize(x).clamp(0, 1)
            mse = F.mse_loss(self.decoder(z).float(), target)
            out["decoder"], out["decoder_mse"] = mse, mse.detach()
            privacy = privacy - mse
        if self.attribute_proxy is not None:
            logits = self.attribute_proxy(z)
            ce = F.cross_entropy(logits.float(), s)
            out["attribute_proxy"], out["proxy_ce"] = ce, ce.detach()
            privacy = privacy + 1.0 - normalised_entropy(logits)
        out["client"] = task + self.config.lam * privacy if self.config.lam > 0 else task
        return out

    def fit(self, data, trainer):
        tc, cfg = self.train_config(), self.config
        players = {"client": self.client, "server": self.server, **self._proxies()}
        groups = {k: ParamGroup(list(m.parameters()), tc.lr, tc.weight_decay, tc.optimizer,
                                steps=cfg.adversary_steps if k in ("decoder", "attribute_proxy") else 1)
                  for k, m in players.items()}
        trainer.fit(groups, lambda b: self.losses(b.x, b.y, b.s), data.train, tc.epochs, tc.batch_size,
                    modules=list(players.values()), desc="adversarial")
