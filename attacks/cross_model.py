"""``cross_model``: do models the release was not meant for still solve the task on it?

Guo et al.'s (2026) suppression test. A set U of *unintended* classifiers of other timm architectures (and seeds) is
trained on clean data, then fed the eval releases; the harness scores each one's task accuracy, their max and
mean, and the suppression ratio = utility / max (and / mean) unintended accuracy. A release that serves only
its designated model scores near chance on U and a high ratio.

What "clean data" is depends on what is released:

- image-shaped releases (latent masking): U are whole classifiers trained on the clean images, as in Guo et al. (2026).
  They do not depend on the defense, so they are trained once per (scenario, architectures, seed, budget) and
  shared by every defended model through the model cache.
- activation releases: the natural counterpart of a clean image is the activation the client would send
  *without* the defense, i.e. the defended client's own output before its release-time transformation
  (channel masks, noise): ``WhiteBox.undefended_release``. This needs the client's weights (white box): an
  attacker with only black-box queries gets defended releases, which is the adaptive variant below, while a
  client the attacker trained itself would live in an unrelated feature basis (near-chance transfer even
  without a defense, which would credit every defense with suppression it did not cause). U are whole
  classifiers of other architectures whose stem reads the release's C channels, the release laid out as a
  C x h x w map (tokens on their grid) and resized (nearest) to ``input_size``; they depend on the defended
  client, so their cache key holds a hash of its outputs on the first training images.

Adaptive variant (missing from Guo et al. (2026)): a copy of each unintended model is fine-tuned on the attacker's aux
releases with their task labels (for stochastic defenses every batch is released afresh) and scored again,
reported separately as ``adaptive_*``.

Inferred choices (config fields, recorded in the card): the architecture list, seeds ``seed * 1000 + 101 + k``
for the k-th model, Adam 1e-3 for 10 epochs on the attacker's clean aux images (never the defender's train split),
nearest resizing of activations to the image size, 5 adaptive epochs at the same learning rate.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.optimization import white_box_or_reason
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, ReleaseKind, Target
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.data.types import TensorSplit
from benchmark.kit.channels import as_spatial
from benchmark.models.backbones import create_model
from benchmark.models.trainer import ParamGroup, Trainer


@dataclasses.dataclass(frozen=True)
class CrossModelConfig:
    """Hyperparameters of the unintended models and of their adaptive fine-tuning."""

    models: tuple[str, ...] = field(("test_resnet", "test_efficientnet", "test_convnext", "test_vit"),
                                    "[inferred] timm architectures of the unintended models (a name may repeat; "
                                    "each entry gets its own seed)")
    epochs: int = field(10, "[inferred] epochs each unintended model trains on clean data")
    batch_size: int = field(64, "batch size of training and fine-tuning")
    lr: float = field(1e-3, "[inferred] Adam learning rate of training and fine-tuning")
    input_size: int | None = field(None, "[inferred] activation releases are resized (nearest) to this side "
                                         "before the unintended models read them (None = the image size)")
    adaptive: bool = field(True, "also fine-tune a copy of every unintended model on aux releases and report "
                                 "it as adaptive_*")
    adaptive_epochs: int = field(5, "[inferred] fine-tuning epochs of the adaptive variant")
    max_aux: int | None = field(None, "use at most this many aux samples for the adaptive variant (None = all)")

    def validate(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one timm architecture")
        if self.epochs < 1 or self.adaptive_epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs >= 1, adaptive_epochs >= 0, batch_size >= 1 and lr > 0 are required")
        if self.input_size is not None and self.input_size < 8:
            raise ValueError(f"input_size must be at least 8, got {self.input_size}")


def _check_reads(model: nn.Module, release: Tensor, arch: str, size: int) -> None:
    """Stop with one line when ``arch`` cannot read ``size`` px inputs (e.g. a patch size that does not divide it,
    or a downsampling that leaves nothing for its last kernel), before any training: a forward pass of a copy in
    eval mode, which changes neither the model nor any random state."""
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            probe(release)
    except (RuntimeError, AssertionError, ValueError) as exc:  # timm asserts a patch size divides the input
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SplitbenchError(f"cross_model: the unintended model {arch} cannot read {size}x{size} inputs "
                              f"({first}); set the attack's input_size to a size it reads (e.g. 32)") from None


class ReleaseClassifier(nn.Module):
    """A whole timm classifier that reads a release: image-shaped releases as they are, activations as a
    ``C x h x w`` map resized (nearest) to ``size x size``."""

    def __init__(self, name: str, num_classes: int, in_channels: int, size: int, image_input: bool, seed: int):
        super().__init__()
        self.size, self.image_input = size, image_input
        self.net = create_model(name, num_classes, size, seed=seed, in_chans=in_channels)

    def forward(self, z: Tensor) -> Tensor:
        if not self.image_input:
            z = as_spatial(z)
            if tuple(z.shape[-2:]) != (self.size, self.size):
                z = F.interpolate(z, size=(self.size, self.size), mode="nearest")
        return self.net(z)


def tensor_digest(*tensors: Tensor | None) -> str:
    """A short sha256 of tensors' exact bytes (shapes included), e.g. to key cached models by their data."""
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@register_attack("cross_model")
class CrossModelTransfer(Attack):
    """Unintended classifiers trained on clean data, scored on the release; optionally fine-tuned on it."""

    version = "2"  # trains on the attacker's aux images only
    Config = CrossModelConfig
    kind = AttackKind.TRANSFER
    requires = frozenset({Access.CLEAN_DATA, Access.AUX_PAIRS, Access.WHITE_BOX})
    smoke_config = {"models": ("test_resnet", "test_vit"), "epochs": 1, "adaptive_epochs": 1, "input_size": 16}
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "adaptive_epochs": (2, 5, 10)}
    card = MethodCard(
        paper="Guo, Wang, Yan, Ma, Wan, Bai: Variational Feature Compression for Model-Specific "
              "Representations (arXiv 2604.06644) - cross-model transfer and suppression ratio",
        year=2026,
        url="https://arxiv.org/abs/2604.06644",
        threat_model="unintended models of other architectures, trained on clean data (clean images; for "
                     "activation releases the defended client's output without the defense, which needs its "
                     "weights), are fed the release; the adaptive variant fine-tunes them on aux releases",
        knob="budget: unintended architectures x epochs (adaptive: + epochs x aux samples)",
        inferred=("unintended set: test_resnet, test_efficientnet, test_convnext, test_vit (whole classifiers); "
                  "the k-th model's seed is seed * 1000 + 101 + k",
                  "activation releases: unintended models are trained on the defended client's output before "
                  "the release-time transformation (white box), read the release as a C-channel map resized "
                  "(nearest) to the image size",
                  "Adam 1e-3, 10 epochs on the attacker's clean aux images; adaptive: 5 epochs on aux releases",
                  "suppression ratio = utility / unintended accuracy (max and mean over the set)"),
        notes="the adaptive variant is not in Guo et al. (2026)",
    )

    def applicable(self, target: Target) -> str | None:
        reason = super().applicable(target)
        if reason is None and target.release_kind == ReleaseKind.ACTIVATION:
            reason = white_box_or_reason(target)
        return reason

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        split = target.clean_data()  # the attacker's own aux images: never the defender's train split
        image_input = target.release_kind == ReleaseKind.IMAGE
        observed = target.eval_releases()
        if image_input:
            data, reference, size, channels = split, None, target.info.image_size, target.info.channels
        else:
            wb = target.white_box()
            feats = trainer.map(lambda b: wb.undefended_release(b.x), split)
            data = TensorSplit(feats, split.task)
            reference = tensor_digest(feats[:256])
            size, channels = cfg.input_size or target.info.image_size, as_spatial(observed[:1]).shape[1]
        n_cls = target.info.num_task_classes
        base = {"attack": self.name, "version": self.version, "epochs": cfg.epochs, "lr": cfg.lr,
                "batch_size": cfg.batch_size, "train_on": "aux", "release": target.release_kind.value,
                "input_size": size, "in_channels": channels, "classes": n_cls, "scenario": target.info.name,
                "data": tensor_digest(split.images, split.task), "reference": reference,
                "trainer_seed": trainer.seed}
        names = self._names()
        if cfg.adaptive:
            aux_set, aux_release = target.aux_training_set(target.aux().task, cfg.max_aux)
        preds, adaptive, losses = {}, {}, {}
        for k, (arch, name) in enumerate(zip(cfg.models, names)):
            seed = self.seed * 1000 + 101 + k
            model = ReleaseClassifier(arch, n_cls, channels, size, image_input, seed).to(observed.device)
            _check_reads(model, observed[:1], arch, size)

            def fit(m: nn.Module, k: int = k, name: str = name) -> dict[str, float]:
                return {"final_train_loss": self._train(m, data, cfg.epochs, trainer, f"unintended {name}", k)}

            if target.cache is not None:  # the loss is cached with the weights: a record is the same either way
                fitted = target.cache.get_or_fit_results("unintended", {**base, "model": arch, "seed": seed}, model,
                                                         fit, observed.device)
            else:
                fitted = fit(model)
            losses[name] = float(fitted["final_train_loss"])
            preds[name] = self._predict(model, observed, trainer)
            if cfg.adaptive:
                tuned = copy.deepcopy(model)
                self._train(tuned, aux_set, cfg.adaptive_epochs, trainer, f"adaptive {name}", 500 + k, aux_release)
                adaptive[name] = self._predict(tuned, observed, trainer)
        return AttackOutput(
            index=torch.arange(len(observed)), task_predictions=preds,
            extra_task_predictions=adaptive or None,
            budget={"models": list(cfg.models), "epochs": cfg.epochs, "train_samples": len(split), "lr": cfg.lr,
                    "input_size": size, "adaptive_epochs": cfg.adaptive_epochs if cfg.adaptive else 0,
                    "aux_samples": len(aux_set) if cfg.adaptive else 0},
            metrics={f"final_train_loss/{n}": v for n, v in losses.items()},
        )

    def _names(self) -> list[str]:
        models = self.config.models
        return [m if models.count(m) == 1 else f"{m}#{models[:i].count(m)}" for i, m in enumerate(models)]

    def _train(self, model: nn.Module, data, epochs: int, trainer: Trainer, desc: str, offset: int,
               release=None) -> float:
        cfg = self.config

        def step(b):
            z = b.x if release is None else release(b.x)
            return {"model": F.cross_entropy(model(z).float(), b.y)}

        hist = trainer.fit({"model": ParamGroup(list(model.parameters()), cfg.lr)}, step, data, epochs,
                           cfg.batch_size, modules=[model], desc=desc, seed_offset=offset)
        model.eval()
        return hist[-1]["model"] if hist else float("nan")

    @staticmethod
    def _predict(model: nn.Module, observed: Tensor, trainer: Trainer) -> Tensor:
        model.eval()
        return trainer.map(lambda b: model(b.x), TensorSplit(observed)).argmax(1)
