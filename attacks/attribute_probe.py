"""``attribute_probe``: a linear probe of the sensitive attribute on the server's own penultimate features.

The server runs the designated model on every release it receives (``Access.SERVER_MODEL``: a copy of its trained
weights, never the client). This attack keeps that copy frozen, reads the features its final classifier reads
(the model with its classifier replaced by the identity: timm's ``forward_head(forward_features(x),
pre_logits=True)``, pooled, after any head norm), standardises them with the mean and standard deviation of the
fit part of the attacker's aux data, and trains one linear layer on them to predict the sensitive class (Alain
and Bengio's linear probe). It measures how much of the attribute the server's own representation carries
linearly, with nothing trained but the probe. Features of deterministic releases are computed once. For a
stochastic defense, ``release_pool`` draws of every aux image are released and their features computed once; every
row of a training batch takes one of its image's draws at random (seeded), the hold-out one draw per image
(``release_pool = 0``: a fresh release of every batch, through the whole frozen model each time). The epoch is
chosen on a seeded hold-out of the aux data
(:func:`attacks.learning_based.fit_choosing_epoch`); eval is never read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from attacks.learning_based import (
    attribute_output,
    check_holdout,
    check_training,
    fit_choosing_epoch,
    penultimate,
    split_holdout,
)
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.core.fields import field
from benchmark.data.types import TensorSplit
from benchmark.models.backbones import seeded
from benchmark.models.trainer import ParamGroup, Trainer


@dataclasses.dataclass(frozen=True)
class AttributeProbeConfig:
    epochs: int = field(300, "training epochs of the probe over the attacker's aux features (the most it trains; "
                             "the epoch kept is chosen on its hold-out)")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-2, "Adam learning rate of the probe")
    weight_decay: float = field(0.0, "weight decay of the probe")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")
    holdout_fraction: float = field(0.2, "share of the aux training set held out (seeded) to choose the epoch on; "
                                         "0 = train on all of it and keep the last epoch")
    eval_every: int = field(1, "measure the hold-out accuracy every this many epochs (and after the last)")
    patience: int = field(0, "stop once the hold-out accuracy has not improved for this many measurements (its "
                             "plateau; the epochs are then a cap); 0 = train every epoch", omit_default=True)
    release_pool: int = field(0, "stochastic defenses: release draws of every aux image whose features are computed "
                                 "once, every training row taking one of its image's draws at random (the features "
                                 "of a draw are fixed, so a pool costs a few epochs' worth of forward passes instead "
                                 "of one per row per epoch); 0 = a fresh release of every batch", omit_default=True)

    def validate(self) -> None:
        check_training(self)
        check_holdout(self)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.release_pool < 0:
            raise ValueError(f"release_pool must be an integer >= 0, got {self.release_pool!r}")


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers)."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


@register_attack("attribute_probe")
class AttributeProbe(Attack):
    """A linear layer trained on the frozen designated model's penultimate features of aux releases."""

    Config = AttributeProbeConfig
    kind = AttackKind.ATTRIBUTE
    requires = frozenset({Access.AUX_PAIRS, Access.SERVER_MODEL})
    search_space = {"lr": (3e-3, 1e-2, 3e-2), "weight_decay": (0.0, 1e-4, 1e-3), "epochs": (100, 300, 1000)}
    smoke_config = {"epochs": 3}
    card = MethodCard(
        paper="Alain and Bengio, Understanding intermediate layers using linear classifier probes (ICLR 2017 "
              "workshop); applied as in Song and Shmatikov, Overlearning Reveals Sensitive Attributes (ICLR 2020): "
              "a classifier of the sensitive attribute on the representation the deployed model computes",
        year=2017,
        url="https://arxiv.org/abs/1610.01644",
        threat_model="honest-but-curious server: it runs the designated model it holds (server tail, or the frozen "
                     "classifier of an image release) on the releases and holds labelled aux data whose releases "
                     "it can obtain; no client weights",
        knob="budget: epochs x aux samples",
        inferred=("features: the input of the designated model's final linear classifier (the model with that "
                  "layer replaced by the identity, in eval mode), frozen",
                  "standardised with the mean and standard deviation of the fit part of aux (for stochastic "
                  "defenses: one release draw, or every draw of the pool); one linear layer, Adam lr 1e-2, no "
                  "weight decay, batch 64",
                  "at most 300 epochs: on Fashion-MNIST (test_resnet@layer1; no_pruning, dynamic channel pruning and "
                  "latent masking at two settings each, seeds 0 and 1, 1,600 aux images) the epoch chosen on the "
                  "hold-out was often past 100, and 300 epochs reached a mean accuracy of 0.640 on the harness's "
                  "hold-out of aux against 0.634 for 100 (a few seconds per model either way)",
                  "the epoch is chosen on a seeded 20% hold-out of the attacker's aux training set (best hold-out "
                  "accuracy, the earlier epoch on a tie); the probe is trained on the other 80%; eval is never read"),
        notes="Song and Shmatikov probe a model's internal representation with a separate classifier trained on "
              "auxiliary data; splitbench probes the server's last features with a linear layer, which measures "
              "what the server's own representation carries linearly, not the most an attacker can read",
    )

    def features(self, target: Target) -> tuple[nn.Module, int]:
        """The frozen feature extractor (the designated model's copy without its classifier) and its width."""
        model, width = penultimate(target.server_model())
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval(), width

    def pooled(self, trainer: Trainer, feats, release, fit: TensorSplit, hold: TensorSplit | None, draws: int
               ) -> tuple[TensorSplit, TensorSplit | None, Any, Tensor]:
        """The pool of a stochastic defense: ``draws`` releases of every fit and hold-out image and their features,
        computed once. Returns the fit and hold-out splits with image indices as ``x``, the transform from a batch of
        indices to features (one draw of each row's image, drawn with a generator seeded by the attack's seed, so
        every run draws the same), and every fit draw's features (for the standardisation)."""
        n = len(fit)
        images = fit.x if hold is None else torch.cat([fit.x, hold.x])

        def one_draw(b):
            with torch.no_grad(), trainer.autocast():
                return feats(release(b.x))

        pool = torch.stack([trainer.map(one_draw, TensorSplit(images)) for _ in range(draws)])  # [draws, N, width]
        gen = torch.Generator().manual_seed(self.seed + 3)

        def transform(idx: Tensor) -> Tensor:
            pick = torch.randint(draws, (len(idx),), generator=gen).to(idx.device)
            return pool[pick, idx]

        rows = torch.arange(len(images), device=pool.device)
        fit = TensorSplit(rows[:n], fit.y)
        hold = None if hold is None else TensorSplit(rows[n:], hold.y)
        return fit, hold, transform, pool[:, :n].flatten(0, 1)

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        aux = target.aux()
        train, release = target.aux_training_set(aux.sensitive, cfg.max_aux)
        fit, hold = split_holdout(train, cfg.holdout_fraction, self.seed + 1)
        extractor, width = self.features(target)

        def feats(z: Tensor) -> Tensor:
            return extractor(z).float()

        if target.stochastic and cfg.release_pool:  # features of a pool of draws, computed once
            fit, hold, transform, f_fit = self.pooled(trainer, feats, release, fit, hold, cfg.release_pool)
        elif target.stochastic:  # a fresh release (and its features) for every batch
            def transform(x: Tensor) -> Tensor:
                with torch.no_grad(), trainer.autocast():
                    return feats(release(x))

            f_fit = trainer.map(lambda b: transform(b.x), TensorSplit(fit.x))
        else:  # the releases are fixed: their features once
            fit = TensorSplit(trainer.map(lambda b: feats(b.x), fit), fit.y)
            hold = None if hold is None else TensorSplit(trainer.map(lambda b: feats(b.x), hold), hold.y)

            def transform(x: Tensor) -> Tensor:
                return x

            f_fit = fit.x
        with seeded(self.seed + 2):
            linear = nn.Linear(width, target.info.num_sensitive_classes)
        std = f_fit.std(0)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant feature is left unscaled
        probe = nn.Sequential(Standardize(f_fit.mean(0), std), linear).to(f_fit.device)
        group = {"probe": ParamGroup(list(linear.parameters()), cfg.lr, cfg.weight_decay)}
        choice = fit_choosing_epoch(trainer, group, probe, [probe], fit, hold, transform, cfg.epochs,
                                    cfg.batch_size, cfg.eval_every, desc="attribute_probe",
                                    patience=cfg.patience)
        return attribute_output(target, trainer, lambda z: probe(feats(z)), choice, cfg, len(train),
                                {"feature_width": width, "weight_decay": cfg.weight_decay,
                                 "attacker_params": sum(p.numel() for p in linear.parameters()),
                                 **({"release_pool": cfg.release_pool} if target.stochastic else {})})
