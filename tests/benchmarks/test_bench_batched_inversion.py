"""Throughput of batched vs image-by-image white-box inversion (rMLE, deep image prior, learned prior), same device.

Slow lane only (``pytest -m slow -s tests/benchmarks``). Prints images per second of one batched
optimisation over ``SPLITBENCH_BENCH_IMAGES`` eval releases against the per-image loop (``batch_size=1``) on the
first ``SPLITBENCH_BENCH_SINGLE`` of them, each for ``SPLITBENCH_BENCH_STEPS`` steps, and the speed-up; the
statistics of the batched run over ``SPLITBENCH_BENCH_ROUNDS`` rounds go to pytest-benchmark (``--benchmark-json``,
``--benchmark-compare``).

Environment:
    SPLITBENCH_BENCH_DEVICE: cpu (default) or cuda.
    SPLITBENCH_BENCH_IMAGES: releases in the batched run (default 256 on cuda, 32 on cpu).
    SPLITBENCH_BENCH_SINGLE: releases timed one by one (default 16 on cuda, 8 on cpu).
    SPLITBENCH_BENCH_STEPS: optimisation steps per image (default 20).
    SPLITBENCH_BENCH_ROUNDS: timed rounds of the batched run (default 3).
    SPLITBENCH_BENCH_DIP: generator size, ``quick`` (default: 3 levels of 8/16/32 channels, 3x3 kernels) or
        ``paper`` (DIP's defaults, capped to 4 levels at 32 px).
    SPLITBENCH_BENCH_CONV: comma-separated ``conv_impl`` values the deep-image-prior figures are taken for
        (default ``auto``; e.g. ``auto,grouped,unfold`` to compare them on a new device).

The client is the quick suite's (test_resnet cut after layer1, 32-px digits, randomly initialised: the cost
of an inversion does not depend on how well the client was trained). The learned prior is trained once in the
warm-up and read from the cache afterwards, so only its latent search and pixel steps are timed.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import torch

import attacks.deep_image_prior as dip
from attacks.deep_image_prior import DeepImagePrior, DeepImagePriorConfig
from attacks.learned_prior import LearnedPriorConfig, LearnedPriorInversion
from attacks.optimization import RMLEConfig, RMLEInversion
from benchmark.api.contract import Access
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from benchmark.models.trainer import Trainer
from benchmark.store.cache import ModelCache
from tests.support.helpers import make_target, smoke_defense

pytestmark = pytest.mark.slow

DEVICE = os.environ.get("SPLITBENCH_BENCH_DEVICE", "cpu")
CUDA = DEVICE.startswith("cuda")
IMAGES = int(os.environ.get("SPLITBENCH_BENCH_IMAGES", 256 if CUDA else 32))
SINGLE = int(os.environ.get("SPLITBENCH_BENCH_SINGLE", 16 if CUDA else 8))
STEPS = int(os.environ.get("SPLITBENCH_BENCH_STEPS", 20))
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", 3))
DIP_SIZE = os.environ.get("SPLITBENCH_BENCH_DIP", "quick")
CONV = [c.strip() for c in os.environ.get("SPLITBENCH_BENCH_CONV", "auto").split(",") if c.strip()]

# plateau_window=0: every run takes exactly STEPS steps, so the rates compare like with like
DIP = (DeepImagePriorConfig(steps=STEPS, lr=0.01, plateau_window=0) if DIP_SIZE == "paper" else
       DeepImagePriorConfig(steps=STEPS, lr=0.01, channels=(8, 16, 32), kernels=(3, 3, 3), code_channels=8,
                            plateau_window=0))
ATTACKS = {
    "optimization": (RMLEInversion, RMLEConfig(steps=STEPS, plateau_window=0)),
    **{f"deep_image_prior[{DIP_SIZE},{c}]": (DeepImagePrior, dataclasses.replace(DIP, conv_impl=c)) for c in CONV},
    "learned_prior": (LearnedPriorInversion, LearnedPriorConfig(steps=STEPS, pixel_steps=STEPS, plateau_window=0)),
}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from benchmark.data.scenarios.digits import Digits, DigitsConfig

    if CUDA and not torch.cuda.is_available():
        pytest.skip("SPLITBENCH_BENCH_DEVICE asks for CUDA but no GPU is present")
    data = Digits(DigitsConfig()).load().to(DEVICE)
    if len(data.eval) < IMAGES:
        pytest.skip(f"the eval split has {len(data.eval)} images, fewer than {IMAGES}")
    backbone = BackboneSpec("test_resnet", "layer1")
    torch.manual_seed(0)
    defense = smoke_defense(DEFENSES.get("no_pruning"), backbone, data.info).to(DEVICE).freeze()
    trainer = Trainer(DEVICE, seed=0, progress=False)
    cache = ModelCache(tmp_path_factory.mktemp("cache"))
    requires = {Access.WHITE_BOX, Access.AUX_PAIRS, Access.CLEAN_DATA}
    targets = {n: make_target(defense, data, requires, trainer, cache=cache, limit=n) for n in (IMAGES, SINGLE, 1)}
    return targets, trainer


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _images_per_second(cls, cfg, target, trainer, batch_size: int) -> float:
    attack = cls(dataclasses.replace(cfg, batch_size=batch_size), seed=0)
    _sync()
    t0 = time.perf_counter()
    out = attack.run(target, trainer)
    _sync()
    assert len(out.images) == target.num_eval
    return target.num_eval / (time.perf_counter() - t0)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_batched_vs_per_image_throughput(name, setting, benchmark):
    targets, trainer = setting
    cls, cfg = ATTACKS[name]
    # warm-up at both batch sizes, so that one-off costs (kernel selection, conv_impl="tune" timings, the learned
    # prior's training) are not timed
    short = dataclasses.replace(cfg, steps=2, **({"pixel_steps": 2} if cls is LearnedPriorInversion else {}))
    for n in (IMAGES, 1):
        _images_per_second(cls, short, targets[n], trainer, n)
    single = _images_per_second(cls, cfg, targets[SINGLE], trainer, 1)
    rates = []

    def batched_run():
        rates.append(_images_per_second(cls, cfg, targets[IMAGES], trainer, IMAGES))

    benchmark.pedantic(batched_run, rounds=ROUNDS, iterations=1)
    batched = sorted(rates)[len(rates) // 2]
    speedup = batched / single
    benchmark.extra_info.update(device=DEVICE, images=IMAGES, steps=STEPS, batched_images_per_second=batched,
                                per_image_images_per_second=single, speedup=speedup)
    print(f"\n{name} on {DEVICE} ({torch.cuda.get_device_name() if CUDA else 'cpu'}), {STEPS} steps per image: "
          f"batched ({IMAGES} images, median of {ROUNDS}) {batched:.2f} images/s, per-image loop ({SINGLE} images) "
          f"{single:.2f} images/s, speed-up {speedup:.1f}x")
    tuned = {k: v for k, v in dip.TUNED.items() if k.groups == IMAGES}
    if tuned and cls is DeepImagePrior:
        unfold = [f"{k.in_channels}->{k.out_channels} k{k.kernel} on {k.height}x{k.width}" for k, v in tuned.items()
                  if v]
        print(f"timed conv_impl at {IMAGES} generators: unfold for {len(unfold)} of {len(tuned)} convolution shapes "
              f"({'; '.join(unfold) or 'none'}), grouped for the rest")
    assert batched > 0 and single > 0
