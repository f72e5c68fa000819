"""Small networks shared by methods (building blocks, not methods)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.kit.channels import as_spatial


class ReleaseDecoder(nn.Module):
    """Release -> image in [0, 1]: conv stem, log2(H/h) stride-2 transposed convs, [conv refine], conv head,
    sigmoid. Used by inversion attackers and by defenses that train against one.

    Args:
        in_channels, in_size: channels and side of the release (token releases are viewed as maps).
        out_shape: (C, H, W) of the images.
        width: channels of the stem.
        prior: optional [C, H, W] image in [0, 1] (an attacker's best constant guess, e.g. its mean aux image);
            the decoder then predicts the deviation from it in logit space, starting near it instead of at grey.
        min_width: with ``adapt_width``, the stem width halves each time the release's side doubles beyond 8,
            down to ``min(width, min_width)``, so an image-shaped release does not cost 16 times the compute.
        refine: add a conv-BN-ReLU at full resolution before the head.
    """

    def __init__(self, in_channels: int, in_size: int, out_shape: tuple[int, int, int], width: int = 64,
                 prior: torch.Tensor | None = None, min_width: int = 32, refine: bool = True,
                 adapt_width: bool = True):
        super().__init__()
        c_out, h_out, w_out = out_shape
        self.out_hw = (h_out, w_out)
        if adapt_width:
            width = max(min(width, min_width), width // max(1, in_size // 8))
        ups = max(0, round(math.log2(max(1, h_out // max(1, in_size)))))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True)]
        ch = width
        for _ in range(ups):
            nxt = max(16, ch // 2)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        head = nn.Conv2d(ch, c_out, 3, padding=1)  # created before the refine layer: fixes the init order
        if refine:
            layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(True)]
        layers.append(head)
        self.net = nn.Sequential(*layers)
        self.prior_logit: torch.Tensor | None
        if prior is None:
            self.prior_logit = None
        else:
            logit = torch.logit(prior.float().clamp(0.01, 0.99)).reshape(1, *out_shape)
            self.register_buffer("prior_logit", logit)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(as_spatial(z))
        if tuple(y.shape[-2:]) != self.out_hw:
            y = F.interpolate(y, size=self.out_hw, mode="bilinear", align_corners=False)
        y = y.float()
        return torch.sigmoid(y if self.prior_logit is None else y + self.prior_logit)
