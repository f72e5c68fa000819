"""Learning-based (black-box) attacks: the attacker trains fresh networks on the releases of
its own auxiliary data and applies them to the eval releases.

- ``attribute_inference``: a fresh copy of the designated architecture's tail (the server part of the backbone
  after the split, or a whole classifier for image-shaped releases) trained to predict the sensitive attribute.
  This is the post-hoc adversary: trained on frozen releases with fresh weights, never the
  adversary a defense co-trained with.
- ``inversion_decoder``: He et al.'s inverse network, auto-sized to the release: a conv stem, transposed-conv
  upsampling to the input size, a sigmoid to [0, 1]; trained with MSE on (release, image) pairs.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from benchmark import MethodCard, register_attack
from benchmark.channels import as_spatial
from benchmark.config import field
from benchmark.data import TensorSplit
from benchmark.interfaces import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.nets import ReleaseDecoder
from benchmark.trainer import ParamGroup, Trainer


@dataclasses.dataclass(frozen=True)
class AttributeInferenceConfig:
    epochs: int = field(30, "training epochs over the attacker's aux releases")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-3, "Adam learning rate")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")

    def validate(self) -> None:
        _check_training(self)


def _check_training(cfg) -> None:
    """Shared bounds of the learned attackers' settings (one line naming the field when violated)."""
    if cfg.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.max_aux is not None and cfg.max_aux < 1:
        raise ValueError(f"max_aux must be >= 1 or null, got {cfg.max_aux}")


@register_attack("attribute_inference")
class AttributeInference(Attack):
    Config = AttributeInferenceConfig
    kind = AttackKind.ATTRIBUTE
    requires = frozenset({Access.AUX_PAIRS})
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "epochs": (30, 60, 120)}
    card = MethodCard(
        paper="Singh et al., Dynamic Channel Pruning for Privacy (adversary network); post-hoc protocol of "
              "splitbench (fresh weights on frozen releases)",
        year=2020,
        url="https://arxiv.org/abs/2012.03257",
        threat_model="black-box: the server sees releases and holds labelled aux data of the same distribution "
                     "whose releases it can obtain",
        knob="budget: epochs x aux samples",
        inferred=("architecture: a fresh copy of the designated tail (the server part after the split)",
                  "Adam 1e-3, 30 epochs by default; no early stopping on eval"),
    )

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        aux = target.aux()
        n_cls = target.info.num_sensitive_classes
        train, release = target.aux_training_set(aux.sensitive, cfg.max_aux)
        model = target.fresh_tail(n_cls, seed=self.seed + 1)

        def step(b):
            return {"attacker": F.cross_entropy(model(release(b.x)).float(), b.y)}

        hist = trainer.fit({"attacker": ParamGroup(list(model.parameters()), cfg.lr)}, step, train, cfg.epochs,
                           cfg.batch_size, modules=[model], desc="attribute_inference")
        model.eval()
        z = target.eval_releases()
        preds = trainer.map(lambda b: model(b.x), TensorSplit(z)).argmax(1)
        return AttackOutput(
            index=torch.arange(len(z)), attributes=preds,
            budget={"epochs": cfg.epochs, "aux_samples": len(train), "lr": cfg.lr,
                    "attacker_params": sum(p.numel() for p in model.parameters())},
            metrics={"final_train_loss": hist[-1]["attacker"] if hist else float("nan")},
        )


@dataclasses.dataclass(frozen=True)
class InversionDecoderConfig:
    epochs: int = field(30, "training epochs over the attacker's aux (release, image) pairs")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-3, "Adam learning rate")
    width: int = field(64, "channels of the decoder's first layer for releases of at most 8 x 8 (halved per "
                           "doubling of the release's side beyond that, at least 32)")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")
    start_at_mean: bool = field(True, "predict the deviation from the mean aux image (the attacker's best "
                                      "constant guess) instead of the image from scratch")

    def validate(self) -> None:
        _check_training(self)
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


@register_attack("inversion_decoder")
class InversionDecoderAttack(Attack):
    Config = InversionDecoderConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.AUX_PAIRS})
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "epochs": (25, 50), "width": (32, 64, 128)}
    card = MethodCard(
        paper="He, Zhang, Lee: Model Inversion Attacks against Collaborative Inference (ACSAC 2019), "
              "black-box inverse network",
        year=2019,
        url="https://doi.org/10.1145/3359789.3359824",
        threat_model="black-box: the server queries the client with its own aux data of the same distribution "
                     "and learns the inverse mapping",
        knob="budget: epochs x aux samples",
        inferred=("decoder auto-sized to the release (conv stem, transposed-conv upsampling, sigmoid output) "
                  "instead of the paper's fixed per-split decoders",
                  "Adam 1e-3 without the code's amsgrad / lr decay; MSE in [0, 1] pixel space"),
        code="https://github.com/zechenghe/Inverse_Collaborative_Inference",
    )

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        aux = target.aux()
        z_aux = as_spatial(aux.released)
        prior = aux.images.mean(0) if cfg.start_at_mean else None
        decoder = ReleaseDecoder(z_aux.shape[1], z_aux.shape[-1], target.image_shape, cfg.width, prior)
        decoder = decoder.to(aux.released.device)
        train, release = target.aux_training_set(aux.images, cfg.max_aux)  # `y` holds the target images

        def step(b):
            return {"decoder": F.mse_loss(decoder(release(b.x)).float(), b.y)}

        hist = trainer.fit({"decoder": ParamGroup(list(decoder.parameters()), cfg.lr)}, step, train, cfg.epochs,
                           cfg.batch_size, modules=[decoder], desc="inversion_decoder")
        decoder.eval()
        z = target.eval_releases()
        images = trainer.map(lambda b: decoder(b.x), TensorSplit(z))
        return AttackOutput(
            index=torch.arange(len(z)), images=images,
            budget={"epochs": cfg.epochs, "aux_samples": len(train), "lr": cfg.lr,
                    "attacker_params": sum(p.numel() for p in decoder.parameters())},
            metrics={"final_train_mse": hist[-1]["decoder"] if hist else float("nan")},
        )
