"""The metric primitives splitbench reports, defined once (the scales built on them live in
:mod:`benchmark.measure.scoring`, one scorer per attack kind).

- utility: top-1 accuracy of the designated model on eval (stochastic releases: averaged over release draws);
  Δutility against the reference defense, paired per seed and sample.
- attribute leakage: the attacker's top-1 accuracy; floor c = the best guess of the attribute from the task label;
  advantage = (acc - c) / (1 - c).
- reconstruction leakage: PSNR (images in [0, 1], MAX = 1) and SSIM (Gaussian window 11, sigma 1.5, K1 = 0.01,
  K2 = 0.03, valid filtering, mean over channels), per image, on un-normalized images; floor = the attacker's best
  constant guess (its mean aux image); SSIM gain = (SSIM - SSIM0) / (1 - SSIM0). Pixel MSE beside them: the mean
  squared error over every pixel and channel of an image in [0, 1] (what UnSplit and other papers report).
- cross-model transfer: accuracy of each unintended model on the release; advantage over the task's majority rate;
  suppression ratio = utility / max unintended accuracy and its chance-corrected form.
- cost: client and server latency (p50, p90 over repeats, after warm-up, synchronised), payload bytes per sample
  as sent, client parameters and multiply-accumulates of everything that runs on the client (counted by
  :mod:`benchmark.kit.cost`, which methods use too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.errors import SplitbenchError

# name -> higher_is_better; every metric a record may carry is listed here (tests check this).
HIGHER_IS_BETTER: dict[str, bool] = {
    "utility": True,
    "val_utility": True,
    "leakage": False,
    "attribute_accuracy": False,
    "attribute_floor": False,
    "attribute_majority": False,
    "psnr": False,
    "ssim": False,
    "psnr_baseline": False,
    "ssim_baseline": False,
    "mse": True,
    "mse_baseline": True,
    "unintended_acc_max": False,
    "unintended_acc_mean": False,
    "unintended_chance": False,
    "transfer_advantage": False,
    "suppression_ratio_max": True,
    "suppression_ratio_corrected": True,
    "adaptive_unintended_acc_max": False,
    "adaptive_unintended_acc_mean": False,
    "adaptive_transfer_advantage": False,
    "adaptive_suppression_ratio_max": True,
    "adaptive_suppression_ratio_corrected": True,
    "payload_bytes": False,
    "client_params": False,
    "client_macs": False,
    "client_ms_b1_p50": False,
    "client_ms_b1_p90": False,
    "client_ms_bB_p50": False,
    "client_ms_bB_p90": False,
    "server_ms_b1_p50": False,
    "server_ms_b1_p90": False,
    "latency_batch": True,
    "eval_samples": True,
    "val_samples": True,
    "release_draws": True,
    "fit_seconds": False,
    "attack_seconds": False,
    "tuning_seconds": False,
    "fit_cpu_seconds": False,
    "attack_cpu_seconds": False,
    "tuning_cpu_seconds": False,
}


#: prefix of the figures of a client deployed on a suite's real backbone: ``deployed/NAME@SPLIT/<cost figure>``
DEPLOYED = "deployed/"

#: the costs a ratio to the reference is given for, and a suite's ``cost_budget`` may bound
COST_RATIOS = ("client_macs", "client_params", "payload_bytes")
COST_NAMES = {"client_macs": "client MACs", "client_params": "client parameters", "payload_bytes": "bytes sent"}


def check_cost_budget(budget: Any, where: str) -> dict[str, float]:
    """A cost budget as ``{cost: largest ratio to the reference}``, or a one-line error naming what is expected."""
    if not isinstance(budget, Mapping):
        raise SplitbenchError(f"{where}: expected a mapping of {', '.join(COST_RATIOS)} to a ratio, got {budget!r}")
    out = {}
    for k, v in budget.items():
        if k not in COST_RATIOS:
            raise SplitbenchError(f"{where}: unknown cost {k!r} (expected one of {', '.join(COST_RATIOS)})")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and math.isfinite(v)):
            raise SplitbenchError(f"{where}: {k} must be a positive ratio to the reference's, got {v!r}")
        out[str(k)] = float(v)
    return out


def higher_is_better(name: str) -> bool:
    """Direction of a metric; per-model metrics named ``unintended_acc/<model>`` are lower-is-better."""
    if name in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[name]
    base = name.split("/")[0]
    if base in ("unintended_acc", "adaptive_unintended_acc"):
        return False
    return HIGHER_IS_BETTER.get(base, False)


# -- classification -----------------------------------------------------------------------------------------
def accuracy(pred: Tensor, target: Tensor) -> float:
    """Top-1 accuracy; ``pred`` is class ids or logits."""
    if pred.ndim == 2:
        pred = pred.argmax(1)
    if len(target) == 0:
        raise ValueError("accuracy of an empty set")
    return float((pred.to(target.device) == target).float().mean())


def chance_rate(target: Tensor, num_classes: int | None = None) -> float:
    """Accuracy of always predicting the majority class of ``target``."""
    counts = torch.bincount(target.long().cpu(), minlength=num_classes or 0)
    return float(counts.max()) / float(len(target))


def suppression_ratio(utility: float, unintended_acc: float) -> float:
    """utility / unintended accuracy (Guo et al.'s (2026) suppression ratio); inf when unintended accuracy is 0."""
    if unintended_acc <= 0:
        return float("inf")
    return utility / unintended_acc


# -- reconstruction -----------------------------------------------------------------------------------------
def pixel_mse(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean squared error over every channel and pixel of images in [0, 1] (``x`` is clamped to [0, 1]),
    as PyTorch's ``MSELoss`` on one image: the reconstruction error papers such as UnSplit report."""
    return (x.float().clamp(0, 1) - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: Tensor, y: Tensor, max_val: float = 1.0) -> Tensor:
    """Per-image PSNR in dB of images in [0, 1] (``x`` is clamped to [0, 1]); capped at 100 dB."""
    x = x.float().clamp(0, 1)
    y = y.float()
    return 10.0 * torch.log10(max_val ** 2 / pixel_mse(x, y).clamp_min(1e-10))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g.float()


def ssim(x: Tensor, y: Tensor, max_val: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window, valid filtering, mean over channels.

    Images smaller than the window use a window as large as the image.
    """
    x = x.float().clamp(0, 1)
    y = y.float()
    c = x.shape[1]
    size = min(window, x.shape[-1], x.shape[-2])
    g = _gaussian_window(size, sigma, x.device)
    gh = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    gv = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def reconstruction_scores(recon: Tensor, truth: Tensor, baseline: Tensor) -> dict[str, float]:
    """PSNR / SSIM / pixel MSE of reconstructions and of a constant baseline image against the truth, all in
    [0, 1]."""
    base = baseline.to(truth.device).float().expand_as(truth)
    return {
        "psnr": float(psnr(recon, truth).mean()),
        "ssim": float(ssim(recon, truth).mean()),
        "mse": float(pixel_mse(recon, truth).mean()),
        "psnr_baseline": float(psnr(base, truth).mean()),
        "ssim_baseline": float(ssim(base, truth).mean()),
        "mse_baseline": float(pixel_mse(base, truth).mean()),
    }
