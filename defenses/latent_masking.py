"""``latent_masking``: a masked variational bottleneck in front of a frozen designated classifier.

Guo et al. ("Variational Feature Compression for Model-Specific Representations", 2026). The client
encodes an image into a latent Gaussian (mu, log sigma^2) of dimension d, keeps only k latent dimensions with a
binary mask, and decodes the masked code into an image-shaped release that a **frozen** target classifier f_T
(the designated model) reads. The bottleneck is trained with the task cross-entropy through f_T plus beta times
the KL to N(0, I), with **no pixel reconstruction loss**, so the release only has to carry what f_T needs;
unintended models trained on clean images should then fail on it (their suppression ratio).

``fit`` has two phases, both in the shared trainer:

1. the target classifier (a whole timm classifier of the suite's backbone) is trained on clean train images
   with the shared train settings, then frozen (eval mode, no gradients);
2. the bottleneck is trained against it: a warm-up without a mask, then the mask is computed from per-dimension
   KL and gradient saliency through f_T, and recomputed every ``mask_every`` epochs.

At release the code is mu (no sampling): ``release(x) = D(m * mu(x))``, in f_T's normalized input space with
the input's shape.

Where the cut is, and what is sent. The client sends the k kept code values (``sent``: 4k bytes per sample in
float32); the decoder D is fixed after ``fit`` and the server holds it, so the server decodes (``received``) and
the decoding is charged to the server. The release every attacker and unintended model sees is the decoded image,
which the server can always form, so nothing the attacks see changes with where D runs. The method has **no cut
of the track's backbone**: its client is an input-space bottleneck in front of a frozen *whole* classifier (the
designated model reads an image), so a track's split point does not apply and the records of one backbone are
the same at every split. Moving the bottleneck onto a split backbone's features would be a different method
(a feature-space variant the paper's abstract does not describe), not this one cut deeper.

Inferred choices (only the abstract was available; every one is a config field and listed in the card):

- encoder/decoder: a small conv VAE (``depth`` stride-2 conv stages of ``width * 2^i`` channels, a linear
  head to 2d; the decoder mirrors it with transposed convs); the release is the decoder's linear output;
- placeholder defaults: d = 256, warm-up 10 epochs, recompute every 5 epochs; the warm-up is capped at
  ``epochs - 1`` so that at least one epoch trains with the mask;
- beta = 1e-2, chosen in the suite ``standard-cpu-prestudy`` (Fashion-MNIST images and seeds that no split of
  the official track touches; d = 64): the most private (keep ratio, beta) pair whose lower 95% bound of paired
  validation Δutility (3 seeds, crossed bootstrap) is at or above -0.02, the larger beta among equals. Lower
  bounds measured there at keep ratio 0.05 / 0.25 / 0.5: beta 1e-4: -0.023 / -0.021 / -0.025; 1e-3: -0.024 /
  -0.063 / -0.024; 1e-2: -0.016 / -0.018 / -0.036. Only 1e-2 clears at 0.05 (no beta clears at every keep ratio:
  the seeds of one setting spread widely). The previous default, 1e-3, was chosen on the quick suite's digits
  validation split, which also decided the quick suite's admission;
- mask score = (KL_j / max KL) * (S_j / max S), S_j = mean |dCE/du_j| at the decoder input u = m * mu
  (``saliency="grad"``; ``"grad_x_input"`` uses |u_j dCE/du_j|), over at most ``mask_samples`` train images;
  k = max(1, round(keep_ratio * d)) dimensions with the highest scores are kept;
- the mask is one global mask over latent dimensions; whether the paper's "dynamic" mask is per input is
  unresolved (here "dynamic" = recomputed during training).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, ReleaseKind
from benchmark.core.fields import field
from benchmark.models.backbones import fresh_model
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class LatentMaskingConfig(DefenseConfig):
    keep_ratio: float = field(0.25, "[inferred default] fraction of latent dimensions kept by the mask "
                                    "(k = max(1, round(keep_ratio * latent_dim)))")
    latent_dim: int = field(256, "[inferred] latent dimension d")
    beta: float = field(1e-2, "[inferred] weight of the KL term (summed over dimensions, mean over the batch); "
                              "1e-2 chosen in a pre-study on data of its own, see the module docstring")
    warmup_epochs: int = field(10, "[inferred] bottleneck epochs without a mask before it is first computed "
                                   "(capped at epochs - 1)")
    mask_every: int = field(5, "[inferred] recompute the mask every this many epochs after the warm-up")
    saliency: Literal["grad", "grad_x_input"] = field(
        "grad", "[inferred] saliency of a latent dimension: mean |dCE/du_j| or mean |u_j dCE/du_j|")
    mask_samples: int | None = field(4096, "[inferred] train images used to compute the mask (None = all)")
    bottleneck_epochs: int | None = field(None, "epochs of the bottleneck phase (None = train.epochs)")
    classifier_epochs: int | None = field(None, "epochs of the target classifier's clean training "
                                                "(None = train.epochs)")
    width: int = field(32, "[inferred] channels of the encoder's first conv stage (doubling per stage)")
    depth: int = field(3, "[inferred] stride-2 conv stages of the encoder (and transposed ones of the decoder)")

    def validate(self) -> None:
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if self.latent_dim < 1 or self.width < 1 or self.depth < 1:
            raise ValueError("latent_dim, width and depth must be positive")
        if self.beta < 0 or self.warmup_epochs < 0 or self.mask_every < 1:
            raise ValueError("beta >= 0, warmup_epochs >= 0 and mask_every >= 1 are required")


class VariationalBottleneck(nn.Module):
    """Image -> (mu, log sigma^2) in R^d -> masked code -> image-shaped release (what runs on the client).

    The binary latent mask is a buffer, so it is saved and restored with the weights.
    """

    def __init__(self, channels: int, size: int, latent_dim: int, width: int, depth: int):
        super().__init__()
        self.size = size
        self.grid = max(1, size // 2 ** depth)
        enc: list[nn.Module] = []
        ch = channels
        for i in range(depth):
            out = width * 2 ** i
            enc += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        enc.append(nn.AdaptiveAvgPool2d(self.grid))
        self.encoder = nn.Sequential(*enc)
        self.to_stats = nn.Linear(ch * self.grid ** 2, 2 * latent_dim)
        self.from_code = nn.Linear(latent_dim, ch * self.grid ** 2)
        self.top = ch
        dec: list[nn.Module] = []
        for _ in range(depth):
            out = max(width // 2, ch // 2)
            dec += [nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        dec.append(nn.Conv2d(ch, channels, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("mask", torch.ones(latent_dim))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        stats = self.to_stats(self.encoder(x).flatten(1)).float()
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, u: Tensor) -> Tensor:
        """The release for a (masked) code ``u``: ``[B, C, size, size]``."""
        h = self.from_code(u).view(len(u), self.top, self.grid, self.grid)
        out = self.decoder(h)
        if out.shape[-1] != self.size or out.shape[-2] != self.size:
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return out

    def forward(self, x: Tensor) -> Tensor:
        mu, _ = self.encode(x)
        return self.decode(mu * self.mask)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per sample and dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


@register_defense("latent_masking")
class LatentMasking(Defense):
    """A task-only variational bottleneck with a KL x saliency latent mask, for a frozen target classifier.

    Example:
        >>> from benchmark.models.backbones import BackboneSpec
        >>> from benchmark.data.types import ScenarioInfo
        >>> info = ScenarioInfo("toy", 32, 3, (0.5,) * 3, (0.5,) * 3, "t", ("a", "b"))
        >>> d = LatentMasking(LatentMaskingConfig(latent_dim=64, keep_ratio=0.25),
        ...                   BackboneSpec("test_resnet", "layer1"), info).eval()
        >>> d.kept_dims, tuple(d.release(torch.zeros(2, 3, 32, 32)).shape)
        (16, (2, 3, 32, 32))
    """

    Config = LatentMaskingConfig
    knob = "keep_ratio"
    knob_grid = (0.05, 0.25, 0.5)
    knob_more_private = "lower"  # fewer latent dimensions kept = less carried
    version = "1"
    release_kind = ReleaseKind.IMAGE
    smoke_config = {"latent_dim": 16, "width": 8, "mask_samples": 64, "warmup_epochs": 0, "mask_every": 1}
    card = MethodCard(
        paper="Guo, Wang, Yan, Ma, Wan, Bai: Variational Feature Compression for Model-Specific "
              "Representations (arXiv 2604.06644)",
        year=2026,
        url="https://arxiv.org/abs/2604.06644",
        threat_model="the release is an image-shaped representation meant for one frozen designated classifier; "
                     "unintended models (other architectures, tasks) and attackers reuse it",
        knob="keep_ratio: fraction of latent dimensions kept; lower = less carried, less utility",
        inferred=(
            "small conv VAE encoder/decoder (depth=3 stride-2 stages, width=32); release = linear decoder "
            "output in the classifier's normalized input space",
            "placeholders: latent_dim=256, warmup_epochs=10 (capped at epochs-1), mask_every=5",
            "beta=1e-2 (KL summed over dims), chosen in the suite standard-cpu-prestudy (Fashion-MNIST images and "
            "seeds disjoint from the official track): of {1e-4, 1e-3, 1e-2}, the one at which the most private keep "
            "ratio keeps the lower 95% bound of validation Δutility within 0.02 (only 1e-2, at keep ratio 0.05)",
            "mask score = KL_j/max(KL) * S_j/max(S), S_j = mean |dCE/du_j| at the masked decoder input "
            "(saliency='grad'), over mask_samples=4096 train images; top-k kept, k = max(1, round(ratio*d))",
            "one global mask over latent dimensions, recomputed during training (not a per-input mask)",
            "target classifier: a whole classifier of the suite's backbone, trained on clean train images "
            "with the shared train settings, then frozen",
            "mu (no sampling) at release",
            "the client sends the k kept code values (4k bytes per sample); the server holds the decoder and "
            "decodes, so the decoder's cost is the server's",
            "no cut of the track's backbone: the bottleneck sits in front of a frozen whole classifier, so the "
            "track's split does not apply (the records are the same at every split)",
        ),
        code="",
        notes="only the abstract was available; whether 'dynamic' means a per-input mask is unresolved",
    )

    # -- construction ---------------------------------------------------------------------------------------
    def build(self) -> None:
        info, cfg = self.info, self.config
        self.classifier = fresh_model(self.backbone.name, info.num_task_classes, info.image_size, self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.bottleneck = VariationalBottleneck(info.channels, info.image_size, cfg.latent_dim, cfg.width,
                                                    cfg.depth)
        self.mask_epochs: list[int] = []

    @property
    def client(self) -> nn.Module:
        return self.bottleneck

    @property
    def server(self) -> nn.Module:
        return self.classifier

    @property
    def kept_dims(self) -> int:
        return max(1, round(self.config.keep_ratio * self.config.latent_dim))

    # -- the method -----------------------------------------------------------------------------------------
    def release(self, x: Tensor) -> Tensor:
        return self.bottleneck(x)

    def predict(self, released: Tensor) -> Tensor:
        return self.classifier(released)

    def kept_index(self) -> Tensor:
        """Positions of the latent dimensions the mask keeps (the mask is fixed after ``fit`` and public)."""
        return self.bottleneck.mask.nonzero().flatten()

    def sent(self, x: Tensor) -> Tensor:
        """What the client computes and sends: the encoder's mean code at the kept dimensions only, ``[B, k]``.
        The decoder is a fixed function the server holds, so it runs on the server (:meth:`received`)."""
        mu, _ = self.bottleneck.encode(x)
        return mu[:, self.kept_index()]

    def received(self, sent: Tensor) -> Tensor:
        """The image-shaped release the server decodes from the ``k`` sent code values (the same as
        :meth:`release` of the image, up to float rounding)."""
        u = sent.new_zeros(len(sent), self.config.latent_dim)
        u[:, self.kept_index()] = sent
        return self.bottleneck.decode(u)

    def payload_bytes(self, released: Tensor) -> Tensor:
        """``k`` code values per sample in the release's precision, what :meth:`sent` transmits (not the decoded
        image)."""
        return torch.full((released.shape[0],), float(self.kept_dims * released.element_size()))

    def designated_model(self) -> nn.Module:
        return self.classifier

    def undefended_release(self, x: Tensor) -> Tensor:
        """Without the defense the client would send the image itself."""
        return x

    def fit(self, data, trainer):
        self.fit_classifier(data, trainer)
        self.fit_bottleneck(data, trainer)

    def fit_classifier(self, data, trainer) -> None:
        """Phase 1: train the target classifier on clean train images, then freeze it."""
        tc = self.train_config()
        epochs = tc.epochs if self.config.classifier_epochs is None else self.config.classifier_epochs
        group = {"classifier": ParamGroup(list(self.classifier.parameters()), tc.lr, tc.weight_decay, tc.optimizer)}
        trainer.fit(group, lambda b: {"classifier": self.task_loss(self.classifier(b.x), b.y)}, data.train,
                    epochs, tc.batch_size, modules=[self.classifier], desc="latent_masking/classifier")
        self.classifier.eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)

    def fit_bottleneck(self, data, trainer) -> None:
        """Phase 2: train the bottleneck through the frozen classifier; compute the mask after the warm-up."""
        tc, cfg = self.train_config(), self.config
        epochs = tc.epochs if cfg.bottleneck_epochs is None else cfg.bottleneck_epochs
        warmup = min(cfg.warmup_epochs, max(0, epochs - 1))
        self.classifier.eval()
        self.mask_epochs = []

        def on_epoch_start(epoch: int) -> None:
            if epoch >= warmup and (epoch - warmup) % cfg.mask_every == 0:
                self.update_mask(data.train, trainer)
                self.mask_epochs.append(epoch)

        vae = self.bottleneck
        group = {"bottleneck": ParamGroup(list(vae.parameters()), tc.lr, tc.weight_decay, tc.optimizer)}

        def step(b):
            mu, logvar = vae.encode(b.x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            ce = self.task_loss(self.classifier(vae.decode(z * vae.mask)), b.y)
            kl = kl_per_dim(mu, logvar).sum(1).mean()
            return {"bottleneck": ce + cfg.beta * kl, "ce": ce.detach(), "kl": kl.detach()}

        trainer.fit(group, step, data.train, epochs, tc.batch_size, modules=[vae], desc="latent_masking",
                    on_epoch_start=on_epoch_start, seed_offset=1)
        if not self.mask_epochs:  # no bottleneck epoch ran: still release exactly k dimensions
            self.update_mask(data.train, trainer)

    def latent_scores(self, split, trainer) -> tuple[Tensor, Tensor]:
        """Per-dimension mean KL and mean saliency through the frozen classifier, over ``mask_samples`` images."""
        vae, cfg = self.bottleneck, self.config
        was = vae.training
        vae.eval()
        kl_sum = torch.zeros(cfg.latent_dim, device=vae.mask.device)
        sal_sum = torch.zeros_like(kl_sum)
        count = 0
        for b in split.subset(cfg.mask_samples).batches(trainer.eval_batch_size):
            with torch.enable_grad(), trainer.autocast():
                with torch.no_grad():
                    mu, logvar = vae.encode(b.x)
                u = (mu * vae.mask).requires_grad_(True)
                ce = F.cross_entropy(self.classifier(vae.decode(u)).float(), b.y, reduction="sum")
                (grad,) = torch.autograd.grad(ce, u)
            sal = grad.abs() if cfg.saliency == "grad" else (grad * u.detach()).abs()
            kl_sum += kl_per_dim(mu, logvar).sum(0)
            sal_sum += sal.float().sum(0)
            count += len(b.x)
        vae.train(was)
        return kl_sum / max(count, 1), sal_sum / max(count, 1)

    @torch.no_grad()
    def update_mask(self, split, trainer) -> None:
        """Keep the k latent dimensions with the highest normalized KL x saliency score."""
        kl, sal = self.latent_scores(split, trainer)
        score = (kl / kl.max().clamp_min(1e-12)) * (sal / sal.max().clamp_min(1e-12))
        keep = score.topk(self.kept_dims).indices
        mask = torch.zeros_like(self.bottleneck.mask)
        mask[keep] = 1.0
        self.bottleneck.mask.copy_(mask)
