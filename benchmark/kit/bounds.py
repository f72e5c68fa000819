"""Interval bounds through a traced network, for data-free pruning decisions (PATROL, PAODING).

:class:`IntervalNet` propagates boxes (a lower and an upper tensor, :data:`Box`) through a traced module by
interval arithmetic (eval-mode semantics, float64): either the values reachable from an input box or the change
that a perturbation at some layers causes downstream. Neither needs data. :func:`derivative_range` and
:func:`op_lipschitz` describe how far the parameter-free operations of a trace can stretch their input (for
Lipschitz bounds). These are bounds on a network's values, not the bootstrap intervals the leaderboard puts on
its figures (:mod:`benchmark.measure.intervals`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import NotApplicable, SplitbenchError
from benchmark.kit.chains import is_norm, norm_affine, trace

#: a box: element-wise lower and upper bounds of one tensor
Box = tuple[Tensor, Tensor]


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


def _act_values(x: Box, spec) -> Box:
    fn, _, argmin = spec
    a, b = fn(x[0]), fn(x[1])
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    if argmin is not None:
        inside = (x[0] <= argmin) & (x[1] >= argmin)
        lo = torch.where(inside, fn(torch.tensor(argmin, dtype=lo.dtype)), lo)
    return lo, hi


def _scale(x: Box, a: float, b: float) -> Box:
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
    def values(self, lo: Tensor, hi: Tensor) -> dict[fx.Node, Box]:
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
    def difference(self, start: Mapping[fx.Node, Box]) -> Box:
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

    def _eval(self, n: fx.Node, env: Mapping[fx.Node, Any], diff: bool) -> Box | None:
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

    def _module(self, m: nn.Module, x: Box | None, diff: bool, n: fx.Node) -> Box | None:
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
        if is_norm(m):
            s, t = (v.double() for v in norm_affine(m))
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
