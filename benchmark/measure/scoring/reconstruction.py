"""Reconstruction: SSIM of the attacker's images against the eval images, on the scale of the gain over the
attacker's best constant guess.

Floor: SSIM0, the mean SSIM of the attacker's best guess from the task label alone: its mean aux image of the
sample's task class (it holds labelled aux, and the server legitimately learns the task, as for the attribute
floor). SSIM gain = ``(SSIM - SSIM0) / (1 - SSIM0)``: 0 = no better than that guess ("at floor" below it;
``leakage_raw`` keeps the signed figure), 1 = perfect. PSNR (images in [0, 1], MAX = 1) and the floor's PSNR are
reported beside it, and so is the pixel MSE (per image over every channel and pixel in [0, 1], the figure UnSplit
and other papers report; records made before it existed have none). SSIM uses a Gaussian window 11, sigma 1.5 on
un-normalized images (:func:`benchmark.measure.metrics.ssim`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark.api.contract import AttackKind
from benchmark.measure.metrics import pixel_mse, psnr, ssim
from benchmark.measure.scoring.base import Scorer, Statistic, Truth, at_floor, cpu_float, mean_of, safe_ratio


def floor_images(images: Tensor, task: Tensor, num_task_classes: int) -> Tensor:
    """The attacker's best guess of an image from its task label: the mean of its (aux) ``images`` (uint8
    ``[N, C, H, W]``) of each task class, as floats in [0, 1], ``[num_task_classes, C, H, W]``; a class with no
    image gets the mean of all of them."""
    x = images.float() / 255.0
    overall = x.mean(0)
    out = overall.expand(num_task_classes, *overall.shape).clone()
    task = task.to(x.device).long()
    for k in range(num_task_classes):
        mine = task == k
        if bool(mine.any()):
            out[k] = x[mine].mean(0)
    return out


def _rows_baseline(baseline: Tensor, task: Tensor, like: Tensor) -> Tensor:
    base = cpu_float(baseline)
    if base.shape[0] == 1:
        return base.expand_as(like)
    return base[torch.as_tensor(task).detach().cpu().long()]


class ReconstructionScorer(Scorer):
    kind = AttackKind.RECONSTRUCTION
    finite = ("ssim", "psnr")

    def outcomes(self, out, truth: Truth):
        if out.images is None:
            raise RuntimeError("reconstruction attack returned no images")
        rec, img = cpu_float(out.images), cpu_float(truth.images)
        if tuple(rec.shape) != tuple(img.shape):
            raise RuntimeError(f"reconstructions have shape {tuple(rec.shape)}, expected {tuple(img.shape)}")
        base = _rows_baseline(truth.baseline, truth.task, img)
        return ({"ssim": ssim(rec, img).numpy(), "psnr": psnr(rec, img).numpy(), "mse": pixel_mse(rec, img).numpy(),
                 "ssim_baseline": ssim(base, img).numpy(), "psnr_baseline": psnr(base, img).numpy(),
                 "mse_baseline": pixel_mse(base, img).numpy()}, {})

    def statistics(self, samples) -> dict[str, Statistic]:
        s, s0 = mean_of(samples["ssim"]), mean_of(samples["ssim_baseline"])
        def raw(draw):
            return safe_ratio(s(draw) - s0(draw), 1.0 - s0(draw))

        out = {
            "ssim": s,
            "psnr": mean_of(samples["psnr"]),
            "ssim_baseline": s0,
            "psnr_baseline": mean_of(samples["psnr_baseline"]),
            "leakage_raw": raw,
            "leakage": at_floor(raw),
        }
        for name in ("mse", "mse_baseline"):  # absent from records made before the figure existed
            if name in samples:
                out[name] = mean_of(samples[name])
        return out

    def brief(self, metrics) -> str:
        line = super().brief(metrics)
        if "ssim" in metrics:
            line += (f", SSIM {metrics['ssim']:.3f} (floor {metrics['ssim_baseline']:.3f}), "
                     f"PSNR {metrics['psnr']:.2f} dB")
        return line
