"""Metric definitions against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from benchmark import cost as C
from benchmark import metrics as M


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one [C, H, W] pair: Gaussian 11 / 1.5 window, valid region, K = 0.01, 0.03 (Wang et al.)."""
    coords = np.arange(11) - 5.0
    g = np.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()

    def blur(a):
        a = correlate1d(a, g, axis=0, mode="constant")
        a = correlate1d(a, g, axis=1, mode="constant")
        return a[5:-5, 5:-5]

    vals = []
    for c in range(x.shape[0]):
        a, b = x[c].astype(np.float64), y[c].astype(np.float64)
        mu_a, mu_b = blur(a), blur(b)
        saa = blur(a * a) - mu_a ** 2
        sbb = blur(b * b) - mu_b ** 2
        sab = blur(a * b) - mu_a * mu_b
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def test_ssim_matches_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    ours = M.ssim(y, x)
    for i in range(3):
        assert ours[i].item() == pytest.approx(reference_ssim(y[i].numpy(), x[i].numpy()), abs=1e-5)


def test_ssim_identity_and_bounds():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(M.ssim(x, x), torch.ones(2), atol=1e-5)
    assert (M.ssim(torch.rand(2, 3, 32, 32), x) < 0.2).all()


def test_psnr_known_value_and_max_one():
    x = torch.full((1, 3, 8, 8), 0.5)
    y = x + 0.1  # mse = 0.01 -> 20 dB with MAX = 1
    assert M.psnr(y, x).item() == pytest.approx(20.0, abs=1e-4)
    assert M.psnr(x, x).item() == pytest.approx(100.0)  # capped


def test_psnr_clamps_reconstructions():
    x = torch.zeros(1, 3, 4, 4)
    assert M.psnr(torch.full_like(x, -5.0), x).item() == pytest.approx(100.0)


def test_reconstruction_scores_include_the_constant_baseline():
    truth = torch.rand(4, 3, 16, 16)
    s = M.reconstruction_scores(truth.clone(), truth, truth.mean(0, keepdim=True))
    assert s["psnr"] > s["psnr_baseline"] and s["ssim"] > s["ssim_baseline"]


def test_accuracy_and_chance():
    y = torch.tensor([0, 0, 0, 1])
    assert M.accuracy(torch.tensor([0, 0, 1, 1]), y) == 0.75
    assert M.accuracy(torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]]), y) == 0.75
    assert M.chance_rate(y) == 0.75


def test_suppression_ratio():
    assert M.suppression_ratio(0.72, 0.016) == pytest.approx(45.0)
    assert M.suppression_ratio(0.7, 0.0) == math.inf


def test_macs_of_a_known_conv():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.zeros(4, 3, 10, 10)
    assert C.count_macs(conv, x) == 8 * 3 * 9 * 10 * 10


def test_params_used_counts_only_what_runs():
    a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 100)
    root = torch.nn.ModuleDict({"a": a, "b": b})
    assert C.count_params_used(a, torch.zeros(1, 4), root) == 20


def test_latency_is_positive_and_ordered():
    p50, p90 = C.latency_ms(lambda x: x @ x, torch.randn(64, 64), warmup=1, repeats=5)
    assert 0 < p50 <= p90


def test_every_metric_has_a_direction():
    assert M.higher_is_better("utility") and not M.higher_is_better("leakage")
    assert not M.higher_is_better("unintended_acc/test_vit")
