"""Structured pruning of split clients: the channel chains of a traced network, cut physically.

A *chain* is a producer layer (a ``Conv2d`` with ``groups == 1``, or a ``Linear``) whose output reaches only
consumer layers of the same kind, through channel-wise operations: batch norms, element-wise activations,
dropout, and (between convolutions) pooling. Removing output channel ``c`` of the producer, entry ``c`` of
every batch norm on the way and input channel ``c`` of every consumer leaves a physically smaller network that
computes the same function of the channels it keeps. Channels that reach a residual addition, a concatenation,
any other operation or the module's output are never part of a chain, so a pruned client still releases a
tensor of the original shape and the server applies unchanged.

Modules are resized in place (their weights are replaced by the kept slices), which keeps module names, hooks
and state-dict keys; a cached pruned model is rebuilt from the kept indices (:func:`apply_kept`) before its
weights are loaded. Data-free bounds on what a change does downstream are in :mod:`benchmark.kit.bounds`.

Example:
    >>> import torch
    >>> from benchmark.models.backbones import BackboneSpec, build_split
    >>> client = build_split(BackboneSpec("test_resnet", "layer1"), 2, 32).client
    >>> [c.producer for c in find_chains(client)]
    ['conv1.0', 'conv1.3', 'layer1.0.conv1']
    >>> prune_chain(client, find_chains(client)[2], keep=range(8))
    >>> client.layer1[0].conv1.out_channels, tuple(client(torch.zeros(1, 3, 32, 32)).shape)
    (8, (1, 32, 8, 8))
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import SplitbenchError


# -- tracing -------------------------------------------------------------------------------------------------------
class _FlatTracer(fx.Tracer):
    """Traces through containers and custom blocks down to torch.nn layers (and timm's untraceable modules)."""

    def __init__(self):
        from timm.layers import get_notrace_functions, get_notrace_modules

        super().__init__(autowrap_functions=tuple(get_notrace_functions()))
        self.opaque = tuple(get_notrace_modules())

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, self.opaque):
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        return type(m).__module__.startswith(("torch.nn", "torch.ao.nn"))


def trace(module: nn.Module) -> fx.GraphModule:
    """A flat FX trace of ``module`` whose call_module targets are qualified names relative to it."""
    try:
        graph = _FlatTracer().trace(module)
    except Exception as exc:
        raise SplitbenchError(f"cannot trace {type(module).__name__} for pruning: {exc}") from exc
    return fx.GraphModule(module, graph)


# -- what may sit inside a chain -----------------------------------------------------------------------------------
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
                        nn.Sigmoid, nn.Tanh, nn.Mish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout,
                        nn.Dropout2d)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.mish, F.leaky_relu,
                          F.elu, F.dropout, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "contiguous"}


def _layer_kind(m: nn.Module) -> str | None:
    if type(m) is nn.Conv2d and m.groups == 1:
        return "conv"
    if type(m) is nn.Linear:
        return "linear"
    return None


def is_norm(m: nn.Module) -> bool:
    """Per-channel batch norms over dim 1 (timm's BatchNormAct2d adds a channel-wise activation)."""
    return isinstance(m, nn.BatchNorm2d) and m.track_running_stats


def _only_tensor_arg(node: fx.Node, src: fx.Node) -> bool:
    nodes = [a for a in node.all_input_nodes]
    return nodes == [src]


@dataclasses.dataclass(frozen=True)
class Chain:
    """A prunable channel space: ``producer`` -> (``norms`` and channel-wise ops) -> ``consumers``."""

    producer: str
    norms: tuple[str, ...]
    consumers: tuple[str, ...]
    kind: str  # "conv" or "linear"
    width: int


def _follow(start: fx.Node, kind: str, mods: Mapping[str, nn.Module], calls: Counter) -> Chain | None:
    norms: list[str] = []
    consumers: list[str] = []
    frontier, seen = [start], {start}
    while frontier:
        node = frontier.pop()
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            if user.op == "call_module":
                m = mods[user.target]
                if calls[user.target] != 1 or not _only_tensor_arg(user, node):
                    return None
                if _layer_kind(m) == kind:
                    consumers.append(user.target)
                    continue
                if kind == "conv" and is_norm(m):
                    norms.append(user.target)
                elif not (isinstance(m, _ELEMENTWISE_MODULES) or (kind == "conv" and isinstance(m, _POOLS))):
                    return None
            elif user.op == "call_function" and user.target in _ELEMENTWISE_FUNCTIONS:
                if not _only_tensor_arg(user, node):
                    return None
            elif user.op == "call_method" and user.target in _ELEMENTWISE_METHODS:
                if not _only_tensor_arg(user, node):
                    return None
            else:
                return None  # residual add, concat, reshape, the output, ...
            frontier.append(user)
    if not consumers:
        return None
    p = mods[start.target]
    width = p.out_channels if kind == "conv" else p.out_features
    return Chain(start.target, tuple(norms), tuple(sorted(consumers)), kind, width)


def find_chains(module: nn.Module, min_width: int = 2) -> list[Chain]:
    """Every prunable chain of ``module``, in execution order of the producers."""
    gm = trace(module)
    mods = dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    chains = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        kind = _layer_kind(mods[node.target])
        if kind is None:
            continue
        chain = _follow(node, kind, mods, calls)
        if chain is not None and chain.width >= min_width:
            chains.append(chain)
    return chains


def require_chains(module: nn.Module, what: str, min_width: int = 2) -> list[Chain]:
    """:func:`find_chains`, raising a clear error naming ``what`` (e.g. the backbone) when there is none."""
    chains = find_chains(module, min_width)
    if not chains:
        raise SplitbenchError(
            f"{what}: the client has no prunable channels (no conv->conv or linear->linear chain whose channels "
            "stay inside the client without reaching a residual addition, a concatenation or the release); "
            "pick another backbone or a deeper split")
    return chains


# -- physical pruning ----------------------------------------------------------------------------------------------
def _slice(m: nn.Module, name: str, dim: int, idx: Tensor) -> None:
    t = getattr(m, name, None)
    if t is None:
        return
    new = t.detach().index_select(dim, idx.to(t.device)).clone()
    if isinstance(t, nn.Parameter):
        setattr(m, name, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        setattr(m, name, new)


def prune_chain(module: nn.Module, chain: Chain, keep: Iterable[int]) -> None:
    """Keep only channels ``keep`` (indices into the chain's current width) of ``chain``, in place."""
    idx = sorted({int(i) for i in keep})
    if not idx or idx[0] < 0 or idx[-1] >= chain.width:
        raise SplitbenchError(f"chain {chain.producer!r}: cannot keep channels {idx[:5]}... of {chain.width}")
    keep_t = torch.tensor(idx, dtype=torch.long)
    producer = module.get_submodule(chain.producer)
    _slice(producer, "weight", 0, keep_t)
    _slice(producer, "bias", 0, keep_t)
    if chain.kind == "conv":
        producer.out_channels = len(idx)
    else:
        producer.out_features = len(idx)
    for name in chain.norms:
        norm = module.get_submodule(name)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            _slice(norm, attr, 0, keep_t)
        norm.num_features = len(idx)
    for name in chain.consumers:
        consumer = module.get_submodule(name)
        _slice(consumer, "weight", 1, keep_t)
        if chain.kind == "conv":
            consumer.in_channels = len(idx)
        else:
            consumer.in_features = len(idx)


def apply_kept(module: nn.Module, kept: Mapping[str, Sequence[int]]) -> None:
    """Re-apply a record ``{producer: kept channel indices}`` (as :func:`prune_chain` took them) to ``module``."""
    chains = {c.producer: c for c in find_chains(module, min_width=1)}
    for producer, idx in kept.items():
        if producer not in chains:
            raise SplitbenchError(f"cannot restore pruned channels: {producer!r} is not a prunable layer here "
                                  f"(prunable: {', '.join(chains) or 'none'})")
        prune_chain(module, chains[producer], idx)


# -- weights seen from a chain -------------------------------------------------------------------------------------
def norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale.detach(), shift.detach()


def incoming_weights(module: nn.Module, chain: Chain) -> tuple[Tensor, Tensor]:
    """``(w [width, fan_in], b [width])`` of the producer with the chain's first batch norm folded in (eval)."""
    p = module.get_submodule(chain.producer)
    w = p.weight.detach().flatten(1).float()
    b = torch.zeros(chain.width, device=w.device) if p.bias is None else p.bias.detach().float()
    if chain.norms:
        s, t = norm_affine(module.get_submodule(chain.norms[0]))
        w, b = w * s.float()[:, None], b * s.float() + t.float()
    return w, b


def outgoing_weights(module: nn.Module, chain: Chain) -> Tensor:
    """``[width, fan_out]``: every consumer's weights reading each channel, concatenated."""
    parts = [module.get_submodule(c).weight.detach().float().transpose(0, 1).flatten(1) for c in chain.consumers]
    return torch.cat(parts, dim=1)


def channel_l1(module: nn.Module, chain: Chain) -> Tensor:
    """Filter importance: L1 norm of each producer filter with the following batch norm folded in."""
    return incoming_weights(module, chain)[0].abs().sum(1)


def keep_strongest(scores: Tensor, n_keep: int) -> list[int]:
    """Indices of the ``n_keep`` largest scores (ties broken by index), in increasing order."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:max(1, n_keep)])
