"""Seeds trained together: k copies of the official track's backbone (timm ``test_resnet``, 4 classes, 28 px, batch
64) trained as one stacked model (``torch.func.stack_module_state`` + ``vmap`` over ``functional_call``, each copy
its own initialisation and its own batches) against the same k copies trained one at a time.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_stacked_seeds.py``). It first checks that the stacked
step is the k separate steps (each copy's loss and gradients agree to float tolerance), then
times ``SPLITBENCH_BENCH_STEPS`` training steps of each path at k = 1, 3 and 5 on one torch thread (the official
track's workers), the best of ``SPLITBENCH_BENCH_ROUNDS`` rounds, and prints the per-step times and their ratio.
It decides whether the harness should stack seeds on a CPU; it asserts nothing about the speed.
"""

from __future__ import annotations

import copy
import os
import time

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

pytestmark = pytest.mark.slow

BATCH, SIZE, CLASSES = 64, 28, 4
STEPS = int(os.environ.get("SPLITBENCH_BENCH_STEPS", "20"))
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", "2"))


def _models(k: int) -> list[torch.nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(timm.create_model("test_resnet", num_classes=CLASSES, in_chans=3))
    return out


def _batches(k: int, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return ([torch.randn(BATCH, 3, SIZE, SIZE, generator=g) for _ in range(k)],
            [torch.randint(0, CLASSES, (BATCH,), generator=g) for _ in range(k)])


class OneAtATime:
    def __init__(self, k: int):
        self.models = _models(k)
        self.opts = [torch.optim.Adam(m.parameters(), 2e-3) for m in self.models]

    def step(self, xs, ys) -> list[float]:
        losses = []
        for m, opt, x, y in zip(self.models, self.opts, xs, ys):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses


class Stacked:
    def __init__(self, k: int):
        models = _models(k)
        self.params, self.buffers = stack_module_state(models)
        self.opt = torch.optim.Adam(list(self.params.values()), 2e-3)
        base = copy.deepcopy(models[0]).to("meta")

        def loss(p, b, x, y):
            return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

        self.loss = vmap(loss, randomness="different")

    def step(self, xs, ys) -> list[float]:
        self.opt.zero_grad()
        losses = self.loss(self.params, self.buffers, torch.stack(xs), torch.stack(ys))
        losses.sum().backward()  # the copies share nothing, so each gets its own gradient
        self.opt.step()
        return losses.tolist()


def test_stacked_step_is_the_separate_steps():
    # losses and gradients (Adam's first step is lr * sign(gradient), so weights after it would magnify the rounding
    # of near-zero gradients into full steps)
    xs, ys = _batches(3)
    one, stacked = OneAtATime(3), Stacked(3)
    for opt in one.opts:
        opt.step = lambda *a, **kw: None
    stacked.opt.step = lambda *a, **kw: None
    assert stacked.step(xs, ys) == pytest.approx(one.step(xs, ys), rel=1e-5)
    for i, m in enumerate(one.models):
        for name, p in m.named_parameters():
            torch.testing.assert_close(stacked.params[name].grad[i], p.grad, rtol=1e-3, atol=1e-5)


def _seconds_per_step(make, k: int) -> float:
    xs, ys = _batches(k, seed=k)
    path = make(k)
    path.step(xs, ys)  # warm-up
    t0 = time.perf_counter()
    for _ in range(STEPS):
        path.step(xs, ys)
    return (time.perf_counter() - t0) / STEPS


@pytest.mark.parametrize("k", [1, 3, 5])
def test_bench_stacked_seeds(k):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = min(_seconds_per_step(OneAtATime, k) for _ in range(ROUNDS))
        stacked = min(_seconds_per_step(Stacked, k) for _ in range(ROUNDS))
    finally:
        torch.set_num_threads(threads)
    print(f"\n{k} seed(s): one at a time {one * 1e3:.1f} ms/step, stacked {stacked * 1e3:.1f} ms/step, "
          f"speed-up {one / stacked:.2f}x")
