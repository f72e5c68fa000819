"""The one training loop every method uses.

A method declares parameter groups and a step function that returns one loss per group; the trainer does the
rest: seeded shuffling, device placement, bf16 autocast on CUDA, one optimizer per group, progress, and NaN
checks. Each group's gradient is taken from *its own* loss only, which is how min-max methods route gradients
(e.g. the client gets only the task gradient while a filter network gets task minus adversary) without
detach tricks. Groups that return the very same loss tensor share one backward pass. A group may ask to be
updated several times per batch (``ParamGroup.steps``), which brings the inner player of a min-max game closer
to its best response before the other players move.

Numerics on the CPU: modules are kept in channels-last memory format (:func:`place`) and optimizers use their
fused kernel (one pass over memory). Both round differently from PyTorch's defaults, so they are one fixed
policy, applied alike to a model trained now and to one loaded from the cache, never a per-run choice: the
records of a run stay reproducible bit for bit. On the 2-core CPUs the quick suite is timed on they made a bare
training loop of the test_resnet classifier 1.43x faster (``tests/benchmarks/test_bench_trainer.py``).

Example:
    >>> import torch
    >>> from benchmark.models.trainer import ParamGroup, Trainer
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> t = Trainer(progress=False)
    >>> hist = t.optimize({"w": ParamGroup([w], lr=0.1)}, lambda step: {"w": (w - 1).pow(2).sum()}, steps=200)
    >>> round(float(w.detach()), 2)
    1.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.core.progress import default_progress
from benchmark.data.types import Batch, Split, TensorSplit


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


#: learning-rate schedules a TrainConfig may name
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Shared optimisation settings (a suite sets them once; methods may override per field)."""

    epochs: int = field(10, "passes over the training split")
    batch_size: int = field(64, "training batch size")
    lr: float = field(1e-3, "learning rate (Adam unless optimizer says otherwise)")
    weight_decay: float = field(0.0, "weight decay")
    optimizer: Literal["adam", "sgd"] = field("adam", "optimizer for every parameter group")
    schedule: Literal["constant", "cosine"] = field(
        "constant", "learning rate over a training phase: constant, or cosine (epoch e of E at "
        "lr * (1 + cos(pi * e / E)) / 2, so the last epochs settle instead of ending on a noisy step)",
        omit_default=True)

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs >= 0, batch_size >= 1 and lr > 0 are required, got {self}")


@dataclasses.dataclass
class ParamGroup:
    """Parameters updated together by one optimizer, from one loss.

    ``steps`` is how many times the group is updated per batch (per step of :meth:`Trainer.optimize`). With
    ``steps = n > 1`` the trainer first makes ``n - 1`` extra updates of this group alone, each from a fresh
    call of the step function on the same batch of which only this group's loss is used, and then the usual
    joint update of every group. In a min-max game this lets the inner player (an adversary) approach its best
    response to the current outer players before they take their step against it. The extra calls repeat
    the step function's side effects (BatchNorm running statistics, random draws). A group left at
    ``steps = 1`` is updated exactly as if the field did not exist.
    """

    params: Sequence[Tensor]
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True  # the optimizer's fused kernel where it exists (see ``fusable``)
    steps: int = 1  # updates per batch; the extra ones use only this group's loss (see the class docstring)
    amsgrad: bool = False  # Adam's AMSGrad variant (the running maximum of the second moment scales each step)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"ParamGroup.steps must be an integer >= 1, got {self.steps!r}")

    def make(self) -> torch.optim.Optimizer:
        params = [p for p in self.params if p.requires_grad]
        fused = fusable(params) if self.fused else None
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay, fused=fused)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, fused=fused,
                                amsgrad=self.amsgrad)


_FUSED_DEVICES = frozenset({"cpu", "cuda"})


def fusable(params: Sequence[Tensor]) -> bool | None:
    """Whether the optimizer can use its fused kernel: all parameters floating point and on one CPU or CUDA
    device (``None`` leaves the choice to PyTorch). The fused update is the same formula in one pass over
    memory; PyTorch's default on CPU, a loop over tensors, makes several passes, which was half the step of the
    deep-image-prior generators (millions of parameters per image) on CPU and a fifth of a small network's step.
    Every group uses it unless it sets ``fused=False``; it rounds differently from the loop, and training runs
    are chaotic enough that a last-bit change moves the trained models' figures about as much as a change of
    seed, so it is one fixed choice of the harness, not a per-run option."""
    if not params:
        return None
    devices = {p.device for p in params}
    if len(devices) != 1 or next(iter(devices)).type not in _FUSED_DEVICES:
        return None
    return True if all(p.is_floating_point() for p in params) else None


def channels_last_on(device: str | torch.device) -> bool:
    """The memory format policy: channels-last on the CPU, where oneDNN's convolutions (forward and backward)
    run faster on it for the small images and channel counts of the test backbones, PyTorch's default layout
    elsewhere."""
    return torch.device(device).type == "cpu"


def place(module: nn.Module, device: str | torch.device) -> nn.Module:
    """Move ``module`` to ``device`` in the layout of :func:`channels_last_on` (in place; returned for chaining).

    Every trained module goes through here before it is trained *and* after its weights are loaded from the
    cache, so both paths compute with the same layout and the same rounding."""
    module.to(device)
    if channels_last_on(device):
        module.to(memory_format=torch.channels_last)  # only 4-d parameters and buffers change
    return module


class Trainer:
    """Device, precision, seeds and progress for every training and optimisation loop.

    Args:
        device: "cpu", "cuda" or a torch.device.
        seed: base seed; shuffling of epoch ``e`` uses ``seed + e`` (plus a caller offset).
        amp: bf16 autocast; defaults to on for CUDA, off on CPU.
        progress: show progress bars (default: when stderr is a terminal, or $SPLITBENCH_PROGRESS).
        eval_batch_size: batch size for inference passes.
    """

    def __init__(self, device: str | torch.device = "cpu", seed: int = 0, amp: bool | None = None,
                 progress: bool | None = None, eval_batch_size: int = 256):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SplitbenchError("--device cuda was asked for but no CUDA GPU is available")
        self.seed = seed
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.progress = default_progress() if progress is None else progress
        self.eval_batch_size = eval_batch_size
        self.check_every = 50
        self.lr_schedule = "constant"

    @contextlib.contextmanager
    def schedule(self, name: str) -> Iterator[None]:
        """Every :meth:`fit` inside runs its learning rate on schedule ``name`` (a :class:`TrainConfig`
        ``schedule``); each fit is a phase of its own, from its groups' learning rates to the schedule's end."""
        if name not in SCHEDULES:
            raise SplitbenchError(f"unknown learning-rate schedule {name!r} (expected one of {', '.join(SCHEDULES)})")
        before, self.lr_schedule = self.lr_schedule, name
        try:
            yield
        finally:
            self.lr_schedule = before

    # -- precision ---------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- loops -------------------------------------------------------------------------------------------
    def fit(self, groups: Mapping[str, ParamGroup], step: Callable[[Batch], Mapping[str, Tensor]],
            split: Split | TensorSplit,
            epochs: int, batch_size: int, modules: Iterable[nn.Module] = (), desc: str = "train",
            on_epoch_end: Callable[[int], bool | None] | None = None,
            on_epoch_start: Callable[[int], None] | None = None,
            seed_offset: int = 0, drop_last: bool = True) -> list[dict[str, float]]:
        """Train for ``epochs`` over ``split``; ``step(batch)`` returns ``{group_name: loss}``.

        ``step`` may also return extra scalar tensors under names that are not groups; they are logged only.
        ``on_epoch_end(epoch)`` returning True stops training after that epoch (e.g. on a hold-out's plateau).
        Returns one dict of mean logged values per epoch run.
        """
        modules = [place(m, self.device) for m in modules]
        opts = {name: g.make() for name, g in groups.items()}
        base = {name: [pg["lr"] for pg in o.param_groups] for name, o in opts.items()}
        history = []
        bar = tqdm(range(epochs), desc=desc, disable=not self.progress, leave=False, file=sys.stderr)
        for epoch in bar:
            if self.lr_schedule == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
                for name, o in opts.items():
                    for pg, lr in zip(o.param_groups, base[name]):
                        pg["lr"] = lr * factor
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            for m in modules:
                m.train()
            sums: dict[str, Tensor] = {}
            count = 0
            for batch in split.batches(batch_size, shuffle=True, seed=self.seed * 100003 + seed_offset + epoch,
                                       drop_last=drop_last and len(split) > batch_size):
                out = self._update(groups, opts, step, batch)
                for k, v in out.items():  # summed on the device: no host sync per step
                    v = v.detach().float()
                    sums[k] = sums[k] + v if k in sums else v
                count += 1
            for m in modules:
                m.eval()
            means = {k: float(v) / max(count, 1) for k, v in sums.items()}
            self._check_finite(means, groups, desc)
            history.append(means)
            if means:
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:3]})
            if on_epoch_end is not None and on_epoch_end(epoch):
                break
        return history

    def optimize(self, groups: Mapping[str, ParamGroup], step: Callable[[int], Mapping[str, Tensor]], steps: int,
                 desc: str = "optimize", log_every: int = 0,
                 stop: Callable[[int], bool] | None = None) -> list[dict[str, float]]:
        """Step-based loop (for inversion attacks that optimise inputs or generators, not over a dataset).

        ``steps`` is the most it runs; ``stop(i)``, called after update ``i``, ends it early by returning True
        (e.g. when the objective has plateaued)."""
        opts = {name: g.make() for name, g in groups.items()}
        history = []
        bar = tqdm(range(steps), desc=desc, disable=not self.progress, leave=False, file=sys.stderr,
                   mininterval=1.0)
        last: Mapping[str, Tensor] = {}
        for i in bar:
            out = self._update(groups, opts, step, i)
            last = out
            if log_every and (i % log_every == 0 or i == steps - 1):
                history.append({"step": float(i), **{k: float(v.detach()) for k, v in out.items()}})
            if (i + 1) % self.check_every == 0:
                self._check_finite({k: float(v.detach()) for k, v in out.items()}, groups, desc)
            if stop is not None and stop(i):
                break
        if last:
            self._check_finite({k: float(v.detach()) for k, v in last.items()}, groups, desc)
        return history

    @staticmethod
    def _check_finite(values: Mapping[str, float], groups: Mapping[str, ParamGroup], desc: str) -> None:
        """Raise :class:`TrainingDiverged` if a group's loss (or a parameter it drives) is NaN or infinite.

        Checked once per epoch (``fit``) or every ``check_every`` steps (``optimize``) rather than every step,
        so a CUDA run is not synchronised with the host at each step.
        """
        for name in groups:
            v = values.get(name)
            if v is not None and not math.isfinite(v):
                raise TrainingDiverged(f"{desc}: loss for group {name!r} is {v}")

    def _update(self, groups: Mapping[str, ParamGroup], opts: Mapping[str, torch.optim.Optimizer],
                step: Callable[[Any], Mapping[str, Tensor]], arg: Any) -> Mapping[str, Tensor]:
        """One batch's updates: ``n - 1`` extra rounds (``n`` the largest ``steps``), each from a fresh ``step(arg)``,
        in which round ``r`` updates the groups with ``steps >= n - r`` (so a group with ``steps = s`` takes part
        in the last ``s - 1`` of them), then the joint update of every group. With every group at ``steps = 1``
        this is one call and one joint update, as before the field existed. Returns the joint update's losses
        (what is logged)."""
        most = max((g.steps for g in groups.values()), default=1)
        for r in range(most - 1):
            inner = {name: g for name, g in groups.items() if g.steps >= most - r}
            with self.autocast():
                out = step(arg)
            self._apply(inner, {name: opts[name] for name in inner}, out)
        with self.autocast():
            out = step(arg)
        self._apply(groups, opts, out)
        return out

    def _apply(self, groups: Mapping[str, ParamGroup], opts: Mapping[str, torch.optim.Optimizer],
               out: Mapping[str, Tensor]) -> None:
        missing = [g for g in groups if g not in out]
        if missing:
            raise RuntimeError(f"step returned no loss for parameter group(s) {missing}")
        by_loss: dict[int, tuple[Tensor, list[Tensor]]] = {}
        for name, group in groups.items():
            loss = out[name]
            entry = by_loss.setdefault(id(loss), (loss, []))
            entry[1].extend(p for p in group.params if p.requires_grad)
        entries = list(by_loss.values())
        for i, (loss, params) in enumerate(entries):
            if not params:
                continue
            grads = torch.autograd.grad(loss, params, retain_graph=i < len(entries) - 1, allow_unused=True)
            for p, g in zip(params, grads):
                if g is not None and g.stride() != p.stride():
                    # a gradient in another memory format than its parameter (e.g. a channels-last weight used
                    # through a functional call): the fused kernels pair elements by position in memory, so give
                    # it the parameter's layout first
                    g = torch.empty_like(p).copy_(g)
                p.grad = None if g is None else g.detach()
        for opt in opts.values():
            opt.step()
            opt.zero_grad(set_to_none=True)

    # -- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def map(self, fn: Callable[[Batch], Tensor], split: Split | TensorSplit, limit: int | None = None) -> Tensor:
        """Apply ``fn`` to every batch of ``split`` (in order, eval mode is the caller's job); concatenate."""
        outs = []
        part = split.subset(limit)
        for batch in part.batches(self.eval_batch_size):
            with self.autocast():
                outs.append(fn(batch).float())
        return torch.cat(outs)
