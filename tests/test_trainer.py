"""The shared training loop: per-group gradient routing, seeding, divergence checks."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import TensorSplit
from benchmark.trainer import ParamGroup, Trainer, TrainingDiverged


def test_each_group_gets_only_its_own_loss_gradient():
    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))

    class Hold:  # an optimizer that keeps the gradients for inspection
        def step(self):
            pass

        def zero_grad(self, set_to_none=True):
            pass

    shared = a * b
    out = {"a": shared * 3.0,            # d/da = 3b = 3
           "b": shared * 5.0 - a * 7.0}  # d/db = 5a = 5; mixing losses would also give `a` a gradient of -2
    groups = {"a": ParamGroup([a]), "b": ParamGroup([b])}
    Trainer(progress=False)._apply(groups, {"a": Hold(), "b": Hold()}, out)
    assert a.grad.item() == 3.0 and b.grad.item() == 5.0


def test_fit_routes_min_max_gradients():
    # generator g minimises (x - target)^2 while a critic c maximises it: with routing, g still converges
    g = torch.nn.Parameter(torch.zeros(1))
    c = torch.nn.Parameter(torch.zeros(1))
    data = TensorSplit(torch.ones(32, 1))
    t = Trainer(progress=False)

    def step(batch):
        fit_loss = (g - 2.0).pow(2).sum()
        critic = (c * g.detach()).sum()
        return {"g": fit_loss, "c": -critic}

    t.fit({"g": ParamGroup([g], lr=0.1), "c": ParamGroup([c], lr=0.01)}, step, data, epochs=40, batch_size=8)
    assert g.item() == pytest.approx(2.0, abs=1e-2)
    assert c.item() > 0


def test_fit_is_reproducible_for_a_seed():
    def train(seed):
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 1)
        data = TensorSplit(torch.randn(50, 3, generator=torch.Generator().manual_seed(1)),
                           torch.randn(50, generator=torch.Generator().manual_seed(2)))
        t = Trainer(progress=False, seed=seed)
        t.fit({"m": ParamGroup(list(lin.parameters()), lr=0.05)},
              lambda b: {"m": (lin(b.x).squeeze(1) - b.y).pow(2).mean()}, data, epochs=3, batch_size=8)
        return lin.weight.detach().clone()

    assert torch.equal(train(0), train(0))
    assert not torch.equal(train(0), train(1))


def test_nan_loss_raises():
    w = torch.nn.Parameter(torch.zeros(1))
    t = Trainer(progress=False)
    with pytest.raises(TrainingDiverged, match="group .w."):
        t.optimize({"w": ParamGroup([w])}, lambda i: {"w": w.sum() * float("nan")}, steps=1)


def test_missing_group_loss_is_an_error():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(RuntimeError, match="no loss for parameter group"):
        Trainer(progress=False).optimize({"w": ParamGroup([w])}, lambda i: {}, steps=1)


def test_fit_detects_divergence_at_the_end_of_the_epoch():
    w = torch.nn.Parameter(torch.ones(1))
    data = TensorSplit(torch.ones(16, 1))
    with pytest.raises(TrainingDiverged, match="group 'w' is nan"):
        Trainer(progress=False).fit({"w": ParamGroup([w])}, lambda b: {"w": (w * float("nan")).sum()}, data,
                                    epochs=1, batch_size=4)


def test_optimizers_use_the_fused_kernel_where_it_exists():
    from benchmark.trainer import fusable

    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert fusable(cpu) is True and fusable([]) is None
    assert fusable([torch.nn.Parameter(torch.zeros(3, device="meta"))]) is None
    assert ParamGroup(cpu, fused=True).make().defaults["fused"] is True
    assert ParamGroup(cpu, optimizer="sgd", fused=True).make().defaults["fused"] is True
    assert not ParamGroup(cpu).make().defaults["fused"]  # opt-in: the default keeps PyTorch's choice
