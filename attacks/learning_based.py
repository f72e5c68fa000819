"""Learning-based (black-box) attacks: the attacker trains networks on the releases of its own auxiliary data
and applies them to the eval releases.

- ``attribute_inference``: a fresh copy of the designated architecture's tail (the server part of the backbone
  after the split, or a whole classifier for image-shaped releases) trained to predict the sensitive attribute.
  This is the post-hoc adversary: trained on frozen releases with fresh weights, never the
  adversary a defense co-trained with.
- ``inversion_decoder``: He et al.'s inverse network, auto-sized to the release: a conv stem, transposed-conv
  upsampling to the input size, a sigmoid to [0, 1]; trained with MSE on (release, image) pairs.

The attribute attackers (this file's and those that reuse the server's own model, ``attribute_finetune`` and
``attribute_probe``) choose their training epoch on a hold-out of their own aux data: :func:`split_holdout`
divides the aux training set (seeded) into a fit part and a hold-out part, :func:`fit_choosing_epoch` trains on
the fit part, measures the hold-out accuracy every ``eval_every`` epochs and keeps the weights of the best epoch
(on a tie, the earlier one). Eval is never looked at. This hold-out is the attack's own, inside the aux data the
harness gives it (the harness holds out a share of aux from every attack as well, to score it beside eval).
The helpers :func:`classifier_name`, :func:`with_new_classifier` and :func:`penultimate` find and replace the
final linear classifier of a designated model (a timm model, or the server part the split cut from one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, Target
from benchmark.core.errors import NotApplicable
from benchmark.core.fields import field
from benchmark.data.types import TensorSplit
from benchmark.kit.channels import as_spatial
from benchmark.kit.nets import ReleaseDecoder
from benchmark.models.backbones import seeded
from benchmark.models.trainer import ParamGroup, Trainer


def check_training(cfg) -> None:
    """Shared bounds of the learned attackers' settings (one line naming the field when violated)."""
    if cfg.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.max_aux is not None and cfg.max_aux < 1:
        raise ValueError(f"max_aux must be >= 1 or null, got {cfg.max_aux}")


def check_holdout(cfg) -> None:
    """Bounds of the epoch-choosing hold-out settings."""
    if not 0 <= cfg.holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {cfg.holdout_fraction}")
    if cfg.eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {cfg.eval_every}")
    if cfg.patience < 0:
        raise ValueError(f"patience must be >= 0 (0: no plateau stop), got {cfg.patience}")


# ------------------------------------------------------------------------------------------------------------
# Choosing the epoch on a hold-out of the attacker's own aux data
# ------------------------------------------------------------------------------------------------------------
def split_holdout(train: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit | None]:
    """Split an aux training set into (fit, hold-out) parts, a seeded random ``fraction`` held out.

    At least one row is held out when ``fraction > 0`` and at least one row is left to fit; with ``fraction == 0``
    or a single row there is no hold-out (``None``)."""
    n = len(train)
    n_hold = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
    if n_hold == 0:
        return train, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit_idx, hold_idx = perm[n_hold:].sort().values, perm[:n_hold].sort().values

    def take(idx: Tensor) -> TensorSplit:
        idx = idx.to(train.x.device)
        return TensorSplit(train.x[idx], None if train.y is None else train.y[idx],
                           None if train.s is None else train.s[idx])

    return take(fit_idx), take(hold_idx)


@dataclasses.dataclass
class EpochChoice:
    """What :func:`fit_choosing_epoch` did: the kept epoch and the hold-out accuracy curve."""

    epochs: int                       # epochs trained
    chosen_epoch: int                 # the epoch whose weights were kept (1-based; = epochs without a hold-out)
    curve: list[tuple[int, float]]    # (epoch, hold-out accuracy) at every evaluation
    fit_samples: int
    holdout_samples: int
    history: list[dict[str, float]]   # the trainer's per-epoch means
    loss: str = "loss"                # the key of the training loss in ``history``

    @property
    def best(self) -> float:
        return max((a for _, a in self.curve), default=float("nan"))

    def budget(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "chosen_epoch": self.chosen_epoch, "fit_samples": self.fit_samples,
                "holdout_samples": self.holdout_samples,
                "holdout_curve": [[e, round(a, 4)] for e, a in self.curve]}

    def metrics(self) -> dict[str, float]:
        """Attack-side numbers for the record: the kept epoch, the hold-out accuracy (best, first and last
        measurement; left out without a hold-out) and the training loss (last epoch, kept epoch)."""
        out = {"chosen_epoch": float(self.chosen_epoch)}
        if self.curve:
            out.update(holdout_acc_best=self.best, holdout_acc_first=self.curve[0][1],
                       holdout_acc_last=self.curve[-1][1])
        if self.history:
            out["final_train_loss"] = self.history[-1].get(self.loss, float("nan"))
            out["chosen_train_loss"] = self.history[self.chosen_epoch - 1].get(self.loss, float("nan"))
        return out


def fit_choosing_epoch(trainer: Trainer, groups: Mapping[str, ParamGroup], forward: Callable[[Tensor], Tensor],
                       modules: Sequence[nn.Module], fit: TensorSplit, hold: TensorSplit | None,
                       transform: Callable[[Tensor], Tensor], epochs: int, batch_size: int, eval_every: int = 1,
                       desc: str = "attack", patience: int = 0) -> EpochChoice:
    """Train ``forward`` (whose parameters are in ``groups``, its modules in ``modules``) to classify ``fit``
    with cross-entropy, keeping the weights of the epoch with the best accuracy on ``hold``.

    ``transform`` turns a batch's ``x`` into the model's input (identity for releases computed once; a fresh
    release for stochastic defenses). The hold-out is transformed once, before training, so every epoch is
    measured on the same inputs. It is measured after every ``eval_every``-th epoch and after the last; the
    weights (``state_dict`` of every module, buffers included) of the most accurate epoch are restored at the
    end, the earlier epoch on a tie. Without a hold-out the last epoch's weights stay. With ``patience`` > 0 and a
    hold-out, training stops once that many measurements in a row have not beaten the best (the hold-out's
    plateau), ``epochs`` being the cap; the epochs before the stop are exactly those of the full run."""
    hold_z = hold_y = None
    if hold is not None:
        hold_z = trainer.map(lambda b: transform(b.x), TensorSplit(hold.x))
        hold_y = hold.y
    curve: list[tuple[int, float]] = []
    best: dict[str, Any] = {"acc": -1.0, "epoch": epochs, "state": None, "since": 0}

    def on_epoch_end(epoch: int) -> bool:
        done = epoch + 1
        if hold_z is None or (done % eval_every and done != epochs):
            return False
        pred = trainer.map(lambda b: forward(b.x), TensorSplit(hold_z)).argmax(1).to(hold_y.device)
        acc = float((pred == hold_y).float().mean())
        curve.append((done, acc))
        if acc > best["acc"]:
            best.update(acc=acc, epoch=done, since=0,
                        state=[{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules])
        else:
            best["since"] += 1
        return patience > 0 and best["since"] >= patience

    def step(b):
        loss = F.cross_entropy(forward(transform(b.x)).float(), b.y)
        return {name: loss for name in groups}

    history = trainer.fit(groups, step, fit, epochs, batch_size, modules=modules, desc=desc,
                          on_epoch_end=on_epoch_end)
    if best["state"] is not None:
        for m, state in zip(modules, best["state"]):
            m.load_state_dict(state)
    for m in modules:
        m.eval()
    run = len(history)  # fewer than ``epochs`` when the plateau stopped it
    return EpochChoice(run, best["epoch"] if hold_z is not None else run, curve, len(fit),
                       0 if hold is None else len(hold), history, next(iter(groups), "loss"))


# ------------------------------------------------------------------------------------------------------------
# The designated model's final classifier
# ------------------------------------------------------------------------------------------------------------
def classifier_name(model: nn.Module) -> str:
    """The qualified name of ``model``'s final linear classifier (the layer that produces its logits).

    A whole timm model names it itself (``get_classifier``: ``fc`` for ResNets, ``classifier`` for EfficientNets
    and MobileNets, ``head`` for ViTs, ``head.fc`` for ConvNeXts). The server part
    that :func:`benchmark.models.backbones.cut_model` cuts from one is a ``torch.fx`` graph whose output is that
    layer's call, under the same name. Raises :class:`NotApplicable` when the logits do not come from a linear layer."""
    name = None
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        name = next((n for n, m in model.named_modules() if m is head), None)
    elif isinstance(model, fx.GraphModule):
        out = next(n for n in model.graph.nodes if n.op == "output")
        arg = out.args[0]
        if isinstance(arg, fx.Node) and arg.op == "call_module":
            name = str(arg.target)
    if not name or not isinstance(model.get_submodule(name), nn.Linear):
        raise NotApplicable(f"the designated model ({type(model).__name__}) does not end in a linear classifier "
                            "this attack can replace")
    return name


def with_new_classifier(model: nn.Module, num_classes: int, seed: int) -> tuple[nn.Module, nn.Linear]:
    """Replace ``model``'s final classifier (in place) by a newly initialised linear layer with ``num_classes``
    outputs and the same input width (as timm's ``reset_classifier`` does, without touching pooling); return the
    model and the new layer."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    with seeded(seed):
        head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    head.to(device=old.weight.device, dtype=old.weight.dtype)
    model.set_submodule(name, head)
    return model, head


def penultimate(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` with its final classifier replaced (in place) by the identity: it then outputs the features its
    classifier read, what timm's ``forward_head(forward_features(x), pre_logits=True)`` returns (pooled, after
    any head norm; dropout is the identity in eval mode). Returns the model and the features' width."""
    name = classifier_name(model)
    width = model.get_submodule(name).in_features
    model.set_submodule(name, nn.Identity())
    return model, width


# ------------------------------------------------------------------------------------------------------------
# attribute_inference: a fresh tail
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AttributeInferenceConfig:
    epochs: int = field(30, "training epochs over the attacker's aux releases (the most it trains; the epoch kept "
                            "is chosen on its hold-out)")
    batch_size: int = field(64, "batch size")
    lr: float = field(1e-3, "Adam learning rate")
    max_aux: int | None = field(None, "use at most this many aux samples (None = all)")
    holdout_fraction: float = field(0.2, "share of the aux training set held out (seeded) to choose the epoch on; "
                                         "0 = train on all of it and keep the last epoch")
    eval_every: int = field(1, "measure the hold-out accuracy every this many epochs (and after the last)")
    patience: int = field(0, "stop once the hold-out accuracy has not improved for this many measurements (its "
                             "plateau; the epochs are then a cap); 0 = train every epoch", omit_default=True)

    def validate(self) -> None:
        check_training(self)
        check_holdout(self)


@register_attack("attribute_inference")
class AttributeInference(Attack):
    """A fresh copy of the designated tail trained on aux releases to predict the sensitive attribute, its epoch
    chosen on a hold-out of its aux (version 2; version 1 trained on all of aux and kept the last epoch)."""

    Config = AttributeInferenceConfig
    kind = AttackKind.ATTRIBUTE
    requires = frozenset({Access.AUX_PAIRS})
    version = "2"
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "epochs": (30, 60, 120)}
    smoke_config = {"epochs": 2}
    card = MethodCard(
        paper="Singh et al., Dynamic Channel Pruning for Privacy (adversary network); post-hoc protocol of "
              "splitbench (fresh weights on frozen releases)",
        year=2020,
        url="https://arxiv.org/abs/2012.03257",
        threat_model="black-box: the server sees releases and holds labelled aux data of the same distribution "
                     "whose releases it can obtain",
        knob="budget: epochs x aux samples",
        inferred=("architecture: a fresh copy of the designated tail (the server part after the split)",
                  "Adam 1e-3, at most 30 epochs by default",
                  "the epoch is chosen on a seeded 20% hold-out of the attacker's aux training set (best hold-out "
                  "accuracy, the earlier epoch on a tie); the weights are trained on the other 80%; eval is never "
                  "read"),
    )

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        aux = target.aux()
        n_cls = target.info.num_sensitive_classes
        train, release = target.aux_training_set(aux.sensitive, cfg.max_aux)
        fit, hold = split_holdout(train, cfg.holdout_fraction, self.seed + 1)
        model = target.fresh_tail(n_cls, seed=self.seed + 1)
        choice = fit_choosing_epoch(trainer, {"attacker": ParamGroup(list(model.parameters()), cfg.lr)}, model,
                                    [model], fit, hold, release, cfg.epochs, cfg.batch_size, cfg.eval_every,
                                    patience=cfg.patience,
                                    desc="attribute_inference")
        return attribute_output(target, trainer, model, choice, cfg, len(train),
                                {"attacker_params": sum(p.numel() for p in model.parameters())})


def attribute_output(target: Target, trainer: Trainer, predict: Callable[[Tensor], Tensor], choice: EpochChoice,
                     cfg: Any, aux_samples: int, extra_budget: dict[str, Any]) -> AttackOutput:
    """The attribute predictions of ``predict`` on every eval release, with the budget and hold-out record."""
    z = target.eval_releases()
    preds = trainer.map(lambda b: predict(b.x), TensorSplit(z)).argmax(1)
    return AttackOutput(
        index=torch.arange(len(z)), attributes=preds,
        budget={**choice.budget(), "aux_samples": aux_samples, "lr": cfg.lr, "batch_size": cfg.batch_size,
                **extra_budget},
        metrics=choice.metrics(),
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
        check_training(self)
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
