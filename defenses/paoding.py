"""``paoding``: data-free, progressive pruning of the client by merging similar channels.

A PyTorch port of PAODING (Meng, Bai, Teo, Dong, ICECCS'23; ``paoding-dl``, TensorFlow only). The split model is
first trained on the task like ``no_pruning``; the client is then pruned **without any data**:

1. bound every activation by propagating the input box (the normalized image of pixel values in [0, 1]) through
   the model by interval arithmetic (:class:`~benchmark.kit.chains.IntervalNet`);
2. score every ordered pair (i kept, j removed) of channels of a prunable chain by saliency
   ``||w_i^in - w_j^in||_2 * ||w_j^out||_2`` (incoming weights with the batch norm folded in and, bias-aware,
   the folded bias appended);
3. estimate each candidate merge's impact: the change it causes at the consumer, ``(I_i - I_j) * w_j^out`` in
   interval arithmetic, propagated to the output layer; score = alpha * sigmoid(L) + beta * sigmoid(ENT) with L
   the L1 width of the output change and ENT the interval entropy of Dai et al. (similarity threshold 0.9);
4. choose pairs greedily (``impact``: the lowest-scoring half of twice as many least-salient pairs) or by
   simulated annealing (``stochastic``), or by saliency alone (``baseline``);
5. merge: ``w_out[i] += w_out[j]; w_out[j] = 0`` (exact when channels i and j carry the same activation);
6. repeat in steps of ``step`` until ``prune_ratio`` of every chain is merged away, then remove the merged
   channels physically (smaller Conv2d / Linear / BatchNorm weights; the release keeps its shape).

Choices the sources leave open, all config fields ([inf]):

- *output layer*: a split client has none of its own. ``impact_at="logits"`` (default) propagates the impact
  through the frozen server to the task logits, the split model's output layer; ``"release"`` stops at the
  client's output.
- *L normalisation*: the official code's ``sigmoid(L1 width)`` saturates at 1 for any layer wider than a few
  units, so L is divided by its mean over the candidates scored together (same chain and step); this keeps
  their order and puts both terms on a comparable scale.
- *entropy units*: output intervals are merged over spatial positions (one unit per channel) or tokens.
- *conv channels* are merged like dense units (the issue asks for channels, since timm clients are
  convolutional); ``conv_mode="l1"`` instead prunes them one-shot by filter L1 norm, as the official code does.
- candidate scores do not include impact accumulated earlier in the step: the official code's accumulator is
  reset before it is ever read; the annealing temperature is ``1.0001 - pruned / width`` per chain.
- fixed inconsistencies of the official code: its impact assumes unit ``a`` of a pair is removed while its merge
  removes ``b`` (here the removed unit is the one whose outgoing weights enter both saliency and impact), and
  its ReLU bound is ``[0, hi]`` instead of ``[max(lo, 0), max(hi, 0)]``.
- ``finetune_epochs`` (default 0) re-trains on the task after pruning; that step is **not** data-free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field
from benchmark.kit.bounds import IntervalNet
from benchmark.kit.chains import (
    Chain,
    apply_kept,
    channel_l1,
    incoming_weights,
    keep_strongest,
    outgoing_weights,
    prune_chain,
    require_chains,
)
from benchmark.models.trainer import ParamGroup


@dataclasses.dataclass(frozen=True)
class PaodingConfig(DefenseConfig):
    prune_ratio: float = field(0.5, "fraction of every prunable chain's channels merged away (PAODING's target)")
    step: float = field(0.025, "fraction of a chain's channels merged per progressive step (PAODING's default)")
    mode: Literal["impact", "stochastic", "baseline"] = field(
        "impact", "pair choice: greedy by impact score, simulated annealing, or saliency only")
    alpha: float = field(0.75, "weight of the L1-width term of the impact score (set_strategy default)")
    beta: float = field(0.25, "weight of the interval-entropy term of the impact score")
    similarity: float = field(0.9, "similarity threshold of the interval entropy (Dai et al.)")
    candidates: int = field(2, "impact mode: pairs scored per pair merged")
    impact_at: Literal["logits", "release"] = field(
        "logits", "the 'output layer' of impact estimation: server logits, or the client's release [inf]")
    conv_mode: Literal["merge", "l1"] = field(
        "merge", "conv chains: merge channel pairs like dense units, or one-shot filter-L1 pruning (official code)")
    bias_aware: bool = field(True, "saliency appends the folded bias to each channel's incoming weights")
    finetune_epochs: int = field(0, "task epochs after pruning; > 0 uses training data (no longer data-free)")

    def validate(self) -> None:
        if not 0.0 <= self.prune_ratio < 1.0 or not 0.0 < self.step <= 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1) and step in (0, 1], got {self.prune_ratio}, {self.step}")
        if self.candidates < 1 or self.finetune_epochs < 0:
            raise ValueError("candidates must be >= 1 and finetune_epochs >= 0")


def interval_entropy(lo: Tensor, hi: Tensor, threshold: float) -> Tensor:
    """Dai et al.'s entropy of a set of intervals ``[K, n]`` (one set per row): 0 when all are alike."""
    u_lo = lo.amin(1, keepdim=True).clamp(max=0)
    u_hi = hi.amax(1, keepdim=True).clamp(min=0)
    span = (u_hi - u_lo).clamp_min(1e-3)[..., None]
    sim = 1 - 0.5 * ((lo[:, :, None] - lo[:, None, :]).abs() + (hi[:, :, None] - hi[:, None, :]).abs()) / span
    p = (sim >= threshold).double().mean(2)
    return -(p * p.log()).sum(1)


def _grouped_conv(layer, mid: Tensor, rad: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Each candidate k's change ``[1, K, H, W]`` through its own consumer slice ``w[:, k]``: ``[K, out, h, w]``."""
    k = mid.shape[1]
    w = w.movedim(1, 0).reshape(-1, 1, *w.shape[2:])  # [K * out, 1, kh, kw]
    pad = layer.padding
    if layer.padding_mode != "zeros":
        mid, rad = (F.pad(t, layer._reversed_padding_repeated_twice, mode=layer.padding_mode) for t in (mid, rad))
        pad = 0
    out = [F.conv2d(t, v, None, layer.stride, pad, layer.dilation, groups=k) for t, v in ((mid, w), (rad, w.abs()))]
    mid, rad = (t.reshape(k, -1, *t.shape[2:]) for t in out)
    return mid - rad, mid + rad


def _units(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """One interval per channel: union over spatial positions (maps) or tokens (sequences)."""
    if lo.ndim == 4:
        return lo.amin((2, 3)), hi.amax((2, 3))
    if lo.ndim == 3:
        return lo.amin(1), hi.amax(1)
    return lo.flatten(1), hi.flatten(1)


@register_defense("paoding")
class Paoding(Defense):
    Config = PaodingConfig
    knob = "prune_ratio"
    knob_grid = (0.1, 0.25, 0.5)
    variants = ("mode",)  # impact, stochastic and baseline pruning are three rows
    smoke_config = {"step": 0.25}
    card = MethodCard(
        paper="Meng, Bai, Teo, Dong: Paoding: Supervised Robustness-preserving Data-free Neural Network Pruning "
              "(ICECCS 2023); toolkit paper 'PAODING: A High-fidelity Data-free Pruning Toolkit for Debloating "
              "Pre-trained Neural Networks'",
        year=2023,
        url="https://arxiv.org/abs/2204.00783",
        threat_model="not a privacy defense: a data-free compression baseline for the client; the honest-but-"
                     "curious server sees the pruned client's activations",
        knob="prune_ratio: fraction of each prunable chain's channels merged away; higher = smaller client",
        inferred=("impact is measured at the server's logits (the split model's output layer); option: release",
                  "the L1 term is divided by its mean over the candidates scored together before the sigmoid "
                  "(the official sigmoid saturates)",
                  "conv channels are merged like dense units; option conv_mode=l1 follows the official one-shot "
                  "filter-L1 pruning of conv layers",
                  "batch norms are folded into incoming weights for saliency; entropy units are channels",
                  "difference intervals are propagated without biases, through activations by their derivative "
                  "range (the official code re-applies biases and ReLU to the impact)",
                  "the task model is trained first (like no_pruning); fine-tuning after pruning is off"),
        code="https://github.com/mark-h-meng/nnprune",
        notes="PyTorch port; structured (channels removed) rather than simulated.",
    )

    def build(self) -> None:
        super().build()
        self.kept: dict[str, list[int]] = {}

    # -- training, then pruning ------------------------------------------------------------------------------------
    def fit(self, data, trainer):
        tc = self.train_config()
        if tc.epochs > 0:
            train_task(self, data, trainer, self.release, [self.client, self.server], "paoding")
        self.prune_data_free()
        if self.config.finetune_epochs > 0:
            params = list(self.client.parameters()) + list(self.server.parameters())
            trainer.fit({"model": ParamGroup(params, tc.lr, tc.weight_decay, tc.optimizer)},
                        lambda b: {"model": self.task_loss(self.predict(self.release(b.x)), b.y)},
                        data.train, self.config.finetune_epochs, tc.batch_size, modules=[self.client, self.server],
                        desc="paoding finetune", seed_offset=7)

    @torch.no_grad()
    def prune_data_free(self) -> dict[str, list[int]]:
        """Prune the client in place from its weights alone; returns ``{producer: kept channels}``."""
        cfg = self.config
        self.eval()
        chains = require_chains(self.client, f"paoding on {self.backbone.label}")
        goal = {c.producer: self._goal(c) for c in chains}
        alive = {c.producer: list(range(c.width)) for c in chains}
        merged = [c for c in chains if c.kind == "linear" or cfg.conv_mode == "merge"]
        for c in chains:
            if c not in merged:
                alive[c.producer] = keep_strongest(channel_l1(self.client, c), c.width - goal[c.producer])
        todo = [c for c in merged if goal[c.producer] > 0]
        if todo:
            self._merge_progressively(todo, goal, alive)
        for c in chains:
            if len(alive[c.producer]) < c.width:
                prune_chain(self.client, c, alive[c.producer])
        self.kept = {c.producer: alive[c.producer] for c in chains if len(alive[c.producer]) < c.width}
        return self.kept

    def _goal(self, c: Chain) -> int:
        """Channels of chain ``c`` that pruning removes: the ratio's share of its width, keeping at least one."""
        return min(c.width - 1, int(self.config.prune_ratio * c.width + 1e-9))

    @torch.no_grad()
    def carry_structure(self, fitted: Defense) -> None:
        """How many channels PAODING removes from a chain depends on the ratio and the chain's width only (which
        ones depends on the weights): remove that many from every prunable chain of this backbone's client too (the
        weakest by filter L1 norm)."""
        for c in require_chains(self.client, f"paoding on {self.backbone.label}"):
            if self._goal(c) > 0:
                self.kept[c.producer] = keep_strongest(channel_l1(self.client, c), c.width - self._goal(c))
                prune_chain(self.client, c, self.kept[c.producer])

    def _merge_progressively(self, chains: list[Chain], goal: dict, alive: dict) -> None:
        cfg = self.config
        dev = next(self.client.parameters()).device
        s, ch = self.info.image_size, self.info.channels
        box = (self.info.normalize(torch.zeros(1, ch, s, s, device=dev)),
               self.info.normalize(torch.ones(1, ch, s, s, device=dev)))
        root, prefix = (self.split, "client.") if cfg.impact_at == "logits" else (self.client, "")
        net = None if cfg.mode == "baseline" else IntervalNet(root, box[0])
        gen = torch.Generator().manual_seed(self.seed)
        target: dict[str, float] = {}
        while any(len(alive[c.producer]) > c.width - goal[c.producer] for c in chains):
            values = None if net is None else net.values(*box)
            for c in reversed(chains):  # later chains first: earlier merges never change their inputs' bounds
                left = len(alive[c.producer]) - (c.width - goal[c.producer])
                q = min(left, max(1, math.ceil(cfg.step * c.width)))
                if q <= 0:
                    continue
                for i, j in self._choose(c, q, alive, values, net, prefix, gen, target):
                    for name in c.consumers:
                        w = self.client.get_submodule(name).weight
                        w[:, i] += w[:, j]
                        w[:, j] = 0
                    alive[c.producer].remove(j)

    # -- pair choice -----------------------------------------------------------------------------------------------
    def _pairs(self, c: Chain, alive: list[int]):
        """Neuron-disjoint (kept, removed) pairs of live channels in increasing saliency."""
        w_in, b_in = incoming_weights(self.client, c)
        if self.config.bias_aware:
            w_in = torch.cat([w_in, b_in[:, None]], 1)
        idx = torch.tensor(alive, device=w_in.device)
        sal = torch.cdist(w_in[idx], w_in[idx]) * outgoing_weights(self.client, c)[idx].norm(dim=1)[None, :]
        sal.fill_diagonal_(float("inf"))
        used: set[int] = set()
        m = len(alive)
        for k in torch.argsort(sal.flatten().cpu(), stable=True).tolist():
            a, b = divmod(k, m)
            if a == b or a in used or b in used:
                continue
            used.update((a, b))
            yield alive[a], alive[b]
            if len(used) >= m - 1:
                return

    def _scores(self, c: Chain, pairs: list[tuple[int, int]], values, net: IntervalNet, prefix: str) -> Tensor:
        """alpha * sigmoid(L / mean L) + beta * sigmoid(ENT) of each pair's impact on the output layer."""
        cfg = self.config
        kept = torch.tensor([p[0] for p in pairs])
        gone = torch.tensor([p[1] for p in pairs])
        start = {}
        for name in c.consumers:
            node = net.node(prefix + name)
            layer = self.client.get_submodule(name)
            lo, hi = values[node.args[0]]
            cd = 1 if c.kind == "conv" else lo.ndim - 1
            k_, g_ = kept.to(lo.device), gone.to(lo.device)
            d_lo = lo.index_select(cd, k_) - hi.index_select(cd, g_)  # (I_i - I_j), channel axis = candidates
            d_hi = hi.index_select(cd, k_) - lo.index_select(cd, g_)
            mid, rad = (d_lo + d_hi) / 2, (d_hi - d_lo) / 2
            wj = layer.weight.detach().double().index_select(1, g_.to(layer.weight.device))  # [out, K, ...]
            if c.kind == "conv":
                start[node] = _grouped_conv(layer, mid, rad, wj)
            else:
                wj = wj.t()  # [K, out]
                mid, rad = mid[..., None] * wj, rad[..., None] * wj.abs()  # [1, ..., K, out]
                mid, rad = mid.movedim(-2, 0).squeeze(1), rad.movedim(-2, 0).squeeze(1)
                start[node] = (mid - rad, mid + rad)
        lo, hi = net.difference(start)
        width = (hi - lo).flatten(1).sum(1)
        big_l = torch.sigmoid(width / width.mean().clamp_min(1e-30))
        ent = torch.sigmoid(interval_entropy(*_units(lo, hi), cfg.similarity))
        return (cfg.alpha * big_l + cfg.beta * ent).float().cpu()

    def _choose(self, c: Chain, q: int, alive: dict, values, net, prefix: str, gen: torch.Generator,
                target: dict) -> list[tuple[int, int]]:
        cfg = self.config
        pairs = self._pairs(c, alive[c.producer])
        if cfg.mode == "baseline":
            return [p for _, p in zip(range(q), pairs)]
        if cfg.mode == "impact":
            cand = [p for _, p in zip(range(cfg.candidates * q), pairs)]
            scores = self._scores(c, cand, values, net, prefix)
            order = sorted(range(len(cand)), key=lambda k: (float(scores[k]), k))
            return [cand[k] for k in order[:q]]
        cand = list(pairs)
        scores = self._scores(c, cand, values, net, prefix).tolist()
        temperature = 1.0001 - (c.width - len(alive[c.producer])) / c.width
        chosen: list[int] = []
        for _ in range(100):  # walk the pairs in saliency order, again if too few were accepted
            for k, score in enumerate(scores):
                if len(chosen) >= q:
                    return [cand[k] for k in chosen]
                if k in chosen:
                    continue
                best = target.get(c.producer)
                accept = best is None or score <= best
                if not accept:
                    accept = float(torch.rand((), generator=gen)) < math.exp(-(score - best) / temperature)
                if accept:
                    target[c.producer] = score
                    chosen.append(k)
        chosen += [k for k in range(len(cand)) if k not in chosen][: q - len(chosen)]
        return [cand[k] for k in chosen[:q]]

    # -- the pruned architecture -----------------------------------------------------------------------------------
    def structure(self):
        return {"kept": self.kept} if self.kept else {}

    def restore_structure(self, structure):
        kept = structure.get("kept", {}) if structure else {}
        apply_kept(self.client, kept)
        self.kept = {k: list(v) for k, v in kept.items()}
