"""``patrol``: privacy-oriented pruning for collaborative inference.

PATROL (Ding, Zhang, Pan, Yuan, WACV 2024) puts *more* layers on the edge, since deeper features are more
task-specific, and prunes them so that the deeper client still fits the edge's budget; it then trains with a
Lipschitz regulariser on the client and adversarial reconstruction training. No code is public and only the
abstract was available, so every step below is a documented choice ([inf]):

1. **Deeper split (the knob).** The client runs ``extra_depth`` feature stages past the suite's split
   (``layer1`` -> ``layer2`` -> ...); the release is that stage's output, so :meth:`tail_spec` names the deeper
   split and attackers' fresh tails match it. Depth at a fixed edge budget is the paper's central idea, so it is
   the knob; which depth a track ranks is its preregistered setting (``standard-cpu``) or the leaderboard's choice
   on validation data (the most private setting within the utility budget).
2. **Budget.** The edge affords ``budget`` times the cost (MACs or parameters, ``budget_metric``) of the unpruned
   client at the suite's split, i.e. by default exactly what the undefended client costs.
3. **Structured pruning.** After ``warmup_epochs`` of task training (so filter norms mean something), every
   prunable chain of the deeper client (:mod:`benchmark.kit.chains`) keeps the same fraction of its channels, the
   ones with the largest batch-norm-folded filter L1 norm; the fraction is the largest whose client fits the
   budget (bisection on the measured cost). Channels are removed physically; the release keeps its shape.
4. **Training** with gradient routing by the shared trainer: the client and server minimise
   ``task + lipschitz_weight * R_Lip - adv_weight * recon`` while an inversion decoder minimises ``recon``
   (simultaneous updates, i.e. alternating min-max steps). ``recon`` is the decoder's MSE in [0, 1] pixels.
   Both weights default to 0.1, chosen in the suite ``standard-cpu-prestudy``: Fashion-MNIST images and seeds
   that no split of the official track touches, so the split that decides admission chose nothing. Rule: the
   most private (knob, weight) pair whose lower 95% bound of paired validation Δutility (3 seeds, crossed
   bootstrap) is at or above -0.02, the larger weight among equals. Measured there, lower bound at
   extra_depth 1 / 2: weight 0.1: -0.004 / -0.015; 0.3: -0.014 / -0.023; 1: -0.017 / -0.025; 3: -0.026 / -0.038.
   So depth 2 clears the budget only at 0.1. (The previous default, 1.0, was the largest weight within the budget
   at both depths on the quick suite's digits validation split, the split that also decided the quick suite's
   admission.)
5. **Lipschitz regulariser.** ``R_Lip = max(0, log L - log lipschitz_target)`` with ``L`` an upper bound on the
   client's Lipschitz constant (:class:`LipschitzBound`: layer operator norms by power iteration, multiplied
   along paths and added at residual connections). Penalising it makes the client contractive, so an inverse
   must be steep (an inverse of an L-Lipschitz map is at best 1/L-Lipschitz). The hinge keeps the penalty
   bounded below: batch norm undoes a global rescaling, so a plain ``log L`` could be driven to minus infinity.
6. **Batch-norm recalibration.** The regularisers keep moving activation scales faster than the running
   averages follow, so one pass over the training split re-estimates them at the end (no weight changes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig
from benchmark.core.errors import NotApplicable, SplitbenchError
from benchmark.core.fields import field
from benchmark.kit.bounds import op_lipschitz
from benchmark.kit.chains import apply_kept, channel_l1, keep_strongest, prune_chain, require_chains, trace
from benchmark.kit.channels import as_spatial
from benchmark.kit.cost import count_macs, count_params_used
from benchmark.kit.nets import ReleaseDecoder
from benchmark.models.backbones import BackboneSpec, SplitModel, create_model, cut_model, deeper_spec
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class PatrolConfig(DefenseConfig):
    adv_weight: float = field(0.1, "lambda_A: weight of the decoder's reconstruction error the client maximises "
                                   "(chosen in a pre-study on data of its own, see the module docstring)")
    lipschitz_weight: float = field(0.1, "lambda_L: weight of the client's Lipschitz penalty (chosen in a pre-study "
                                         "on data of its own, see the module docstring)")
    extra_depth: int = field(1, "the knob: feature stages the pruned client runs past the suite's split [inf]")
    budget: float = field(1.0, "edge budget as a fraction of the unpruned client's cost at the suite's split [inf]")
    budget_metric: Literal["macs", "params"] = field("macs", "what the budget limits: client MACs or parameters")
    warmup_epochs: int = field(2, "task-only epochs of the unpruned deeper model before pruning [inf]")
    lipschitz_target: float = field(1.0, "Lipschitz bound of the client below which it is not penalised [inf]")
    inverter_width: int = field(32, "channels of the co-trained inversion decoder's first layer [inf]")

    def validate(self) -> None:
        if self.extra_depth < 0 or self.budget <= 0 or self.warmup_epochs < 0 or self.lipschitz_target <= 0:
            raise ValueError("extra_depth >= 0, budget > 0, warmup_epochs >= 0 and lipschitz_target > 0 required")
        if self.adv_weight < 0 or self.lipschitz_weight < 0:
            raise ValueError("adv_weight and lipschitz_weight must be >= 0")


@contextlib.contextmanager
def probing(module: nn.Module):
    """Eval mode for a one-sample probe of ``module`` (shapes, costs): batch norm then uses its running statistics,
    so a 1 x 1 map works and the probe updates nothing; every submodule gets its own mode back afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


class LipschitzBound:
    """An upper bound on a module's Lipschitz constant (l2), from operator norms along its traced graph.

    Each conv / linear layer contributes its operator norm with the batch norm that follows it folded in
    (batch statistics while training, running ones at test), estimated by power iteration on persistent vectors;
    norms multiply along a path and add at residual additions; 1-Lipschitz activations pass, others scale by
    their largest slope; a pooling window overlapping ``n`` others scales by ``sqrt(n)`` (max) or ``sqrt(n / k)``
    (average over ``k`` inputs). Operations outside this list raise a :class:`SplitbenchError`.
    """

    def __init__(self, module: nn.Module, example: Tensor, seed: int = 0):
        gm = trace(module)
        self.nodes = list(gm.graph.nodes)
        self.layers: list[tuple[nn.Module, nn.Module | None]] = []
        self.rule: dict[fx.Node, object] = {}  # layer index, float factor, or "sum"
        folded: set[fx.Node] = set()
        for n in self.nodes:
            m = gm.get_submodule(n.target) if n.op == "call_module" else None
            if n.op in ("placeholder", "output") or n in folded:
                self.rule[n] = 1.0
            elif type(m) in (nn.Conv2d, nn.Linear):
                users = list(n.users)
                bn = gm.get_submodule(users[0].target) if len(users) == 1 and users[0].op == "call_module" else None
                if isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                    folded.add(users[0])
                else:
                    bn = None
                self.rule[n] = len(self.layers)
                self.layers.append((m, bn))
            else:
                factor = op_lipschitz(n, m)
                if factor is None:
                    raise NotApplicable(f"patrol: no Lipschitz bound for {n.format_node()}; set lipschitz_weight=0")
                self.rule[n] = factor
        shapes: dict[nn.Module, tuple[int, ...]] = {}

        def record(mod: nn.Module, inp: tuple[Tensor, ...]) -> None:
            shapes.setdefault(mod, tuple(inp[0].shape[1:]))

        hooks = [m.register_forward_pre_hook(record) for m, _ in self.layers]
        with probing(module), torch.no_grad():
            module(example[:1])
        for h in hooks:
            h.remove()
        g = torch.Generator().manual_seed(seed)
        self.u = [torch.randn((1, *shapes[m]), generator=g).to(example.device) for m, _ in self.layers]
        self.batch_var: dict[nn.Module, Tensor] = {}
        self._hooks = [bn.register_forward_pre_hook(self._record) for _, bn in self.layers if bn is not None]

    def close(self) -> None:
        """Stop recording batch statistics."""
        for h in self._hooks:
            h.remove()
        self.batch_var.clear()

    def _record(self, bn: nn.Module, inp: tuple[Tensor, ...]) -> None:
        if bn.training and torch.is_grad_enabled():
            self.batch_var[bn] = inp[0].float().var(dim=(0, 2, 3), unbiased=False)

    @staticmethod
    def _apply(m: nn.Module, scale: Tensor | None, u: Tensor) -> Tensor:
        y = m._conv_forward(u, m.weight.float(), None) if isinstance(m, nn.Conv2d) else F.linear(u, m.weight.float())
        return y if scale is None else y * scale.view(1, -1, *([1] * (y.ndim - 2)))

    @staticmethod
    def _adjoint(m: nn.Module, scale: Tensor | None, v: Tensor, shape: torch.Size) -> Tensor:
        if scale is not None:
            v = v * scale.view(1, -1, *([1] * (v.ndim - 2)))
        if isinstance(m, nn.Linear):
            return v @ m.weight.float()
        return torch.nn.grad.conv2d_input(shape, m.weight.float(), v, m.stride, m.padding, m.dilation, m.groups)

    def _scale(self, bn: nn.Module | None, train: bool) -> Tensor | None:
        if bn is None:
            return None
        var = self.batch_var.get(bn, bn.running_var) if train else bn.running_var
        s = (var.float() + bn.eps).rsqrt()
        return s if bn.weight is None else s * bn.weight.float()

    def sigmas(self, train: bool, iterations: int = 1) -> list[Tensor]:
        """Per-layer operator norms after ``iterations`` power steps (differentiable in the weights)."""
        out = []
        with torch.autocast(self.u[0].device.type, enabled=False):  # float32 under bf16 autocast
            for k, (m, bn) in enumerate(self.layers):
                scale = self._scale(bn, train)
                fixed = None if scale is None else scale.detach()
                with torch.no_grad():
                    for _ in range(iterations):
                        u = self._adjoint(m, fixed, self._apply(m, fixed, self.u[k]), self.u[k].shape)
                        self.u[k] = u / u.norm().clamp_min(1e-12)
                out.append(self._apply(m, scale, self.u[k]).norm())
        return out

    def bound(self, train: bool, iterations: int = 1) -> Tensor:
        sig = self.sigmas(train, iterations)
        lip: dict[fx.Node, Tensor] = {}
        for n in self.nodes:
            rule = self.rule[n]
            ins = [lip[a] for a in n.all_input_nodes if a in lip]
            if n.op == "placeholder":
                lip[n] = torch.ones((), device=self.u[0].device)
            elif n.op == "output":
                return ins[0]
            elif not ins:
                continue  # constants
            elif rule == "sum":
                lip[n] = sum(ins)
            elif isinstance(rule, int):
                lip[n] = ins[0] * sig[rule]
            else:
                lip[n] = ins[0] * rule
        raise SplitbenchError("patrol: the traced client has no output")

    def penalty(self, target: float) -> Tensor:
        """max(0, log L - log target): the hinge keeps it bounded below (batch norms undo a global rescaling)."""
        return F.relu(self.bound(train=True).clamp_min(1e-12).log() - math.log(target))

    @torch.no_grad()
    def estimate(self, iterations: int = 30) -> float:
        """log of the Lipschitz bound with eval-mode batch norms."""
        return float(self.bound(train=False, iterations=iterations).clamp_min(1e-12).log())


@register_defense("patrol")
class Patrol(Defense):
    Config = PatrolConfig
    knob = "extra_depth"
    knob_grid = (1, 2)
    version = "2"  # 2: the Lipschitz probe runs in eval mode (no running-stat update, works on 1x1 maps)
    smoke_config = {"warmup_epochs": 0}
    card = MethodCard(
        paper="Ding, Zhang, Pan, Yuan: PATROL: Privacy-Oriented Pruning for Collaborative Inference Against Model "
              "Inversion Attacks (WACV 2024)",
        year=2024,
        url="https://arxiv.org/abs/2307.10981",
        threat_model="honest-but-curious server inverts the released activations of a deeper, pruned client",
        knob="extra_depth: feature stages the pruned client runs past the suite's split at a fixed budget; "
             "higher = deeper, more task-specific release",
        inferred=("the knob is the depth at a fixed budget; budget = cost of the unpruned client at the suite's "
                  "split (budget=1.0, MACs)",
                  "uniform per-chain channel ratio chosen by bisection on measured cost; channels ranked by "
                  "batch-norm-folded filter L1 norm after 2 warm-up epochs of task training",
                  "R_Lip = hinged log of a residual-aware Lipschitz bound of the client (operator norms of convs "
                  "with their batch norms folded, one power step per training step); lipschitz_weight=0.1",
                  "adversarial decoder: conv + transposed convs to image size (width 32), MSE in [0, 1] pixels, "
                  "updated simultaneously with the client; adv_weight=0.1",
                  "both weights chosen in the suite standard-cpu-prestudy (Fashion-MNIST images and seeds disjoint "
                  "from the official track): of {0.1, 0.3, 1, 3}, the one at which the most private extra_depth "
                  "keeps the lower 95% bound of validation Δutility within 0.02 (only 0.1 does at depth 2)",
                  "batch-norm statistics re-estimated in one pass over the training split after training",
                  "task loss is cross-entropy (the paper's re-ID ID-CE + triplet does not apply)"),
        notes="No public code; only the abstract was available.",
    )

    # -- construction ----------------------------------------------------------------------------------------------
    def build(self) -> None:
        cfg, info, spec = self.config, self.info, self.backbone
        model = create_model(spec.name, info.num_task_classes, info.image_size, spec.pretrained, self.seed)
        self.deep = deeper_spec(model, spec, cfg.extra_depth, "patrol")
        x = torch.zeros(1, info.channels, info.image_size, info.image_size)
        base_client, _ = cut_model(model, spec.split, spec.name)
        self.budget_value = cfg.budget * self._cost(base_client, x)
        client, server = cut_model(model, self.deep.split, spec.name)
        self.split = SplitModel(client, server, self.deep, info.num_task_classes, info.image_size)
        with probing(client), torch.no_grad():
            z = client(x)
        zs = as_spatial(z)
        self.inverter = ReleaseDecoder(zs.shape[1], zs.shape[-1], (info.channels, info.image_size, info.image_size),
                                       cfg.inverter_width, refine=False, adapt_width=False)
        self.kept: dict[str, list[int]] = {}
        self.lipschitz_history: list[float] = []

    def _cost(self, client: nn.Module, x: Tensor) -> float:
        with probing(client):
            if self.config.budget_metric == "params":
                return float(count_params_used(client, x, client))
            return float(count_macs(client, x))

    def tail_spec(self) -> BackboneSpec:
        return self.deep

    # -- pruning to the budget -------------------------------------------------------------------------------------
    def prune_to_budget(self) -> dict[str, list[int]]:
        """Prune every chain of the deeper client by one common ratio, the smallest that fits the budget."""
        dev = next(self.client.parameters()).device
        s = self.info.image_size
        x = torch.zeros(1, self.info.channels, s, s, device=dev)
        chains = require_chains(self.client, f"patrol on {self.deep.label}")
        scores = {c.producer: channel_l1(self.client, c) for c in chains}

        def plan(ratio: float) -> dict[str, list[int]]:
            return {c.producer: keep_strongest(scores[c.producer], math.ceil((1 - ratio) * c.width - 1e-9))
                    for c in chains}

        measured: dict[tuple[int, ...], float] = {}

        def cost(ratio: float) -> float:
            keep = plan(ratio)
            key = tuple(len(v) for v in keep.values())
            if key not in measured:
                trial = copy.deepcopy(self.client)
                for c in chains:
                    prune_chain(trial, c, keep[c.producer])
                measured[key] = self._cost(trial, x)
            return measured[key]

        if self._cost(self.client, x) <= self.budget_value:
            return {}
        if cost(1.0) > self.budget_value:
            raise NotApplicable(
                f"patrol: even one channel per prunable layer of {self.deep.label} costs {cost(1.0):.3g} "
                f"{self.config.budget_metric}, over the budget {self.budget_value:.3g}; raise budget or lower "
                "extra_depth")
        lo, hi = 0.0, 1.0
        for _ in range(20):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if cost(mid) <= self.budget_value else (mid, hi)
        self.kept = {k: v for k, v in plan(hi).items() if len(v) < len(scores[k])}
        for c in chains:
            if c.producer in self.kept:
                prune_chain(self.client, c, self.kept[c.producer])
        return self.kept

    def carry_structure(self, fitted: Defense) -> None:
        """PATROL's pruning depends on weights only through which channels it keeps: the common ratio is the
        smallest whose client fits the budget, a share of the undefended client's cost on the same backbone. Apply
        that rule to this backbone's client."""
        self.prune_to_budget()

    # -- training --------------------------------------------------------------------------------------------------
    def fit(self, data, trainer):
        cfg, tc = self.config, self.train_config()
        model = [self.client, self.server]

        def params() -> list[Tensor]:
            return [p for m in model for p in m.parameters()]

        def task_step(b):
            return {"model": self.task_loss(self.server(self.client(b.x)), b.y)}

        if cfg.warmup_epochs > 0:
            trainer.fit({"model": ParamGroup(params(), tc.lr, tc.weight_decay, tc.optimizer)}, task_step, data.train,
                        cfg.warmup_epochs, tc.batch_size, modules=model, desc="patrol warm-up", seed_offset=31)
        self.prune_to_budget()
        self.eval()
        s = self.info.image_size
        try:
            lip = LipschitzBound(self.client, torch.zeros(1, self.info.channels, s, s, device=params()[0].device),
                                 self.seed)
        except SplitbenchError:
            if cfg.lipschitz_weight > 0:
                raise
            lip = None  # no bound for this client's operations; it is only needed as a penalty
        self.lipschitz_history = [] if lip is None else [lip.estimate()]
        adversarial = cfg.adv_weight > 0

        def step(b):
            z = self.client(b.x)
            task = self.task_loss(self.server(z), b.y)
            out = {"task": task.detach()}
            loss = task
            if lip is not None and cfg.lipschitz_weight > 0:
                reg = lip.penalty(cfg.lipschitz_target)
                loss, out["lipschitz"] = loss + cfg.lipschitz_weight * reg, reg.detach()
            if adversarial:
                recon = F.mse_loss(self.inverter(z), self.info.denormalize(b.x).clamp(0, 1))
                loss, out["inverter"] = loss - cfg.adv_weight * recon, recon
            return {**out, "model": loss}

        groups = {"model": ParamGroup(params(), tc.lr, tc.weight_decay, tc.optimizer)}
        if adversarial:
            groups["inverter"] = ParamGroup(list(self.inverter.parameters()), tc.lr, 0.0, tc.optimizer)
        trainer.fit(groups, step, data.train, tc.epochs, tc.batch_size, modules=[*model, self.inverter],
                    desc="patrol", on_epoch_end=None if lip is None else (
                        lambda _e: self.lipschitz_history.append(lip.estimate())))
        self._recalibrate(data.train, trainer)
        if lip is not None:
            lip.close()
            self.lipschitz_history.append(lip.estimate())

    @torch.no_grad()
    def _recalibrate(self, train, trainer) -> None:
        """Re-estimate batch-norm running statistics in one pass over ``train`` (no weight changes): the
        regularisers keep moving activation scales, so the running averages lag behind the weights."""
        norms = [m for m in (*self.client.modules(), *self.server.modules())
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
        self.client.train()
        self.server.train()
        trainer.map(lambda b: self.server(self.client(b.x)), train)
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        self.eval()

    # -- the pruned architecture -----------------------------------------------------------------------------------
    def structure(self):
        return {"split": self.deep.split, "kept": self.kept}

    def restore_structure(self, structure):
        if structure.get("split", self.deep.split) != self.deep.split:
            raise SplitbenchError(f"patrol: cached model was split at {structure['split']!r}, not {self.deep.split!r}")
        apply_kept(self.client, structure.get("kept", {}))
        self.kept = {k: list(v) for k, v in structure.get("kept", {}).items()}
