"""Scorers and intervals: each attack kind's scale against hand-computed values, per-sample outcomes averaged over
release draws, and a coverage check of the bootstrap interval on data with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.interfaces import AttackKind, AttackOutput
from benchmark.scoring import Truth, scorer_for
from benchmark.scoring.attribute import best_guess_from
from benchmark.scoring.intervals import bootstrap, bootstrap_combined, resample_indices


def truth(n, images=None, task=None, sensitive=None, utility=None, draws=1):
    sample = np.tile(np.arange(n), draws)
    task = torch.as_tensor(task if task is not None else np.arange(n) % 2)[sample]
    sens = torch.as_tensor(sensitive if sensitive is not None else np.arange(n) % 10)[sample]
    return Truth(sample=sample, task=task, sensitive=sens,
                 images=None if images is None else images[sample], baseline=None if images is None else
                 images.mean(0, keepdim=True), utility_correct=np.asarray(utility if utility is not None
                                                                          else np.ones(n)),
                 num_task_classes=2, num_sensitive_classes=10)


def test_best_guess_from_the_task_label():
    task = np.array([0, 0, 0, 1, 1, 1])
    sens = np.array([5, 5, 6, 7, 8, 9])
    # y=0: best guess 5 (2 of 3); y=1: any (1 of 3) -> (2 + 1) / 6
    assert best_guess_from(task, sens, np.arange(6)[None]) == pytest.approx([0.5])


def test_attribute_advantage_over_the_task_floor():
    n = 100
    sens = np.arange(n) % 10
    pred = sens.copy()
    pred[:40] = (pred[:40] + 1) % 10  # 60% right
    metrics, samples = scorer_for("attribute").score(AttackOutput(torch.arange(n), attributes=torch.as_tensor(pred)),
                                                     truth(n))
    assert metrics["attribute_accuracy"] == pytest.approx(0.6)
    assert metrics["attribute_floor"] == pytest.approx(0.2) and metrics["attribute_majority"] == pytest.approx(0.1)
    assert metrics["leakage"] == pytest.approx((0.6 - 0.2) / 0.8)
    assert set(samples) == {"sample", "correct", "task", "sensitive"}


def test_outcomes_of_several_release_draws_are_averaged_per_sample():
    n = 10
    sens = np.arange(n) % 10
    pred = np.concatenate([sens, (sens + 1) % 10])  # draw 0 all right, draw 1 all wrong
    metrics, samples = scorer_for("attribute").score(
        AttackOutput(torch.arange(2 * n), attributes=torch.as_tensor(pred)), truth(n, draws=2))
    assert len(samples["sample"]) == n and np.allclose(samples["correct"], 0.5)
    assert metrics["attribute_accuracy"] == pytest.approx(0.5)


def test_reconstruction_gain_over_the_mean_image():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=g)
    perfect, _ = scorer_for(AttackKind.RECONSTRUCTION).score(AttackOutput(torch.arange(8), images=images.clone()),
                                                             truth(8, images))
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-4) and perfect["leakage"] == pytest.approx(1.0, abs=1e-4)
    constant, _ = scorer_for("reconstruction").score(
        AttackOutput(torch.arange(8), images=images.mean(0, keepdim=True).expand(8, -1, -1, -1)), truth(8, images))
    assert constant["leakage"] == pytest.approx(0.0, abs=1e-5)
    assert constant["psnr"] == pytest.approx(constant["psnr_baseline"])


def test_transfer_advantage_and_the_chance_corrected_ratio():
    n = 100
    task = np.arange(n) % 2
    plain = task.copy()
    plain[:30] = 1 - plain[:30]    # 70%
    adaptive = task.copy()
    adaptive[:10] = 1 - adaptive[:10]  # 90%
    utility = np.r_[np.zeros(5), np.ones(95)]
    out = AttackOutput(torch.arange(n), task_predictions={"m": torch.as_tensor(plain)},
                       extra_task_predictions={"m": torch.as_tensor(adaptive)})
    m, _ = scorer_for("transfer").score(out, truth(n, utility=utility))
    assert m["unintended_acc_max"] == pytest.approx(0.7) and m["adaptive_unintended_acc_max"] == pytest.approx(0.9)
    assert m["transfer_advantage"] == pytest.approx(0.4) and m["leakage"] == pytest.approx(0.8)  # adaptive headline
    assert m["suppression_ratio_max"] == pytest.approx(0.95 / 0.7)
    assert m["suppression_ratio_corrected"] == pytest.approx((0.95 - 0.5) / (0.7 - 0.5))


def test_the_interval_covers_a_known_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    p, n, reps, covered = 0.3, 200, 300, 0
    for i in range(reps):
        x = (rng.random(n) < p).astype(float)
        est = bootstrap(lambda idx, x=x: x[idx].mean(1), [n], replicates=400, seed=i)
        covered += est.lo <= p <= est.hi
    rate = covered / reps
    assert 0.90 <= rate <= 0.985, rate


def test_seeds_are_resampled_as_groups():
    rng = np.random.default_rng(0)
    idx = resample_indices([5, 5, 5], 200, rng)
    assert idx.shape == (200, 15)
    blocks = idx.reshape(200, 3, 5) // 5  # the group each block came from
    assert (blocks == blocks[:, :, :1]).all()  # a block never mixes seeds
    assert len(np.unique(blocks[:, :, 0])) == 3


def test_combined_parts_take_the_worse_and_cover_it():
    a = np.r_[np.ones(50), np.zeros(50)]
    b = np.r_[np.ones(80), np.zeros(20)]
    est = bootstrap_combined([(lambda i: a[i].mean(1), [100]), (lambda i: b[i].mean(1), [100])], replicates=500)
    assert est.value == pytest.approx(0.8) and est.lo < 0.8 < est.hi


def test_bad_replicate_counts():
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap(lambda i: i.mean(1), [3], replicates=0)
    est = bootstrap(lambda i: np.ones(len(i)), [3], replicates=1)
    assert est.value == 1.0 and math.isnan(est.lo)
