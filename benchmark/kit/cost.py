"""What it costs to run a network: wall time, multiply-accumulates and the parameters that actually run.

The harness measures every client with these (see :mod:`benchmark.measure.metrics` for the figures they become), and a
method may use them too (PATROL holds its pruned client to the undefended client's MAC budget).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency_stats(fn: Callable[[Tensor], Tensor], x: Tensor, warmup: int = 3, repeats: int = 20,
                  min_seconds: float = 0.0, max_repeats: int = 100_000) -> dict[str, float]:
    """Wall time of ``fn(x)`` in milliseconds after ``warmup`` calls, each call synchronised with the device:
    at least ``repeats`` calls and at least ``min_seconds`` of measured time (MLPerf-style minimum duration).

    Returns p50, p90, p99, mean and the number of timed calls.
    """
    for _ in range(warmup):
        fn(x)
    _sync(x.device)
    times: list[float] = []
    spent = 0.0
    while (len(times) < repeats or spent < min_seconds) and len(times) < max_repeats:
        t0 = time.perf_counter()
        fn(x)
        _sync(x.device)
        dt = time.perf_counter() - t0
        spent += dt
        times.append(dt * 1000.0)
    arr = np.asarray(times)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(arr.mean()), "runs": len(arr)}


def latency_ms(fn: Callable[[Tensor], Tensor], x: Tensor, warmup: int = 3, repeats: int = 20
               ) -> tuple[float, float]:
    """(p50, p90) wall time in milliseconds of ``fn(x)``, after warm-up, with device synchronisation."""
    s = latency_stats(fn, x, warmup, repeats)
    return s["p50"], s["p90"]


@torch.no_grad()
def count_macs(fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Multiply-accumulates of ``fn`` on one sample (FLOPs / 2 as counted by torch's FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        fn(x[:1])
    return int(counter.get_total_flops() // 2)


@torch.no_grad()
def count_params_used(fn: Callable[[Tensor], Tensor], x: Tensor, root: nn.Module) -> int:
    """Parameters of the modules under ``root`` that actually run inside ``fn`` (deduplicated)."""
    ran: set[int] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: ran.add(id(mod))) for m in root.modules()]
    try:
        fn(x[:1])
    finally:
        for h in hooks:
            h.remove()
    seen: set[int] = set()
    total = 0
    for m in root.modules():
        if id(m) not in ran:
            continue
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total
