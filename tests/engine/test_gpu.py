"""CUDA paths (skipped, with a reason, when no GPU is present)."""

from __future__ import annotations

import pytest
import torch

import benchmark
from benchmark.models.trainer import ParamGroup, Trainer
from benchmark.store.records import iter_records
from tests.support.suites import tiny

TINY = tiny()

pytestmark = pytest.mark.gpu


def test_trainer_uses_bf16_autocast_on_cuda():
    t = Trainer("cuda", progress=False)
    assert t.amp
    lin = torch.nn.Linear(8, 8).cuda()
    seen = {}

    def step(i):
        y = lin(torch.randn(4, 8, device="cuda"))
        seen["dtype"] = y.dtype
        return {"m": y.float().pow(2).mean()}

    t.optimize({"m": ParamGroup(list(lin.parameters()))}, step, steps=2)
    assert seen["dtype"] == torch.bfloat16
    assert lin.weight.dtype == torch.float32  # master weights stay fp32


def test_tiny_suite_end_to_end_on_cuda(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    summary = benchmark.run(str(suite), out=tmp_path / "out", device="cuda", progress=False)
    assert summary.failed == 0 and summary.ok == summary.total
    for _, rec in iter_records(tmp_path / "out"):
        assert rec["env"]["device"] == "cuda" and rec["env"]["device_name"]
        assert rec["metrics"]["client_ms_b1_p50"] > 0
        assert 0.0 <= rec["metrics"]["utility"] <= 1.0


def test_data_is_moved_to_the_gpu_once(tmp_path):
    from benchmark.engine.runner import Runner, RunOptions
    from benchmark.suites.parse import load_suite

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    runner = Runner(load_suite(str(suite)), RunOptions(out=tmp_path / "o", device="cuda", progress=False))
    from benchmark.suites.expand import expand

    spec = expand(runner.suite)[0][0]
    data = runner.data_for(spec)
    assert data.train.images.is_cuda and data.eval.images.is_cuda
    assert runner.data_for(spec) is data  # cached: loaded and moved once per run


@pytest.mark.parametrize("impl", ["grouped", "unfold", "auto"])
def test_dip_generators_run_both_convolution_paths_under_bf16_autocast(impl):
    """The batched generators on CUDA (bf16 autocast, fused Adam): both convolution paths, and the timed choice
    between them that ``auto`` makes on CUDA, agree at initialisation and fit a target image."""
    from attacks.deep_image_prior import TUNED, SkipGenerators

    nets = {}
    for name in ("grouped", impl):
        net = SkipGenerators(4, 8, (8, 16, 32), 4, (5, 3, 3), conv_impl=name)
        net.init_([torch.Generator().manual_seed(s) for s in range(4)])
        nets[name] = net.cuda()
    code = torch.rand(1, 32, 16, 16, device="cuda")
    t = Trainer("cuda", progress=False)
    with t.autocast():
        torch.testing.assert_close(nets[impl](code), nets["grouped"](code), atol=2e-2, rtol=0)
    goal = torch.rand(4, 3, 16, 16, device="cuda")
    net = nets[impl]
    first = float((net(code).detach() - goal).pow(2).mean())
    t.optimize({"g": ParamGroup(list(net.parameters()), lr=0.01, fused=True)},
               lambda i: {"g": (net(code).float() - goal).pow(2).mean()}, steps=50)
    assert float((net(code).detach() - goal).pow(2).mean()) < 0.5 * first
    if impl == "auto":
        assert any(key.device.startswith("cuda") for key in TUNED)
