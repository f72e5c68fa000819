"""Metric definitions against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.kit import cost as C
from benchmark.measure import metrics as M


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


# -- scikit-image as an independent reference ---------------------------------------------------------------------
# Our SSIM is Wang et al.'s: an 11-tap Gaussian window with sigma 1.5, population (not sample) covariances,
# K1 = 0.01, K2 = 0.03, data range 1, the mean over the region the window fits in, then over channels. In
# scikit-image that is gaussian_weights=True, sigma=1.5 (its truncation at 3.5 sigma gives the same 11 taps and
# crops the same border), use_sample_covariance=False, data_range=1.0, and channel_axis for colour images.
SKIMAGE_SSIM = {"data_range": 1.0, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
# Ours computes in float32, scikit-image in float64: on smooth images each local variance is a small difference
# of two larger blurred moments, where float32 costs up to about 3e-5 of SSIM (random images: about 3e-7).
# Redone in float64, ours agrees with scikit-image to about 5e-7 on the same smooth images.
SSIM_TOL, PSNR_TOL_DB = 5e-5, 1e-4


def skimage_ssim(truth: np.ndarray, recon: np.ndarray) -> float:
    """scikit-image's SSIM of one [C, H, W] pair with the settings of our definition."""
    if truth.shape[0] == 1:
        return float(structural_similarity(truth[0], recon[0], **SKIMAGE_SSIM))
    return float(structural_similarity(truth, recon, channel_axis=0, **SKIMAGE_SSIM))


def assert_matches_skimage(truth: np.ndarray, recon: np.ndarray, what: str = "") -> None:
    """Our per-image SSIM and PSNR of a batch [N, C, H, W] against scikit-image's, image by image (an exact
    reconstruction, infinite PSNR for scikit-image, is capped at 100 dB by ours)."""
    ssim = M.ssim(torch.from_numpy(recon), torch.from_numpy(truth))
    psnr = M.psnr(torch.from_numpy(recon), torch.from_numpy(truth))
    assert ssim.shape == psnr.shape == (len(truth),)
    for i, (t, r) in enumerate(zip(truth, recon)):
        image = f"{what} image {i}".lstrip()
        assert ssim[i].item() == pytest.approx(skimage_ssim(t, r), abs=SSIM_TOL), f"SSIM of {image}"
        with np.errstate(divide="ignore"):
            ref = peak_signal_noise_ratio(t, r, data_range=1.0)
        expected = 100.0 if ref == math.inf else ref
        assert psnr[i].item() == pytest.approx(expected, abs=PSNR_TOL_DB), f"PSNR of {image}"


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 11, 11), (3, 28, 40)],
                         ids=["gray-28", "rgb-32", "rgb-11-one-window", "rgb-28x40"])
def test_ssim_and_psnr_match_scikit_image_on_random_images(shape):
    """Uniform noise images against noisier copies of themselves (clipped to [0, 1]), from nearly equal to far
    apart, one batch per shape so that the batch's images are also checked to be scored apart. Non-square and
    window-sized images included; images smaller than the window have no scikit-image counterpart (ours shrinks
    the window to the image, scikit-image refuses them)."""
    rng = np.random.default_rng(7)
    truth = rng.random((5, *shape))
    noise = rng.normal(size=truth.shape) * np.array([0.01, 0.05, 0.1, 0.3, 1.0]).reshape(-1, 1, 1, 1)
    assert_matches_skimage(truth, np.clip(truth + noise, 0.0, 1.0))


def _patterns(h: int = 32, w: int = 32) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h - 1, w - 1]).reshape(2, 1, 1)
    return {"gradient": 0.1 + 0.8 * xx,
            "waves": 0.5 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy),
            "checkerboard": 0.05 + 0.9 * ((np.floor(8 * xx) + np.floor(8 * yy)) % 2),
            "disk": (((xx - 0.5) ** 2 + (yy - 0.3) ** 2) < 0.1).astype(float)}


DISTORTIONS = {
    "blur": lambda a: gaussian_filter(a, 1.0, axes=(-2, -1)),
    "brighter": lambda a: np.clip(a + 0.1, 0.0, 1.0),
    "less contrast": lambda a: 0.5 + 0.5 * (a - 0.5),
    "shifted": lambda a: np.roll(a, 2, axis=-1),
    "inverted": lambda a: 1.0 - a,  # negative SSIM
    "quantized": lambda a: np.round(a * 7) / 7,
    "mean image": lambda a: np.full_like(a, a.mean()),  # the constant baseline the scores are compared with
    "black": np.zeros_like,
}


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_ssim_and_psnr_match_scikit_image_on_structured_images(channels):
    """Smooth, periodic and sharp-edged images under blur, brightness, contrast, shift, inversion, quantization
    and replacement by a constant (SSIM from about 1 down to below 0); colour images get a different pattern per
    channel. These are where float32 moments lose the most (see ``SSIM_TOL``)."""
    for name, p in _patterns().items():
        truth = np.stack([p, np.roll(p, 5, axis=1), 1.0 - p][:channels]) if channels == 3 else p[None]
        recon = np.stack([d(truth) for d in DISTORTIONS.values()])
        assert_matches_skimage(np.repeat(truth[None], len(DISTORTIONS), axis=0), recon, name)


def test_reconstructions_are_clipped_and_exact_ones_capped_unlike_scikit_image():
    """By design, ours clips the reconstruction (not the truth) to [0, 1] before scoring, so it equals
    scikit-image's scores of the clipped reconstruction; and an exact reconstruction scores 100 dB of PSNR where
    scikit-image gives infinity."""
    rng = np.random.default_rng(3)
    truth = rng.random((2, 3, 16, 16))
    recon = truth + rng.normal(0.0, 0.8, truth.shape)  # far outside [0, 1]
    ours_ssim = M.ssim(torch.from_numpy(recon), torch.from_numpy(truth))
    ours_psnr = M.psnr(torch.from_numpy(recon), torch.from_numpy(truth))
    for i in range(2):
        clipped = np.clip(recon[i], 0.0, 1.0)
        assert ours_ssim[i].item() == pytest.approx(skimage_ssim(truth[i], clipped), abs=SSIM_TOL)
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(truth[i], clipped, data_range=1.0),
                                                    abs=PSNR_TOL_DB)
        assert abs(ours_ssim[i].item() - skimage_ssim(truth[i], recon[i])) > 1e-3  # the clipping matters here
    with np.errstate(divide="ignore"):
        assert peak_signal_noise_ratio(truth[0], truth[0], data_range=1.0) == math.inf
    assert M.psnr(torch.from_numpy(truth), torch.from_numpy(truth)).tolist() == pytest.approx([100.0, 100.0])


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
