"""Structured pruning of split clients, and interval bounds for data-free pruning decisions.

A *chain* is a producer layer (a ``Conv2d`` with ``groups == 1``, or a ``Linear``) whose output reaches only
consumer layers of the same kind, through channel-wise operations: batch norms, element-wise activations,
dropout, and (between convolutions) pooling. Removing output channel ``c`` of the producer, entry ``c`` of
every batch norm on the way and input channel ``c`` of every consumer leaves a physically smaller network that
computes the same function of the channels it keeps. Channels that reach a residual addition, a concatenation,
any other operation or the module's output are never part of a chain, so a pruned client still releases a
tensor of the original shape and the server applies unchanged.

Modules are resized in place (their weights are replaced by the kept slices), which keeps module names, hooks
and state-dict keys; a cached pruned model is rebuilt from the kept indices (:func:`apply_kept`) before its
weights are loaded.

:class:`IntervalNet` propagates boxes through a traced module by interval arithmetic (eval-mode semantics,
float64), either the values reachable from an input box or the change that a perturbation at some layers
causes downstream. Neither needs data. :func:`derivative_range` and :func:`op_lipschitz` describe how far the
parameter-free operations of a trace can stretch their input (for Lipschitz bounds).

Example:
    >>> import torch
    >>> from benchmark.backbones import BackboneSpec, build_split
    >>> client = build_split(BackboneSpec("test_resnet", "layer1"), 2, 32).client
    >>> [c.producer for c in find_chains(client)]
    ['conv1.0', 'conv1.3', 'layer1.0.conv1']
    >>> prune_chain(client, find_chains(client)[2], keep=range(8))
    >>> client.layer1[0].conv1.out_channels, tuple(client(torch.zeros(1, 3, 32, 32)).shape)
    (8, (1, 32, 8, 8))
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import NotApplicable, SplitbenchError

Interval = tuple[Tensor, Tensor]


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


def _is_norm(m: nn.Module) -> bool:
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
                if kind == "conv" and _is_norm(m):
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
def _norm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
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
        s, t = _norm_affine(module.get_submodule(chain.norms[0]))
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


# -- interval bounds -----------------------------------------------------------------------------------------------
# activation: (function, derivative range [a, b], input of the global minimum for unimodal functions or None)
_ACTS: dict[Any, tuple[Any, tuple[float, float], float | None]] = {}
for _k, _v in {
    (nn.ReLU, F.relu, torch.relu, "relu", "relu_"): (torch.relu, (0.0, 1.0), None),
    (nn.ReLU6, F.relu6): (F.relu6, (0.0, 1.0), None),
    (nn.Hardtanh, F.hardtanh): (F.hardtanh, (0.0, 1.0), None),
    (nn.Sigmoid, torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_"): (torch.sigmoid, (0.0, 0.25), None),
    (nn.Tanh, torch.tanh, F.tanh, "tanh", "tanh_"): (torch.tanh, (0.0, 1.0), None),
    (nn.GELU, F.gelu): (F.gelu, (-0.13, 1.13), -0.7518),
    (nn.SiLU, F.silu): (F.silu, (-0.1, 1.1), -1.2785),
    (nn.Hardswish, F.hardswish): (F.hardswish, (-0.5, 1.5), -1.5),
}.items():
    for _key in _k:
        _ACTS[_key] = _v
_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)
_SHAPE_METHODS = {"flatten", "view", "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
                  "mean", "sum"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze,
                    torch.mean, torch.sum, F.dropout, F.adaptive_avg_pool2d, F.avg_pool2d}


def derivative_range(op: Any) -> tuple[float, float] | None:
    """``[a, b]`` bounding the derivative of an element-wise op (a module, function or method name), or None."""
    if isinstance(op, nn.LeakyReLU):
        return min(op.negative_slope, 1.0), max(op.negative_slope, 1.0)
    if isinstance(op, nn.Module):
        if isinstance(op, _IDENTITY):
            return 1.0, 1.0
        op = type(op)
    try:
        spec = _ACTS.get(op)
    except TypeError:  # unhashable
        return None
    return None if spec is None else spec[1]


def op_lipschitz(node: fx.Node, module: nn.Module | None = None) -> float | str | None:
    """The l2 Lipschitz factor of a parameter-free traced operation: a number, ``"sum"`` for additions (the
    bounds of the inputs add up), or None when unknown. Pooling whose windows overlap ``n`` times scales by
    ``sqrt(n)`` (max) or ``sqrt(n / k)`` for an average over ``k`` inputs."""
    if node.op == "call_function" and node.target in (operator.add, torch.add, operator.sub):
        return "sum"
    if node.target in (operator.mul, operator.truediv) and len(node.all_input_nodes) == 1:
        c = next((float(a) for a in node.args if isinstance(a, (int, float))), None)
        return None if c is None or c == 0 else (abs(c) if node.target is operator.mul else 1.0 / abs(c))
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k, st = (nn.modules.utils._pair(v) for v in (module.kernel_size, module.stride or module.kernel_size))
        overlap = math.ceil(k[0] / st[0]) * math.ceil(k[1] / st[1])
        return math.sqrt(overlap if isinstance(module, nn.MaxPool2d) else overlap / (k[0] * k[1]))
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.Flatten)) or (
            node.op != "call_module" and node.target in (_SHAPE_METHODS | _SHAPE_FUNCTIONS) - {"sum", torch.sum}):
        return 1.0
    slope = derivative_range(module if module is not None else node.target)
    return None if slope is None else max(abs(slope[0]), abs(slope[1]))


def _act_values(x: Interval, spec) -> Interval:
    fn, _, argmin = spec
    a, b = fn(x[0]), fn(x[1])
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    if argmin is not None:
        inside = (x[0] <= argmin) & (x[1] >= argmin)
        lo = torch.where(inside, fn(torch.tensor(argmin, dtype=lo.dtype)), lo)
    return lo, hi


def _scale(x: Interval, a: float, b: float) -> Interval:
    """``x * [a, b]`` in interval arithmetic (scalars a <= b)."""
    c = torch.stack([x[0] * a, x[0] * b, x[1] * a, x[1] * b])
    return c.amin(0), c.amax(0)


class IntervalNet:
    """Interval arithmetic through a traced module in eval mode (float64, batch dimension kept).

    Two modes: :meth:`values` bounds every intermediate value reachable from an input box; :meth:`difference`
    bounds how much the output can change when the outputs of some layers change by given intervals (biases
    drop out; an activation with derivative in ``[a, b]`` scales a change by ``[a, b]``; max pooling moves by at
    most the largest change in its window). Unsupported operations raise a :class:`SplitbenchError`.
    """

    def __init__(self, module: nn.Module, example: Tensor):
        from torch.fx.passes.shape_prop import ShapeProp

        self.gm = trace(module)
        self.nodes = list(self.gm.graph.nodes)
        with torch.no_grad():
            ShapeProp(self.gm).propagate(example)

    def node(self, target: str) -> fx.Node:
        """The call_module node of the layer named ``target``."""
        for n in self.nodes:
            if n.op == "call_module" and n.target == target:
                return n
        raise SplitbenchError(f"no layer {target!r} in the traced module")

    def output_node(self) -> fx.Node:
        return next(n for n in self.nodes if n.op == "output").args[0]

    @torch.no_grad()
    def values(self, lo: Tensor, hi: Tensor) -> dict[fx.Node, Interval]:
        env: dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "placeholder":
                env[n] = (lo.double(), hi.double())
            elif n.op == "output":
                break
            else:
                env[n] = self._eval(n, env, diff=False)
        return env

    @torch.no_grad()
    def difference(self, start: Mapping[fx.Node, Interval]) -> Interval:
        """Bounds on the change of the output when each node in ``start`` changes by its interval."""
        first = min(self.nodes.index(n) for n in start)
        env: dict[fx.Node, Any] = {n: (v[0].double(), v[1].double()) for n, v in start.items()}
        out = self.output_node()
        for n in self.nodes[first:]:
            if n.op == "output":
                break
            if n not in env:
                env[n] = self._eval(n, env, diff=True)
        res = env.get(out)
        if res is None:
            shape = out.meta["tensor_meta"].shape
            z = torch.zeros(shape, dtype=torch.float64)
            return z, z
        return res

    # -- one operation ---------------------------------------------------------------------------------------------
    def _arg(self, a: Any, env: Mapping[fx.Node, Any], diff: bool) -> Any:
        if isinstance(a, fx.Node):
            return env.get(a)
        if isinstance(a, (int, float)) and not diff:
            t = torch.tensor(float(a), dtype=torch.float64)
            return t, t
        return None if diff else a

    def _eval(self, n: fx.Node, env: Mapping[fx.Node, Any], diff: bool) -> Interval | None:
        ins = [env.get(a) for a in n.all_input_nodes]
        if diff and all(v is None for v in ins):
            return None
        if n.op == "call_module":
            return self._module(self.gm.get_submodule(n.target), env[n.args[0]], diff, n)
        if n.op == "get_attr":
            t = getattr(self.gm, n.target).detach().double()
            return None if diff else (t, t)
        key = n.target
        if key in _ACTS:
            x = env[n.args[0]]
            return _scale(x, *_ACTS[key][1]) if diff else _act_values(x, _ACTS[key])
        if key in (operator.add, torch.add, operator.sub):
            a, b = (self._arg(v, env, diff) for v in n.args[:2])
            if diff:
                a = a if a is not None else (0.0, 0.0)
                b = b if b is not None else (0.0, 0.0)
            if key is operator.sub:
                return a[0] - b[1], a[1] - b[0]
            return a[0] + b[0], a[1] + b[1]
        if key in (operator.mul, torch.mul, operator.truediv):
            a, b = n.args[:2]
            if isinstance(b, (int, float)) and isinstance(a, fx.Node):
                c = float(b) if key is not operator.truediv else 1.0 / float(b)
                return _scale(env[a], c, c)
            if isinstance(a, (int, float)) and isinstance(b, fx.Node) and key is not operator.truediv:
                return _scale(env[b], float(a), float(a))
        if key in _SHAPE_FUNCTIONS or (n.op == "call_method" and key in _SHAPE_METHODS):
            x = env[n.args[0]]
            f = (lambda t: getattr(t, key)(*n.args[1:], **n.kwargs)) if n.op == "call_method" else (
                lambda t: key(t, *n.args[1:], **n.kwargs))
            if key in (F.dropout,):
                return x
            return f(x[0]), f(x[1])
        if key is torch.cat:
            parts = []
            for a in n.args[0]:
                v = env.get(a)
                if v is None:
                    z = torch.zeros(a.meta["tensor_meta"].shape, dtype=torch.float64)
                    v = (z, z)
                parts.append(v)
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            return torch.cat([p[0] for p in parts], dim), torch.cat([p[1] for p in parts], dim)
        raise NotApplicable(f"interval bounds: unsupported operation {n.format_node()}")

    def _module(self, m: nn.Module, x: Interval | None, diff: bool, n: fx.Node) -> Interval | None:
        if x is None:
            return None
        if type(m) in (nn.Conv2d, nn.Linear):
            w = m.weight.detach().double()
            b = None if (diff or m.bias is None) else m.bias.detach().double()
            mid, rad = (x[0] + x[1]) / 2, (x[1] - x[0]) / 2
            if type(m) is nn.Conv2d:
                mid, rad = m._conv_forward(mid, w, b), m._conv_forward(rad, w.abs(), None)
            else:
                mid, rad = F.linear(mid, w, b), F.linear(rad, w.abs())
            return mid - rad, mid + rad
        if _is_norm(m):
            s, t = (v.double() for v in _norm_affine(m))
            shape = (1, -1) + (1,) * (x[0].ndim - 2)
            s, t = s.view(shape), t.view(shape)
            lo, hi = torch.minimum(x[0] * s, x[1] * s), torch.maximum(x[0] * s, x[1] * s)
            if not diff:
                lo, hi = lo + t, hi + t
            act = getattr(m, "act", None)
            return (lo, hi) if act is None else self._module(act, (lo, hi), diff, n)
        if type(m) in _ACTS:
            return _scale(x, *_ACTS[type(m)][1]) if diff else _act_values(x, _ACTS[type(m)])
        if isinstance(m, nn.LeakyReLU):
            a = min(m.negative_slope, 1.0)
            return _scale(x, a, max(m.negative_slope, 1.0)) if diff else (F.leaky_relu(x[0], m.negative_slope),
                                                                           F.leaky_relu(x[1], m.negative_slope))
        if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):  # monotone; a change moves by at most its max
            return (-m(-x[0]) if diff else m(x[0])), m(x[1])
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or isinstance(m, _IDENTITY):
            return m(x[0]), m(x[1])
        raise NotApplicable(f"interval bounds: unsupported layer {type(m).__name__} at {n.target!r}")
