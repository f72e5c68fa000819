"""Reconstruction: SSIM of the attacker's images against the eval images, on the scale of the gain over the
attacker's best constant guess.

Floor: SSIM0, the mean SSIM of the attacker's mean aux image (it holds aux, so it can always output that).
SSIM gain = ``(SSIM - SSIM0) / (1 - SSIM0)``: 0 = no better than the constant guess, 1 = perfect. PSNR (images in
[0, 1], MAX = 1) and the floor's PSNR are reported beside it. SSIM uses a Gaussian window 11, sigma 1.5 on
un-normalized images (:func:`benchmark.metrics.ssim`).
"""

from __future__ import annotations

from ..interfaces import AttackKind
from ..metrics import psnr, ssim
from .base import Scorer, Statistic, Truth, cpu_float, mean_of, safe_ratio


class ReconstructionScorer(Scorer):
    kind = AttackKind.RECONSTRUCTION
    finite = ("ssim", "psnr")

    def outcomes(self, out, truth: Truth):
        if out.images is None:
            raise RuntimeError("reconstruction attack returned no images")
        rec, img = cpu_float(out.images), cpu_float(truth.images)
        if tuple(rec.shape) != tuple(img.shape):
            raise RuntimeError(f"reconstructions have shape {tuple(rec.shape)}, expected {tuple(img.shape)}")
        base = cpu_float(truth.baseline).expand_as(img)
        return ({"ssim": ssim(rec, img).numpy(), "psnr": psnr(rec, img).numpy(),
                 "ssim_baseline": ssim(base, img).numpy(), "psnr_baseline": psnr(base, img).numpy()}, {})

    def statistics(self, samples) -> dict[str, Statistic]:
        s, s0 = mean_of(samples["ssim"]), mean_of(samples["ssim_baseline"])
        return {
            "ssim": s,
            "psnr": mean_of(samples["psnr"]),
            "ssim_baseline": s0,
            "psnr_baseline": mean_of(samples["psnr_baseline"]),
            "leakage": lambda idx: safe_ratio(s(idx) - s0(idx), 1.0 - s0(idx)),
        }
