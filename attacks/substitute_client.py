"""``substitute_client``: black-box inversion through a substitute client (FORA / SDAR-style).

FORA (Xu et al., CVPR 2024) and SDAR (Zhu et al., NDSS 2025) let a server without the client's weights train a
*substitute client* F_hat that imitates the victim's representation, then invert the substitute. In
splitbench's inference setting the attacker holds (x, release(x)) pairs on its aux data and may query the
defense on inputs of its choice, so the substitute is fitted by plain regression on those pairs, and the eval
releases are then inverted white-box through it:

1. **Substitute.** The architecture is public: F_hat is a freshly initialised client of the target's timm model,
   cut at the split point whose output has the release's shape (a defense such as ``patrol`` releases a deeper
   stage than the track's split). When no split point matches (``latent_masking`` releases an image), a small
   generic encoder stands in (3x3 conv-BN-ReLU blocks, stride 2 down to the release's side, a 1x1 conv to its
   channels). It is trained with Adam on ``mean over sent elements (F_hat(x) - release(x))^2`` divided by the
   aux releases' mean square (so one learning rate fits every scale). Only the channels that were *sent* are
   compared (:func:`~benchmark.kit.channels.observed_mask`: a channel that is zero all over is indistinguishable
   from a pruned one, so it constrains nothing), and stochastic defenses are re-queried for every batch, as
   their own server saw them.
2. **Inversion.** rMLE through F_hat, batched: image = sigmoid(theta) in [0, 1], loss per image = the feature
   error on the channels sent in *that* release divided by its mean square, plus ``tv_weight`` times the
   squared-difference total variation of the image in pixel space, plus ``prior_weight`` times its mean squared
   distance to the start (what the substitute's features leave unconstrained stays where the start put it,
   instead of drifting along the substitute's errors); the per-image losses are summed, F_hat is in
   eval mode, so every image's iterates are those of its lone inversion (tested in float64). The start is the
   output of an inverse network trained on the aux pairs (``init="decoder"``, the ``inversion_decoder``
   attack with the same seed) or the attacker's mean aux image (``init="mean"``). The last iterate is reported.

Token releases (ViTs) are compared in :func:`~benchmark.kit.channels.as_spatial`'s view: the patch tokens on their
grid, prefix tokens (class token) dropped.

Defaults were chosen on the attacker's own data only: the quick suite's digits, test_resnet@layer1, with the
aux split cut into 239 fitting and 120 held-out images (the held-out images played the eval releases) on the
``no_pruning`` and ``random_pruning@0.5`` models; nothing was chosen on eval. What was tried (held-out PSNR /
SSIM, no_pruning | random_pruning@0.5):

- start: the mean aux image leaves rMLE through the substitute near the constant guess (13.9 dB / 0.36 |
  13.7 dB / 0.34, against 13.5 dB / 0.32 for the mean image itself: like rMLE with the true weights on this
  ReLU client, the features leave much of the image unconstrained); the inverse network's output is far better
  (26.3 dB / 0.92 | 17.8 dB / 0.79 at width 32), so it is the start. Width 32 beat width 64 on average SSIM
  (0.94 / 0.75 at 64) and 12 epochs lost on no_pruning (0.89).
- refinement without a prior (``prior_weight=0``) drifted away from the start and lost up to 5 dB on
  no_pruning; of the pairs tried (``prior_weight`` 1 to 100 with ``tv_weight`` 0 to 2, not every pair),
  ``prior_weight=10, tv_weight=2`` had the best SSIM on both models, and refinement then adds about 1-1.5 dB
  and 0.01-0.03 SSIM to the start (27.8 dB / 0.93 | 19.0 dB / 0.81). 50 and 100 steps gave the same images
  (within 0.02 dB); inversion lr 0.02 / 0.05 / 0.1 differed by under 0.7 dB.
- substitute: 40 epochs at lr 1e-2 (held-out relative error 0.023 | 0.030-0.032 over runs) beat 20 or 40
  epochs at 3e-3 (0.056, 0.029 | 0.097, 0.043); 80 epochs at 3e-3 fit a little better (0.020 | 0.026) at
  twice the cost.
- budget: the settings above (batch 64, substitute 40 epochs, inverse network 25 epochs) cost about twice the
  quick suite's budget; at batch 32 (more updates for the same compute) 20 + 12 epochs cost half as much and
  ended better on average (27.8 dB / 0.93 | 23.0 dB / 0.88, against 27.8 dB / 0.93 | 18.8 dB / 0.81); 20 + 15
  epochs at 32 (0.94 | 0.84), 15 + 10 at 32 (0.92 | 0.85), 25 + 12 at 64 (0.87 | 0.81) and 10 + 8 at 16
  (0.94 | 0.84) were the other candidates. The random_pruning numbers vary by a few dB between runs (random
  masks), the no_pruning ones by a few tenths. At these defaults one run on a quick-suite model (359 aux
  images, 32 eval releases) takes about the single-thread CPU time of ``inversion_decoder`` at the suite's 25
  epochs (9-12 s each on a busy shared CPU), but about three times as many optimizer steps, so it suffers more
  where threads wait on each other.
- FORA's distribution matching, as a per-channel mean / std match between F_hat(aux) and the eval releases
  (sent channels only) with weight 1 or 10, raised the held-out error (0.023 -> 0.023, 0.031 | 0.032 -> 0.035,
  0.074) and lowered SSIM (0.931 -> 0.928, 0.926 | 0.824 -> 0.819, 0.811), so there is none: with real pairs
  the regression already fits the substitute to the release distribution.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from attacks.inversion_kit import PlateauRule, Trajectory, ended_by, run_checks, stopping_checks, summarize
from attacks.learning_based import InversionDecoderAttack, InversionDecoderConfig
from attacks.optimization import chunks, full_precision, total_variation
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, ReleaseKind, Target
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.kit.channels import as_spatial, observed_mask
from benchmark.models.backbones import create_model, cut_model, seeded, split_points
from benchmark.models.trainer import ParamGroup, Trainer

LOGIT_CLAMP = 1e-3  # starts are clamped to [eps, 1 - eps] before the logit, so theta stays finite


@dataclasses.dataclass(frozen=True)
class SubstituteClientConfig:
    """Hyperparameters of the substitute fit and of the inversion through it (defaults: see the module)."""

    epochs: int = field(20, "epochs of fitting the substitute client on the aux (image, release) pairs")
    batch_size: int = field(32, "batch size of the substitute fit and of the starting inverse network")
    lr: float = field(1e-2, "Adam learning rate of the substitute")
    steps: int = field(50, "most Adam iterations of the inversion through the substitute (an image stops earlier "
                           "when its objective has plateaued)")
    inversion_lr: float = field(0.05, "Adam learning rate on the image logits theta (image = sigmoid(theta))")
    tv_weight: float = field(2.0, "[inferred] weight of the pixel-space total variation prior (the feature "
                                   "error is relative to the release's mean square)")
    prior_weight: float = field(10.0, "[inferred] weight of the squared pixel distance to the start image (keeps "
                                     "what the substitute does not constrain where the start put it)")
    init: Literal["decoder", "mean"] = field(
        "decoder", "start of the inversion: an inverse network trained on the aux pairs, or the mean aux image")
    decoder_epochs: int = field(12, "epochs of the starting inverse network (init='decoder')")
    decoder_width: int = field(32, "stem width of the starting inverse network (see inversion_decoder's width)")
    batch_images: int = field(256, "eval releases inverted together (per-image losses summed); 1 inverts them "
                                   "one by one (same result, slower)")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")
    plateau_window: int = field(10, "[inferred] an image's inversion ends when the mean relative feature error "
                                    "(through the substitute) of its last plateau_window steps improved on the "
                                    "window before by less than plateau_tol; steps is the cap (0 = always the cap)")
    plateau_tol: float = field(1e-3, "[inferred] relative improvement per window below which an inversion ends")

    def validate(self) -> None:
        for name in ("epochs", "steps", "decoder_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "batch_images", "decoder_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "inversion_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("tv_weight", "prior_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_aux is not None and self.max_aux < 2:
            raise ValueError(f"max_aux must be None or >= 2, got {self.max_aux}")
        run_checks(self, stopping_checks(self))


# -- the loss on sent channels --------------------------------------------------------------------------------
def sent_error(pred: Tensor, observed: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean squared error ``[B]`` over the channels ``mask`` marks as sent.

    Args:
        pred, observed: releases in spatial view, ``[B, C, h, w]``.
        mask: ``[B, C]`` booleans (or 0/1), the channels that were sent in each observed release.
    """
    m = mask.to(full_precision(pred).dtype)[:, :, None, None]
    sq = (full_precision(pred) - full_precision(observed)).pow(2) * m
    count = m.flatten(1).sum(1) * (pred.shape[-1] * pred.shape[-2])
    return sq.flatten(1).sum(1) / count.clamp_min(1.0)


def sent_energy(observed: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean square ``[B]`` of the sent channels of ``observed`` (the relative loss's divisor)."""
    return sent_error(torch.zeros_like(observed), observed, mask).clamp_min(1e-12)


# -- the substitute -------------------------------------------------------------------------------------------
class GenericEncoder(nn.Module):
    """A small conv encoder from images to a ``[C, h, w]`` map, for releases no split point of the architecture
    produces: a 3x3 conv-BN-ReLU stem, one stride-2 conv-BN-ReLU per halving of the side (widths doubling from
    ``width``, at most 4x), a 3x3 conv-BN-ReLU, and a 1x1 conv to the release's channels."""

    def __init__(self, in_channels: int, image_size: int, out_channels: int, out_size: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True)]
        ch, side = width, image_size
        while side // 2 >= max(1, out_size):
            nxt = min(4 * width, 2 * ch)
            layers += [nn.Conv2d(ch, nxt, 3, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch, side = nxt, (side + 1) // 2
        layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(True), nn.Conv2d(ch, out_channels, 1)]
        self.net = nn.Sequential(*layers)
        self.out_size = out_size

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        if y.shape[-1] != self.out_size:
            y = nn.functional.adaptive_avg_pool2d(y, self.out_size)
        return y


def candidate_points(points: list[str], declared: str) -> list[str]:
    """Split points to try, in order: the declared one, then deeper ones (nearest first), then shallower ones."""
    if declared not in points:
        return list(points)
    k = points.index(declared)
    return [declared, *points[k + 1:], *reversed(points[:k])]


def build_substitute(target: Target, release_shape: tuple[int, ...], seed: int) -> tuple[nn.Module, str]:
    """A fresh substitute client whose output has ``release_shape`` (spatial view, ``(C, h, w)``).

    Returns the module and a description of its architecture (recorded in the budget).
    """
    spec = target.backbone
    c, size = target.info.channels, target.info.image_size
    if target.release_kind == ReleaseKind.ACTIVATION:
        try:
            model = create_model(spec.name, 2, size, False, seed, in_chans=c)
            points = split_points(model)
        except (SplitbenchError, RuntimeError, TypeError):
            points = []
        probe = torch.zeros(2, c, size, size)
        for point in candidate_points(points, spec.split):
            try:
                client, _ = cut_model(model, point, spec.name)
            except SplitbenchError:
                continue
            client.eval()
            with torch.no_grad():
                shape = tuple(as_spatial(client(probe)).shape[1:])
            if shape == tuple(release_shape):
                return client, f"{spec.name}@{point}"
    with seeded(seed):
        encoder = GenericEncoder(c, size, release_shape[0], release_shape[-1])
    return encoder, "generic_encoder"


def fit_substitute(substitute: nn.Module, target: Target, trainer: Trainer, cfg: SubstituteClientConfig
                   ) -> list[dict[str, float]]:
    """Fit ``substitute`` to the aux releases on their sent channels (stochastic defenses re-queried per batch).

    The loss is divided by the aux releases' mean square over sent channels, so the learning rate does not
    depend on the release's scale.
    """
    aux = target.aux()
    z_aux = as_spatial(aux.released)
    scale = float(sent_energy(z_aux, observed_mask(z_aux)).mean())
    train, release = target.aux_training_set(aux.x, cfg.max_aux)  # `y` holds the inputs, `x` their releases

    def step(b):
        z = as_spatial(release(b.x))
        pred = as_spatial(substitute(b.y))
        return {"substitute": sent_error(pred, z, observed_mask(z)).mean() / scale}

    group = {"substitute": ParamGroup([p for p in substitute.parameters() if p.requires_grad], cfg.lr)}
    hist = trainer.fit(group, step, train, cfg.epochs, cfg.batch_size, modules=[substitute],
                       desc="substitute_client")
    substitute.eval()
    for p in substitute.parameters():
        p.requires_grad_(False)
    return hist


def invert_through(substitute: nn.Module, observed: Tensor, start: Tensor, target: Target, trainer: Trainer,
                   cfg: SubstituteClientConfig) -> tuple[Tensor, Tensor, dict[str, float]]:
    """rMLE through the (frozen, eval-mode) substitute from ``start`` images in [0, 1]; each image stops when its
    relative feature error has plateaued (``steps`` is the cap).

    Returns (images in [0, 1], per-image final feature error relative to the release's mean square, the run's
    record: see :mod:`attacks.inversion_kit`).
    """
    images, errors, trajectories = [], [], []
    for part in chunks(len(observed), cfg.batch_images):
        z = as_spatial(observed[part])
        mask = observed_mask(z)
        scale = sent_energy(z, mask)
        theta = nn.Parameter(torch.logit(start[part].clamp(LOGIT_CLAMP, 1 - LOGIT_CLAMP)))
        kept = torch.sigmoid(theta.detach()).clone()

        def feature(theta: Tensor, z: Tensor = z, mask: Tensor = mask, scale: Tensor = scale) -> Tensor:
            pred = as_spatial(substitute(target.info.normalize(torch.sigmoid(theta))))
            return sent_error(pred, z, mask) / scale

        def snapshot(rows: Tensor, theta: nn.Parameter = theta, kept: Tensor = kept) -> None:
            rows = rows.to(kept.device)
            kept[rows] = torch.sigmoid(theta.detach()[rows])

        traj = Trajectory(len(kept), cfg.steps, PlateauRule(cfg.plateau_window, cfg.plateau_tol), snapshot)

        def step(_i: int, theta: nn.Parameter = theta, feature=feature, x0: Tensor = start[part],
                 traj: Trajectory = traj) -> dict[str, Tensor]:
            img = torch.sigmoid(theta)
            prior = (full_precision(img) - full_precision(x0)).pow(2).flatten(1).mean(1)
            feat = feature(theta)
            traj.record(feat)
            return {"theta": (feat + cfg.tv_weight * total_variation(img) + cfg.prior_weight * prior).sum()}

        trainer.optimize({"theta": ParamGroup([theta], cfg.inversion_lr)}, step, cfg.steps, desc="substitute_rmle",
                         stop=traj.stop)
        traj.finish()
        with torch.no_grad(), trainer.autocast():
            errors.append(feature(torch.logit(kept.clamp(LOGIT_CLAMP, 1 - LOGIT_CLAMP))).float())
        images.append(kept)
        trajectories.append(traj)
    return torch.cat(images), torch.cat(errors), summarize(trajectories, errors)


@register_attack("substitute_client")
class SubstituteClient(Attack):
    """Fit a substitute client on aux pairs, then invert every eval release white-box through it."""

    Config = SubstituteClientConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.AUX_PAIRS})
    version = "2"
    smoke_config = {"epochs": 2, "steps": 10, "decoder_epochs": 2}
    search_space = {"epochs": (10, 20, 40), "decoder_epochs": (12, 25), "prior_weight": (3.0, 10.0, 30.0)}
    card = MethodCard(
        paper="Xu, Yang, Yi, Li, Wang, Hu, Zhuang, Liu: A Stealthy Wrongdoer: Feature-Oriented Reconstruction "
              "Attack against Split Learning (FORA, CVPR 2024); Zhu et al.: Passive Inference Attacks on Split "
              "Learning via Adversarial Regularization (SDAR, NDSS 2025)",
        year=2024,
        url="https://arxiv.org/abs/2405.04115",
        threat_model="black-box: the server knows the client's architecture (not its weights), holds aux data of "
                     "the same distribution whose releases it can obtain, fits a substitute client to them and "
                     "inverts the eval releases through it",
        knob="budget: substitute epochs x aux samples, plus inversion steps per image",
        inferred=(
            "substitute fitted by regression on (aux image, release) pairs instead of FORA's discriminator + "
            "MK-MMD (inference setting: the attacker has real pairs); no distribution-matching term (a "
            "per-channel moment match to the eval releases did not help on held-out aux images)",
            "substitute architecture: the public backbone, freshly initialised (never pretrained), cut at the "
            "split point whose output has the release's shape; a small generic conv encoder when none has",
            "loss only on sent channels (observed mask of each release), relative to the releases' mean square",
            "inversion: rMLE through the substitute, image = sigmoid(theta), relative feature error + pixel TV "
            "(beta 2), Adam; started from an inverse network trained on the aux pairs (inversion_decoder)",
            "refinement keeps the image near its start (prior_weight x squared pixel distance): without it the "
            "inversion drifts where the substitute's features do not constrain the image",
            "defaults (batch 32; substitute 20 epochs at lr 1e-2; decoder start of width 32, 12 epochs; 50 steps "
            "at lr 0.05, tv_weight 2, prior_weight 10) chosen on held-out aux images of the quick suite "
            "(no_pruning and random_pruning@0.5), never on eval; the module docstring lists what was tried",
            "the last iterate is reported (no selection against ground truth)",
        ),
        code="https://github.com/X1aoyangXu/FORA",
    )

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        aux = target.aux()
        observed = target.eval_releases()
        device = observed.device
        release_shape = tuple(as_spatial(observed[:1]).shape[1:])
        substitute, arch = build_substitute(target, release_shape, self.seed + 1)
        substitute = substitute.to(device)
        hist = fit_substitute(substitute, target, trainer, cfg)
        if cfg.init == "decoder":
            with seeded(self.seed + 2):
                dec_cfg = InversionDecoderConfig(epochs=cfg.decoder_epochs, batch_size=cfg.batch_size,
                                                 width=cfg.decoder_width, max_aux=cfg.max_aux)
                start = InversionDecoderAttack(dec_cfg, self.seed).run(target, trainer).images.to(device)
        else:
            start = aux.images.mean(0, keepdim=True).expand(len(observed), -1, -1, -1).to(device)
        images, errors, record = invert_through(substitute, observed, start, target, trainer, cfg)
        return AttackOutput(
            index=torch.arange(len(images)), images=images.float().clamp(0, 1),
            budget={"epochs": cfg.epochs, "aux_samples": len(aux.x) if cfg.max_aux is None
                    else min(cfg.max_aux, len(aux.x)), "lr": cfg.lr, "steps": cfg.steps,
                    "inversion_lr": cfg.inversion_lr, "tv_weight": cfg.tv_weight, "init": cfg.init,
                    "decoder_epochs": cfg.decoder_epochs if cfg.init == "decoder" else 0,
                    "images": len(images), "substitute": arch, "plateau_window": cfg.plateau_window,
                    "plateau_tol": cfg.plateau_tol, "ended_by": ended_by(record),
                    "substitute_params": sum(p.numel() for p in substitute.parameters())},
            metrics={**record, "final_substitute_loss": hist[-1]["substitute"] if hist else float("nan"),
                     "final_feature_error": float(errors.mean())},
        )
