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
import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import MethodCard, register_attack
from benchmark.channels import as_spatial
from benchmark.config import field
from benchmark.data import TensorSplit
from benchmark.interfaces import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.trainer import ParamGroup, Trainer


@dataclasses.dataclass(frozen=True)
class AttributeInferenceConfig:
    epochs: int = field(30, "training epochs over the attacker's aux releases")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-3, "Adam learning rate")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")


@register_attack("attribute_inference")
class AttributeInference(Attack):
    Config = AttributeInferenceConfig
    kind = AttackKind.ATTRIBUTE
    requires = frozenset({Access.AUX_PAIRS})
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


class InversionDecoder(nn.Module):
    """Release -> image in [0, 1]: conv stem, log2(H/h) transposed-conv upsamplings, conv head, sigmoid.

    ``width`` is the stem's channel count for a release of at most 8 x 8; it halves (down to ``min_width``) each
    time the release's side doubles beyond that, so an image-shaped release does not cost 16 times the compute.
    With a ``prior`` image (the attacker's best constant guess, the mean of its aux images) the decoder predicts
    the deviation from it in logit space, so that it starts near the trivial guess instead of at grey.
    """

    def __init__(self, in_channels: int, in_size: int, out_shape: tuple[int, int, int], width: int = 64,
                 prior: torch.Tensor | None = None, min_width: int = 32):
        super().__init__()
        c_out, h_out, w_out = out_shape
        self.out_hw = (h_out, w_out)
        width = max(min(width, min_width), width // max(1, in_size // 8))
        ups = max(0, round(math.log2(max(1, h_out // max(1, in_size)))))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True)]
        ch = width
        for _ in range(ups):
            nxt = max(16, ch // 2)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        head = nn.Conv2d(ch, c_out, 3, padding=1)
        layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(True), head]
        self.net = nn.Sequential(*layers)
        logit = torch.zeros(1, *out_shape) if prior is None else torch.logit(prior.float().clamp(0.01, 0.99))
        self.register_buffer("prior_logit", logit.reshape(1, *out_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(as_spatial(z))
        if tuple(y.shape[-2:]) != self.out_hw:
            y = F.interpolate(y, size=self.out_hw, mode="bilinear", align_corners=False)
        return torch.sigmoid(y.float() + self.prior_logit)


@dataclasses.dataclass(frozen=True)
class InversionDecoderConfig:
    epochs: int = field(30, "training epochs over the attacker's aux (release, image) pairs")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-3, "Adam learning rate")
    width: int = field(64, "channels of the decoder's first layer for releases of at most 8 x 8 (halved per "
                           "doubling of the release's side beyond that, at least 16)")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")
    start_at_mean: bool = field(True, "predict the deviation from the mean aux image (the attacker's best "
                                      "constant guess) instead of the image from scratch")


@register_attack("inversion_decoder")
class InversionDecoderAttack(Attack):
    Config = InversionDecoderConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset({Access.AUX_PAIRS})
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
        decoder = InversionDecoder(z_aux.shape[1], z_aux.shape[-1], target.image_shape, cfg.width, prior)
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
