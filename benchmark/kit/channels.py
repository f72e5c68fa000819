"""Channel masks on releases: where the channel axis is, applying a mask, and what a masked release costs.

Convolutional releases are ``[B, C, H, W]`` (channel axis 1); token releases (ViTs) are ``[B, T, D]`` and the
embedding axis 2 plays the role of channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def channel_dim(z: Tensor) -> int:
    if z.ndim == 4:
        return 1
    if z.ndim == 3:
        return 2
    if z.ndim == 2:
        return 1
    raise ValueError(f"cannot find the channel axis of a release of shape {tuple(z.shape)}")


def num_channels(z: Tensor) -> int:
    return z.shape[channel_dim(z)]


def apply_channel_mask(z: Tensor, mask: Tensor) -> Tensor:
    """Multiply ``z`` by a per-sample (``[B, C]``) or per-batch (``[C]``) channel mask."""
    if mask.ndim == 1:
        mask = mask.unsqueeze(0).expand(z.shape[0], -1)
    if z.ndim == 4:
        return z * mask[:, :, None, None].to(z.dtype)
    if z.ndim == 3:
        return z * mask[:, None, :].to(z.dtype)
    return z * mask.to(z.dtype)


def observed_mask(z: Tensor) -> Tensor:
    """Which channels of each sample carry any non-zero value (what a receiver sees was sent): ``[B, C]``."""
    d = channel_dim(z)
    other = [i for i in range(1, z.ndim) if i != d]
    nz = z != 0
    return nz.any(dim=tuple(other)) if other else nz


def channel_payload_bytes(z: Tensor, active: Tensor, bytes_per_value: int | None = None) -> Tensor:
    """Bytes per sample when only ``active`` channels are sent, plus a one-bit-per-channel mask."""
    if active.ndim == 1:
        active = active.unsqueeze(0).expand(z.shape[0], -1)
    d = channel_dim(z)
    per_channel = z[0].numel() // z.shape[d]
    bpv = z.element_size() if bytes_per_value is None else bytes_per_value
    c = z.shape[d]
    return active.float().sum(1).cpu() * per_channel * bpv + math.ceil(c / 8)


def random_channel_mask(c: int, prune: int, device: torch.device, generator: torch.Generator | None = None
                        ) -> Tensor:
    """A ``[C]`` mask with ``prune`` channels set to 0, chosen uniformly at random."""
    mask = torch.ones(c, device=device)
    if prune > 0:
        idx = torch.randperm(c, generator=generator)[:prune].to(device)
        mask[idx] = 0
    return mask


def as_spatial(z: Tensor) -> Tensor:
    """A release as a ``[B, C, h, w]`` map: token releases keep their last g*g (patch) tokens on a g x g grid,
    vectors become 1 x 1 maps."""
    if z.ndim == 4:
        return z
    if z.ndim == 3:
        b, t, d = z.shape
        g = int(math.isqrt(t))
        return z[:, t - g * g:, :].transpose(1, 2).reshape(b, d, g, g)
    if z.ndim == 2:
        return z[:, :, None, None]
    raise ValueError(f"cannot view a release of shape {tuple(z.shape)} as a feature map")
