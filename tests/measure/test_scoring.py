"""Scorers and intervals: each attack kind's scale against hand-computed values, per-sample outcomes averaged over
release draws, and a coverage check of the bootstrap interval on data with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.api.contract import AttackKind, AttackOutput
from benchmark.measure.intervals import (
    CrossedDraw,
    IndexDraw,
    TrackResample,
    bootstrap,
    estimate,
    identity,
    rank_intervals,
)
from benchmark.measure.scoring import Truth, scorer_for
from benchmark.measure.scoring.attribute import best_guess_from
from benchmark.measure.scoring.reconstruction import floor_images


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
        est = bootstrap(lambda d, x=x: d.mean(x), [n], replicates=400, seed=i)
        covered += est.lo <= p <= est.hi
    rate = covered / reps
    assert 0.90 <= rate <= 0.985, rate


def _nested(x: np.ndarray, replicates: int, rng: np.random.Generator) -> tuple[float, float]:
    """The old two-level bootstrap (seeds, then each drawn seed's own samples), for comparison."""
    k, n = x.shape
    seeds = rng.integers(0, k, size=(replicates, k))
    within = rng.integers(0, n, size=(replicates, k, n))
    vals = x[seeds[:, :, None], within].mean(axis=(1, 2))
    return tuple(np.quantile(vals, [0.025, 0.975]))


def test_the_crossed_interval_covers_a_mean_with_seed_and_sample_effects_and_the_nested_one_does_not():
    # outcome(seed s, sample i) = mu + seed effect + sample effect + noise: every seed sees the same samples, so
    # the sample effects are shared; a bootstrap that draws samples per seed independently misses that
    rng = np.random.default_rng(7)
    mu, k, n, trials = 0.5, 10, 100, 200
    crossed = nested = 0
    for t in range(trials):
        x = mu + rng.normal(0, 0.05, size=(k, 1)) + rng.normal(0, 0.25, size=(1, n)) + rng.normal(0, 0.1, (k, n))
        est = bootstrap(lambda d, v=x.ravel(): d.mean(v), [n] * k, replicates=300, seed=t)
        crossed += est.lo <= mu <= est.hi
        lo, hi = _nested(x, 300, rng)
        nested += lo <= mu <= hi
    assert crossed / trials >= 0.9, crossed / trials
    assert nested / trials < 0.8, nested / trials  # too narrow: it treats shared samples as independent


def test_a_crossed_draw_weighs_each_seed_sample_pair_by_both_counts():
    x = np.arange(6, dtype=float)  # 2 seeds x 3 samples, pooled seed after seed
    d = CrossedDraw(np.array([[2.0, 0.0]]), np.array([[0.0, 1.0, 2.0]]))
    assert d.mean(x)[0] == pytest.approx((1 + 2 * 2) / 3)  # seed 0 twice; samples 1 once and 2 twice
    assert identity(2, 3).mean(x)[0] == pytest.approx(x.mean())
    assert d.mean(np.stack([x, 2 * x])).shape == (2, 1)  # leading axes (e.g. several models) are kept


def test_the_track_draw_is_stratified_so_a_prefix_is_a_draw_of_its_own_samples():
    r = TrackResample([0, 1, 2], [32, 100], 50, 200, key=("t",))
    short, full = r.draw(3, 32), r.draw(3, 100)
    assert (short.sample_counts.sum(1) == 32).all() and (full.sample_counts.sum(1) == 100).all()
    assert np.array_equal(full.sample_counts[:, :32], short.sample_counts)  # the same draw, restricted
    assert np.array_equal(short.seed_counts, full.seed_counts)  # and the same seeds for every kind
    assert (r.draw(3, 50, "val").sample_counts.sum(1) == 50).all()
    again = TrackResample([0, 1, 2], [32, 100], 50, 200, key=("t",))
    assert np.array_equal(again.draw(3, 32).sample_counts, short.sample_counts)  # same track, same draw
    with pytest.raises(ValueError, match="prefixes"):
        r.draw(3, 40)


def test_rank_intervals_come_from_the_replicates():
    reps = np.array([[0.1, 0.2, 0.1, 0.3], [0.2, 0.1, 0.2, 0.1], [0.9, 0.9, 0.8, 0.9]])
    (pa, la, ha), (pb, lb, hb), (pc, lc, hc) = rank_intervals([0.15, 0.16, 0.9], reps)
    assert (pa, pb, pc) == (1, 2, 3)
    assert (la, ha) == (1, 2) and (lb, hb) == (1, 2) and (lc, hc) == (3, 3)
    # a row absent from a replicate (NaN: not admitted there) is ranked only where it takes part
    reps[0, :] = [np.nan, np.nan, 0.05, 0.05]
    assert rank_intervals([0.05, 0.16, 0.9], reps)[0] == (1, 1, 1)
    assert rank_intervals([math.nan, 0.1], None) == [(0, 0, 0), (1, 1, 1)]


def test_the_reconstruction_floor_is_the_mean_aux_image_of_the_task_class():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images[2:] = 255
    task = torch.tensor([0, 0, 1, 1])
    floors = floor_images(images, task, 3)
    assert floors.shape == (3, 1, 2, 2)
    assert floors[0].max() == 0 and floors[1].min() == 1  # each class its own mean
    assert torch.allclose(floors[2], torch.full((1, 2, 2), 0.5))  # a class without aux images: the overall mean
    # scored: an attacker that outputs the class mean is at the floor exactly
    n = 8
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(n, 3, 16, 16, generator=g)
    t = truth(n, imgs)
    t.baseline = torch.stack([imgs[0::2].mean(0), imgs[1::2].mean(0)])  # task = index % 2
    m, _ = scorer_for("reconstruction").score(AttackOutput(torch.arange(n), images=t.baseline[torch.arange(n) % 2]),
                                              t)
    assert m["leakage"] == pytest.approx(0.0, abs=1e-6) and m["leakage_raw"] == pytest.approx(0.0, abs=1e-6)


def test_leakage_below_the_floor_is_at_floor_and_the_signed_figure_is_kept():
    n = 100
    sens = np.arange(n) % 10
    pred = (sens + 1) % 10
    pred[:10] = sens[:10]  # 10% right, below the task-label floor of 20%
    m, _ = scorer_for("attribute").score(AttackOutput(torch.arange(n), attributes=torch.as_tensor(pred)), truth(n))
    assert m["leakage"] == 0.0 and m["leakage_raw"] == pytest.approx((0.1 - 0.2) / 0.8)


def test_estimates_from_replicates():
    e = estimate(0.5, np.linspace(0, 1, 101))
    assert e.value == 0.5 and e.lo == pytest.approx(0.025) and e.hi == pytest.approx(0.975)
    assert not estimate(0.5, None).has_interval


def test_an_index_draw_means_the_indexed_samples():
    d = IndexDraw(np.array([[0, 0, 1], [2, 2, 2]]))
    assert np.allclose(d.mean(np.array([0.0, 3.0, 6.0])), [1.0, 6.0]) and len(d) == 2


def test_bad_replicate_counts():
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap(lambda d: d.mean(np.ones(3)), [3], replicates=0)
    est = bootstrap(lambda d: np.ones(len(d)), [3], replicates=1)
    assert est.value == 1.0 and math.isnan(est.lo)
    with pytest.raises(ValueError, match="same positive number"):
        bootstrap(lambda d: d.mean(np.ones(5)), [3, 2])
