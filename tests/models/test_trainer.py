"""The shared training loop: per-group gradient routing, seeding, divergence checks."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.data.types import TensorSplit
from benchmark.models.trainer import ParamGroup, Trainer, TrainingDiverged


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
    from benchmark.models.trainer import fusable

    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert fusable(cpu) is True and fusable([]) is None
    assert fusable([torch.nn.Parameter(torch.zeros(3, device="meta"))]) is None
    assert ParamGroup(cpu, fused=True).make().defaults["fused"] is True
    assert ParamGroup(cpu, optimizer="sgd", fused=True).make().defaults["fused"] is True
    assert ParamGroup(cpu).make().defaults["fused"] is True  # the default: one fixed numerics policy
    assert not ParamGroup(cpu, fused=False).make().defaults["fused"]  # a group may still opt out


def test_a_gradient_in_another_layout_than_its_parameter_is_applied_element_for_element():
    """PyTorch's fused Adam pairs parameter and gradient elements by position in memory: a channels-last weight
    with a contiguous gradient (here from a use through ``.contiguous()``) would get another element's update.
    The trainer gives the gradient the parameter's layout first, so the fused update equals the loop's."""
    target = torch.randn(4, 3, 2, 2)
    results = []
    for fused in (True, False):
        w = torch.nn.Parameter(torch.zeros(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
        Trainer(progress=False).optimize({"w": ParamGroup([w], lr=0.1, fused=fused)},
                                         lambda i, w=w: {"w": (w.contiguous() - target).pow(2).sum()}, steps=20)
        results.append(w.detach().contiguous())
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert (results[0] - target).abs().mean() < (target.abs().mean())  # and it moved towards the target


def test_modules_train_channels_last_on_the_cpu():
    from benchmark.models.trainer import place

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.zeros(1, 3, 5, 5))
    data = TensorSplit(torch.randn(8, 3, 5, 5), torch.randint(0, 2, (8,)))
    Trainer(progress=False).fit({"n": ParamGroup(list(net.parameters()))},
                                lambda b: {"n": torch.nn.functional.cross_entropy(net(b.x), b.y)}, data, 1, 4,
                                modules=[net])
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    loaded = place(torch.nn.Conv2d(3, 4, 3), "cpu")  # what a cache hit goes through
    assert loaded.weight.is_contiguous(memory_format=torch.channels_last)


class _StepCounter:
    """Counts ``optimizer.step()`` calls per optimizer (keyed by the id of its first parameter)."""

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.counts: dict[int, int] = {}
        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def _hook(self, opt, args, kwargs):
        key = id(opt.param_groups[0]["params"][0])
        self.counts[key] = self.counts.get(key, 0) + 1

    def __exit__(self, *exc):
        self._handle.remove()

    def of(self, param) -> int:
        return self.counts.get(id(param), 0)


def test_group_steps_update_a_group_several_times_per_batch_from_its_own_loss():
    """An inner player with steps=3 and another with steps=2 take their extra updates before the joint update;
    the outer player (steps=1) is updated once per batch and never sees its loss of the extra calls."""
    outer = torch.nn.Parameter(torch.tensor([2.0]))
    inner = torch.nn.Parameter(torch.tensor([0.0]))
    mid = torch.nn.Parameter(torch.tensor([0.0]))
    data = TensorSplit(torch.ones(32, 1))
    seen = []  # (outer, inner, mid) at every call of the step function

    def step(batch):
        seen.append((outer.item(), inner.item(), mid.item()))
        return {"outer": (outer - inner.detach()).pow(2).sum(), "inner": (inner - outer.detach()).pow(2).sum(),
                "mid": (mid - 1.0).pow(2).sum()}

    groups = {"outer": ParamGroup([outer], lr=0.1), "inner": ParamGroup([inner], lr=0.1, steps=3),
              "mid": ParamGroup([mid], lr=0.1, steps=2)}
    with _StepCounter() as c:
        Trainer(progress=False).fit(groups, step, data, epochs=2, batch_size=8)
    batches = 2 * 32 // 8
    assert (c.of(outer), c.of(inner), c.of(mid)) == (batches, 3 * batches, 2 * batches)
    assert len(seen) == 3 * batches  # two extra calls and the joint one, per batch
    for b in range(batches):
        first, second, joint = seen[3 * b:3 * b + 3]
        assert first[0] == second[0] == joint[0], "the outer group moved during the extra updates"
        assert first[1] != second[1] != joint[1], "the inner group was not updated in each extra round"
        assert first[2] == second[2] != joint[2], "a steps=2 group must take part only in the last extra round"


def test_group_steps_match_the_loop_written_out_by_hand():
    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

    x = torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
    data = TensorSplit(x)

    def losses(f, a, batch):
        fit = (f(batch.x) - 1.0).pow(2).mean()
        return {"f": fit + 0.1 * a(batch.x).mean(), "a": (a(batch.x) - f(batch.x).detach()).pow(2).mean()}

    f, a = make()
    Trainer(progress=False).fit({"f": ParamGroup(list(f.parameters()), lr=0.05),
                                 "a": ParamGroup(list(a.parameters()), lr=0.05, steps=3)},
                                lambda b: losses(f, a, b), data, epochs=1, batch_size=8)

    rf, ra = make()
    of = torch.optim.Adam(rf.parameters(), lr=0.05, fused=True)  # the trainer's default kernel
    oa = torch.optim.Adam(ra.parameters(), lr=0.05, fused=True)
    for batch in data.batches(8, shuffle=True, seed=0, drop_last=True):
        for _ in range(2):  # the adversary's extra updates, from its own loss only
            oa.zero_grad()
            losses(rf, ra, batch)["a"].backward()
            oa.step()
        out = losses(rf, ra, batch)
        gf = torch.autograd.grad(out["f"], list(rf.parameters()), retain_graph=True)
        ga = torch.autograd.grad(out["a"], list(ra.parameters()))
        for p, g in [*zip(rf.parameters(), gf), *zip(ra.parameters(), ga)]:
            p.grad = g
        of.step()
        oa.step()
    for p, q in [*zip(f.parameters(), rf.parameters()), *zip(a.parameters(), ra.parameters())]:
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_default_steps_call_the_step_function_once_per_batch_and_step_once():
    w = torch.nn.Parameter(torch.zeros(1))
    calls = []

    def step(i):
        calls.append(i)
        return {"w": (w - 1).pow(2).sum()}

    with _StepCounter() as c:
        Trainer(progress=False).optimize({"w": ParamGroup([w], lr=0.1)}, step, steps=5)
    assert calls == [0, 1, 2, 3, 4] and c.of(w) == 5
    calls.clear()
    with _StepCounter() as c:  # the step-based loop honours steps too, re-calling step(i) with the same i
        Trainer(progress=False).optimize({"w": ParamGroup([w], lr=0.1, steps=2)}, step, steps=3)
    assert calls == [0, 0, 1, 1, 2, 2] and c.of(w) == 6


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_group_steps_must_be_a_positive_integer(steps):
    with pytest.raises(ValueError, match="ParamGroup.steps must be an integer >= 1"):
        ParamGroup([torch.nn.Parameter(torch.zeros(1))], steps=steps)


def test_a_cosine_schedule_sets_each_epoch_s_learning_rate_and_only_inside_its_context():
    w = torch.nn.Parameter(torch.zeros(1))
    data = TensorSplit(torch.ones(16, 1))
    made = []

    class Group(ParamGroup):
        def make(self):
            made.append(super().make())
            return made[-1]

    def run(t):
        seen = []
        t.fit({"w": Group([w], lr=0.1)}, lambda b: {"w": (w - 1).pow(2).sum()}, data, 4, 8,
              on_epoch_start=lambda e: seen.append(made[-1].param_groups[0]["lr"]))
        return seen

    t = Trainer(progress=False)
    assert run(t) == [0.1] * 4
    with t.schedule("cosine"):
        assert run(t) == pytest.approx([0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05,
                                        0.1 * (1 + math.cos(3 * math.pi / 4)) / 2])
    assert t.lr_schedule == "constant" and run(t) == [0.1] * 4  # the context ends with its fits
    with pytest.raises(SplitbenchError, match="unknown learning-rate schedule 'linear'"):
        with t.schedule("linear"):
            pass
