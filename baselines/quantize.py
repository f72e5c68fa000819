"""``quantize``: uniform ``bits``-bit quantisation of the release per channel, a compression baseline.

Not a privacy method from a paper but the compression control every pruning or masking defense should be compared
with: fewer bits also means less information sent and, past some point, less to invert. splitbench's choices [inf]:

1. Client and server are trained end to end on the task exactly as ``no_pruning``.
2. Each channel's range is the minimum and maximum of the clean releases over the training split (measured once,
   stored with the model); the deployed client sends, per element, the index of the nearest of ``2^bits`` evenly
   spaced levels of its channel's range (values outside are clipped to it), and the server reads the level's value.
3. The server alone is then fine-tuned on the quantised releases for ``finetune_epochs`` (the client frozen), so it
   learns to read them.
4. ``bits >= 32`` sends the float32 release itself: the model is ``no_pruning``'s, weight for weight.
5. Bytes sent: ``bits`` per element (the ranges are fixed after training and known to the server).
6. White-box attackers differentiate through the rounding with a straight-through estimator (its forward value is
   the quantised release, its gradient the identity), the usual way to attack a non-differentiable step.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field
from benchmark.kit.channels import channel_dim
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(DefenseConfig):
    bits: int = field(4, "the knob: bits per release element (>= 32: the float32 release as it is)")
    finetune_epochs: int = field(2, "epochs of server fine-tuning on quantised releases (client frozen)")

    def validate(self) -> None:
        if self.bits < 1:
            raise ValueError(f"bits must be >= 1, got {self.bits}")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


def _per_channel(v: Tensor, z: Tensor) -> Tensor:
    shape = [1] * z.ndim
    shape[channel_dim(z)] = -1
    return v.view(shape)


@register_defense("quantize")
class Quantize(Defense):
    Config = QuantizeConfig
    knob = "bits"
    knob_grid = (1, 2, 4, 8)
    knob_more_private = "lower"
    smoke_config = {"finetune_epochs": 1}
    card = MethodCard(
        paper="Compression control: uniform affine quantisation (Jacob et al.: Quantization and Training of Neural "
              "Networks for Efficient Integer-Arithmetic-Only Inference, CVPR 2018) applied to the release",
        year=2018,
        url="https://arxiv.org/abs/1712.05877",
        threat_model="honest-but-curious server sees the client activations quantised to a few bits per element",
        knob="bits: bits per element; lower = coarser release, fewer bytes, less utility",
        inferred=("per-channel ranges = min and max of the clean releases over the training split",
                  "uniform levels, nearest-level rounding, clipping outside the range",
                  "server fine-tuned on quantised releases for 2 epochs, client frozen",
                  "white-box attackers use a straight-through estimator through the rounding",
                  "bits >= 32 means no quantisation (the float32 release)"),
        code="",
    )

    def build(self) -> None:
        super().build()
        z = self.probe_client()
        c = z.shape[channel_dim(z)]
        self.register_buffer("lo", torch.zeros(c))
        self.register_buffer("hi", torch.ones(c))

    @property
    def quantizing(self) -> bool:
        return self.config.bits < 32

    def quantize(self, z: Tensor) -> Tensor:
        """The dequantised release: each element at the nearest of its channel's 2^bits levels (straight-through
        gradient)."""
        lo, hi = _per_channel(self.lo, z).to(z.dtype), _per_channel(self.hi, z).to(z.dtype)
        step = (hi - lo).clamp_min(1e-12) / (2 ** self.config.bits - 1)
        q = torch.round(((z - lo) / step).clamp(0, 2 ** self.config.bits - 1)) * step + lo
        return q + (z - z.detach())  # exactly q (z - z.detach() is an exact zero), gradient the identity

    def release(self, x: Tensor) -> Tensor:
        z = self.client(x)
        return self.quantize(z) if self.quantizing else z

    def payload_bytes(self, released: Tensor) -> Tensor:
        if not self.quantizing:
            return super().payload_bytes(released)
        return torch.full((released.shape[0],), float(math.ceil(released[0].numel() * self.config.bits / 8)))

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.client, [self.client, self.server], "quantize (task)")
        if not self.quantizing:
            return
        self.client.eval()
        def extremes(b):
            z = self.client(b.x)
            flat = z.movedim(channel_dim(z), -1).reshape(-1, z.shape[channel_dim(z)])
            return torch.stack([flat.min(0).values, flat.max(0).values])[None]

        with torch.no_grad():
            ranges = trainer.map(extremes, data.train)
        self.lo.copy_(ranges[:, 0].min(0).values)
        self.hi.copy_(ranges[:, 1].max(0).values)
        cfg, tc = self.config, self.train_config()
        frozen = list(self.client.parameters())
        for p in frozen:
            p.requires_grad_(False)

        def step(batch):
            with torch.no_grad():
                z = self.quantize(self.client(batch.x))
            return {"server": self.task_loss(self.server(z), batch.y)}

        trainer.fit({"server": ParamGroup(list(self.server.parameters()), tc.lr, tc.weight_decay, tc.optimizer)},
                    step, data.train, cfg.finetune_epochs, tc.batch_size, modules=[self.server],
                    desc="quantize (server fine-tuning)", seed_offset=11)
        for p in frozen:
            p.requires_grad_(True)
