"""Training steps with and without the one-pixel convolution path, on the tracks' backbone at their image sizes.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_one_pixel.py``). For each image size (8 px: the quick
suite's digits, where test_resnet's layer2 to layer4 have one-pixel outputs; 28 px: the official track's
Fashion-MNIST, where only layer4 does), two copies of the same seeded model, one as
:func:`benchmark.models.backbones.create_model` returns it (convolutions whose output is one pixel computed as a
matrix product of the window they read) and one with plain convolutions, both in the layout the harness trains in
(:func:`benchmark.models.trainer.place`: channels-last on the CPU) with the harness's fused Adam, take alternating
timed rounds of Adam steps on one torch thread at batch 64, after checking that both give the same loss and
gradients; the printed ratio is the median seconds per step of the path over the plain convolution's.

Environment:
    SPLITBENCH_BENCH_MODEL: timm model (default test_resnet).
    SPLITBENCH_BENCH_STEPS: steps per timed round (default 50).
    SPLITBENCH_BENCH_ROUNDS: rounds of each (default 3).
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from benchmark.models.backbones import create_model, one_pixel_window
from benchmark.models.trainer import place

pytestmark = pytest.mark.slow

MODEL = os.environ.get("SPLITBENCH_BENCH_MODEL", "test_resnet")
STEPS = int(os.environ.get("SPLITBENCH_BENCH_STEPS", "50"))
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", "3"))


def _plain(model: torch.nn.Module) -> torch.nn.Module:
    plain = copy.deepcopy(model)
    for m in plain.modules():
        m.__dict__.pop("_conv_forward", None)
    return plain


def _round(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    t0 = time.perf_counter()
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS


@pytest.mark.parametrize("size", [8, 28])
def test_one_pixel_path_step_time(size, benchmark):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fast = place(create_model(MODEL, 10, size, seed=0), "cpu").train()
        plain = _plain(fast).train()
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 3, size, size, generator=g), torch.randint(0, 10, (64,), generator=g)
        x = x.contiguous(memory_format=torch.channels_last)
        seen: list[bool] = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(
            "_conv_forward" in mod.__dict__ and one_pixel_window(mod, inp[0].shape[-2:]) is not None))
            for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            fast(x[:2])
        for h in hooks:
            h.remove()
        live = f"{sum(seen)} of {len(seen)} convolutions"
        losses = []
        for m in (fast, plain):
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            losses.append((loss.detach(), [p.grad.clone() for p in m.parameters()]))
            m.zero_grad(set_to_none=True)
        torch.testing.assert_close(losses[0][0], losses[1][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(losses[0][1], losses[1][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        opts = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for m in (fast, plain)}
        times: dict[str, list[float]] = {"path": [], "plain": []}
        for m in (fast, plain):  # warm-up
            _round(m, opts[id(m)], x, y)
        for _ in range(ROUNDS):
            times["path"].append(_round(fast, opts[id(fast)], x, y))
            times["plain"].append(_round(plain, opts[id(plain)], x, y))
        benchmark.pedantic(lambda: _round(fast, opts[id(fast)], x, y), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
    path, ref = statistics.median(times["path"]), statistics.median(times["plain"])
    print(f"\n{MODEL} at {size} px, batch 64, 1 thread, {live} on the one-pixel path: "
          f"{path * 1e3:.2f} ms per step against {ref * 1e3:.2f} ms with plain convolutions ({path / ref:.2f}x, "
          f"median of {ROUNDS} rounds of {STEPS} steps)")
    assert path > 0 and ref > 0
