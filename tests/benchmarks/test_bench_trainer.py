"""Throughput of the shared trainer against a bare PyTorch loop on the same model, data and optimizer.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_trainer.py``). Both loops train a fresh copy of
the same seeded timm classifier on the embedded digits' defender split (normalised float tensors on the device)
with Adam, the same batch size and epochs; the bare loop is ``zero_grad / forward / loss.backward / step`` over a
``randperm`` per epoch, with the trainer's numerics (its memory format and fused Adam, see
:func:`benchmark.models.trainer.place`), so the ratio is the harness's own cost. They alternate for
``SPLITBENCH_BENCH_ROUNDS`` rounds after a warm-up epoch each, and the printed ratio is the trainer's median
samples per second over the bare loop's (target: at least 0.9). A third loop, the bare one with PyTorch's
defaults (contiguous layout, Adam's default kernel), gives what the trainer's numerics policy buys.

Environment:
    SPLITBENCH_BENCH_DEVICE: cpu (default) or cuda (bf16 autocast in both loops, as the trainer does on CUDA).
    SPLITBENCH_BENCH_MODEL: timm model (default test_resnet, the quick suite's backbone).
    SPLITBENCH_BENCH_EPOCHS: epochs per timed round (default 2).
    SPLITBENCH_BENCH_ROUNDS: rounds of each loop (default 3).
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import torch
import torch.nn.functional as F

from benchmark.data.types import TensorSplit
from benchmark.models.backbones import create_model
from benchmark.models.trainer import ParamGroup, Trainer, place

pytestmark = pytest.mark.slow

DEVICE = os.environ.get("SPLITBENCH_BENCH_DEVICE", "cpu")
CUDA = DEVICE.startswith("cuda")
MODEL = os.environ.get("SPLITBENCH_BENCH_MODEL", "test_resnet")
EPOCHS = int(os.environ.get("SPLITBENCH_BENCH_EPOCHS", 2))
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", 3))
BATCH = 64
LR = 1e-3


@pytest.fixture(scope="module")
def data():
    from benchmark.data.scenarios.digits import Digits, DigitsConfig

    if CUDA and not torch.cuda.is_available():
        pytest.skip("SPLITBENCH_BENCH_DEVICE asks for CUDA but no GPU is present")
    d = Digits(DigitsConfig()).load().to(DEVICE)
    return d.info, d.info.normalize(d.train.images), d.train.task


def _model(info):
    return create_model(MODEL, info.num_task_classes, info.image_size, seed=0, in_chans=info.channels).to(DEVICE)


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else contextlib.nullcontext()


def trainer_loop(info, x, y, epochs: int) -> float:
    model = _model(info)
    trainer = Trainer(DEVICE, seed=0, progress=False)

    def step(b):
        return {"model": F.cross_entropy(model(b.x).float(), b.y)}

    _sync()
    t0 = time.perf_counter()
    trainer.fit({"model": ParamGroup(list(model.parameters()), LR)}, step, TensorSplit(x, y), epochs, BATCH,
                modules=[model])
    _sync()
    return epochs * (len(x) // BATCH) * BATCH / (time.perf_counter() - t0)


def bare_loop(info, x, y, epochs: int, trainer_numerics: bool = True) -> float:
    model = _model(info)
    if trainer_numerics:
        place(model, DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True if trainer_numerics else None)
    n = len(x)
    _sync()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).to(x.device)
        for start in range(0, n - n % BATCH, BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad(set_to_none=True)
            with _autocast():
                loss = F.cross_entropy(model(x[idx]).float(), y[idx])
            loss.backward()
            opt.step()
    _sync()
    return epochs * (n // BATCH) * BATCH / (time.perf_counter() - t0)


def test_trainer_throughput_against_a_bare_loop(data, benchmark):
    info, x, y = data
    trainer_loop(info, x, y, 1)  # warm-up: allocator, kernel selection
    bare_loop(info, x, y, 1)
    bare_loop(info, x, y, 1, trainer_numerics=False)
    ours, bare, default = [], [], []

    def one_round():
        ours.append(trainer_loop(info, x, y, EPOCHS))
        bare.append(bare_loop(info, x, y, EPOCHS))
        default.append(bare_loop(info, x, y, EPOCHS, trainer_numerics=False))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    ratio = med(ours) / med(bare)
    policy = med(bare) / med(default)
    benchmark.extra_info.update(device=DEVICE, model=MODEL, trainer_samples_per_second=med(ours),
                                bare_samples_per_second=med(bare), ratio=ratio,
                                pytorch_defaults_samples_per_second=med(default), numerics_speedup=policy)
    print(f"\ntrainer vs bare loop, {MODEL} on {DEVICE}, batch {BATCH}, {EPOCHS} epochs x {ROUNDS} rounds, "
          f"{torch.get_num_threads()} thread(s): trainer {med(ours):.0f} samples/s, bare loop {med(bare):.0f} "
          f"samples/s, ratio {ratio:.3f} (target >= 0.9); the bare loop with PyTorch's defaults "
          f"{med(default):.0f} samples/s (the trainer's numerics: {policy:.2f}x)")
    assert ratio > 0
