"""timm backbones cut at a named feature stage into a client (edge) part and a server part.

The cut is made on a ``torch.fx`` trace of the whole model in which the stage module (a name from timm's
``feature_info``, e.g. ``layer1`` for ResNets, ``blocks.3`` for ViTs, ``stages.0`` for ConvNeXt) is kept as a
single leaf. Everything up to and including that module is the client; everything after is the server, which
takes the stage output as its only input. This works for CNNs and ViTs alike (an ``nn.Sequential`` over
``children()`` does not: ViTs do work between children). ``server(client(x)) == model(x)`` is tested.

Example:
    >>> from benchmark.models.backbones import BackboneSpec, build_split
    >>> split = build_split(BackboneSpec("test_resnet", "layer1"), num_classes=2, image_size=32)
    >>> tuple(split.client(torch.zeros(1, 3, 32, 32)).shape)
    (1, 32, 8, 8)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import types
from collections.abc import Iterator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import NotApplicable, SplitbenchError, did_you_mean
from benchmark.core.fields import field

#: Backbones splitbench tests on every commit (server(client(x)) == model(x)).
TESTED_BACKBONES = ("resnet18", "mobilenetv3_small_100", "efficientnet_b0", "convnext_atto",
                    "vit_tiny_patch16_224", "test_resnet", "test_efficientnet", "test_vit", "test_convnext")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """A timm model and the feature stage after which it is split."""

    name: str = field("test_resnet", "any timm model name (see `splitbench list backbones`)")
    split: str = field("layer1", "a feature stage module of the model (timm feature_info), e.g. layer1, blocks.3")
    pretrained: bool = field(False, "load timm's pretrained weights (needs a download; off by default)")

    @property
    def label(self) -> str:
        return f"{self.name}@{self.split}"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the previous state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _timm():
    import timm

    import benchmark.models.paper_nets  # noqa: F401 (registers the papers' own small nets as timm models)

    return timm


def check_backbone_name(name: str) -> None:
    timm = _timm()
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise SplitbenchError(f"unknown backbone {name!r}{did_you_mean(name, timm.list_models())} "
                              "(expected a timm model name; `splitbench list backbones` lists them)")


def create_model(name: str, num_classes: int, image_size: int, pretrained: bool = False, seed: int = 0,
                 in_chans: int = 3) -> nn.Module:
    """``timm.create_model`` with the image size passed to models that take one (ViTs), seeded init."""
    timm = _timm()
    check_backbone_name(name)
    with seeded(seed):
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                      img_size=image_size)
        except TypeError:
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans)
        except Exception as exc:
            if pretrained:
                raise SplitbenchError(f"could not load pretrained weights for {name!r}: {exc}") from exc
            raise
    return one_pixel_convs(model)


# ------------------------------------------------------------------------------------------------------------
# Convolutions on one pixel
# ------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _window(size: int, k: int, s: int, p: int, d: int) -> tuple[slice, slice] | None:
    """Along one side: (input slice, kernel slice) of the taps that read the input when the output is one pixel
    long, else None (several outputs, or none, or no tap reads the input)."""
    if (size + 2 * p - d * (k - 1) - 1) // s + 1 != 1:
        return None
    first = -(-p // d)  # the first tap at or past the padding
    last = min(k - 1, (size - 1 + p) // d)  # the last tap before the far padding
    if first > last:
        return None
    return slice(first * d - p, last * d - p + 1, d), slice(first, last + 1)


def _zero_padded(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` pads with zeros by a number of pixels (not 'same' / 'valid', not reflect or replicate)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _windows(conv: nn.Conv2d, size: tuple[int, ...]) -> tuple[slice, slice, slice, slice] | None:
    h = _window(size[0], conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0])
    w = _window(size[1], conv.kernel_size[1], conv.stride[1], conv.padding[1], conv.dilation[1]) if h else None
    return None if w is None else (h[0], w[0], h[1], w[1])


def one_pixel_window(conv: nn.Conv2d, size: tuple[int, ...]) -> tuple[slice, slice, slice, slice] | None:
    """Where ``conv``'s output is one pixel on an input map of ``size`` (height, width): the input rows and columns
    that output reads and the kernel rows and columns that read them, ``(rows, cols, kernel_rows, kernel_cols)``;
    else None. Every other tap of that output reads zero padding, so the convolution is a matrix product of the
    window with those taps' weights (per group), plus the bias. Only zero-padded convolutions with numeric padding
    qualify."""
    return _windows(conv, size) if _zero_padded(conv) else None


#: input channels per group below which a strided 1x1 convolution runs at unit stride on the subsampled input: the
#: CPU convolution library's 1x1 weight-gradient kernels (blocks of 8 channels with AVX2, 16 with AVX-512) write past
#: their workspace for a strided channels-last input with fewer channels than a block, and their weight gradient
#: has come out wrong on some machines
STRIDED_1X1_MIN_CHANNELS = 16


def strided_1x1_at_unit_stride(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` (zero-padded) is a strided 1x1 convolution with fewer than
    :data:`STRIDED_1X1_MIN_CHANNELS` input channels per group, which the path computes at unit stride."""
    return (conv.kernel_size == (1, 1) and conv.stride != (1, 1)
            and conv.in_channels // conv.groups < STRIDED_1X1_MIN_CHANNELS)


def _unit_stride_1x1(conv: nn.Conv2d, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A strided zero-padded 1x1 convolution as a unit-stride one of the input positions it reads (the padded input
    subsampled by the stride): the same function, without the library's strided 1x1 kernel."""
    ph, pw = conv.padding  # numeric: the path is given to zero-padded convolutions only
    x = F.pad(input, (pw, pw, ph, ph)) if ph or pw else input
    x = x[:, :, ::conv.stride[0], ::conv.stride[1]]
    return F.conv2d(x, weight, bias, 1, 0, 1, conv.groups)


def _one_pixel_conv_forward(self: nn.Conv2d, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if input.dim() != 4:
        return nn.Conv2d._conv_forward(self, input, weight, bias)
    window = _windows(self, input.shape[-2:])  # zero-padded: one_pixel_convs gives the path to no other
    if window is None:
        if strided_1x1_at_unit_stride(self):
            return _unit_stride_1x1(self, input, weight, bias)
        return nn.Conv2d._conv_forward(self, input, weight, bias)
    rows, cols, kernel_rows, kernel_cols = window
    x = input[:, :, rows, cols]
    w = weight[:, :, kernel_rows, kernel_cols]
    n = len(x)
    if self.groups == 1:  # channels innermost on both sides: a view of a channels-last input and weight
        y = F.linear(x.permute(0, 2, 3, 1).reshape(n, -1), w.permute(0, 2, 3, 1).reshape(len(w), -1), bias)
        return y[:, :, None, None]
    if w.shape[1] == 1 and w.shape[0] == x.shape[1]:  # depthwise: one filter per channel
        y = (x.flatten(2) * w.flatten(2)[:, 0]).sum(2)
    else:
        g = self.groups
        y = torch.einsum("bgi,goi->bgo", x.reshape(n, g, -1), w.reshape(g, len(w) // g, -1)).flatten(1)
    return (y if bias is None else y + bias)[:, :, None, None]


def one_pixel_convs(model: nn.Module) -> nn.Module:
    """Let every plain zero-padded ``nn.Conv2d`` of ``model`` compute an output of one pixel as a matrix product of
    the input window it reads with the taps that read it (:func:`one_pixel_window`); any other input runs the
    convolution as before. Returns ``model``.

    The function is the same (the other taps multiply zero padding, and their weight gradients are zero either
    way); the result can differ in the last bits, as any change of summation order does. Deep stages of small
    images have outputs of one pixel (test_resnet's layer2 to layer4 at 8x8 pixels, its layer4 at 28x28), where
    the CPU convolution library computes the weight gradient with a generic matrix kernel: an Adam step of
    test_resnet in the harness's channels-last layout at batch 64 on one thread of an AMD EPYC took 0.56x the time
    of plain convolutions at 8x8 pixels and 0.70x at 28x28 (``tests/benchmarks/test_bench_one_pixel.py``). The
    module keeps its class (``nn.Conv2d``), its parameters and its state dict; only its ``_conv_forward`` is
    replaced (a copy of the module keeps it).

    The same replacement also runs a strided 1x1 convolution with fewer than 16 input channels per group at unit
    stride on the input positions it reads (:func:`strided_1x1_at_unit_stride`), the same function: the CPU
    library's strided 1x1 weight-gradient kernels write past their workspace on such a channels-last input, the
    layout the harness trains in on the CPU. None of the built-in tracks' networks has such a convolution."""
    for m in model.modules():
        if type(m) is nn.Conv2d and "_conv_forward" not in m.__dict__ and _zero_padded(m):
            m.__dict__["_conv_forward"] = types.MethodType(_one_pixel_conv_forward, m)
    return model


def split_points(model_or_name: nn.Module | str) -> list[str]:
    """The feature stage module names of a model (valid values for ``split``)."""
    model = create_model(model_or_name, 2, 32) if isinstance(model_or_name, str) else model_or_name
    fi = getattr(model, "feature_info", None)
    if not fi:
        return []
    info = fi.info if hasattr(fi, "info") else fi
    return [d["module"] for d in info]


def deeper_spec(model: nn.Module, spec: BackboneSpec, extra: int, who: str) -> BackboneSpec:
    """``spec`` with its split moved ``extra`` feature stages deeper in ``model`` (``layer1`` -> ``layer2`` for 1).

    Raises :class:`~benchmark.core.errors.NotApplicable` (naming ``who``) when the model has no such stage: a client cut
    after the last feature stage would leave the server only the classifier head."""
    points = split_points(model)
    at = points.index(spec.split) + extra if spec.split in points else len(points)
    if at >= len(points):
        raise NotApplicable(f"{who}: backbone {spec.name!r} has no stage {extra} past {spec.split!r} "
                            f"(stages: {', '.join(points) or 'none'})")
    return dataclasses.replace(spec, split=points[at])


class _CutTracer(fx.Tracer):
    def __init__(self, cut: str):
        from timm.layers import get_notrace_functions, get_notrace_modules

        super().__init__(autowrap_functions=tuple(get_notrace_functions()))
        self.cut = cut
        self.leaf_types = tuple(get_notrace_modules())

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname == self.cut or isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)


def cut_model(model: nn.Module, cut: str, model_name: str = "model") -> tuple[fx.GraphModule, fx.GraphModule]:
    """Cut ``model`` after the module named ``cut`` into (client, server) GraphModules sharing its parameters."""
    valid = split_points(model)
    if cut not in valid:
        raise SplitbenchError(f"backbone {model_name!r} has no split point {cut!r}{did_you_mean(cut, valid)} "
                              f"(expected one of: {', '.join(valid)})")
    tracer = _CutTracer(cut)
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise SplitbenchError(f"backbone {model_name!r} cannot be traced for splitting: {exc}") from exc
    nodes = list(graph.nodes)
    hits = [i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == cut]
    if len(hits) != 1:
        raise SplitbenchError(f"backbone {model_name!r}: stage {cut!r} is called {len(hits)} times; cannot cut there")
    k = hits[0]
    before, after = nodes[: k + 1], nodes[k + 1:]
    before_set = set(before)
    cut_node = nodes[k]
    carried = []
    for n in after:
        for inp in n.all_input_nodes:
            if inp in before_set and inp is not cut_node and inp not in carried:
                optional_input = inp.op == "placeholder" and len(inp.args) > 0  # e.g. attn_mask=None
                if inp.op != "get_attr" and not optional_input:
                    raise SplitbenchError(
                        f"backbone {model_name!r}: cutting after {cut!r} would need more than one tensor to cross "
                        f"(also {inp.name!r}); pick another split point")
                carried.append(inp)

    client_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in before:
        env[n] = client_graph.node_copy(n, lambda a: env[a])
    client_graph.output(env[cut_node])

    server_graph = fx.Graph()
    senv: dict[fx.Node, fx.Node] = {cut_node: server_graph.placeholder("z")}
    for n in carried:
        senv[n] = server_graph.node_copy(n, lambda a: senv[a])
    for n in after:
        senv[n] = server_graph.node_copy(n, lambda a: senv[a])
    client = fx.GraphModule(model, client_graph, class_name="Client")
    server = fx.GraphModule(model, server_graph, class_name="Server")
    return client, server


class SplitModel(nn.Module):
    """A model cut in two: ``client`` runs on the edge, ``server`` on the untrusted side."""

    def __init__(self, client: nn.Module, server: nn.Module, spec: BackboneSpec, num_classes: int,
                 image_size: int):
        super().__init__()
        self.client = client
        self.server = server
        self.spec = spec
        self.num_classes = num_classes
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        return self.server(self.client(x))


def build_split(spec: BackboneSpec, num_classes: int, image_size: int, seed: int = 0) -> SplitModel:
    """Create the timm model ``spec.name`` with ``num_classes`` outputs and cut it at ``spec.split``."""
    model = create_model(spec.name, num_classes, image_size, spec.pretrained, seed)
    client, server = cut_model(model, spec.split, spec.name)
    return SplitModel(client, server, spec, num_classes, image_size)


def fresh_server(spec: BackboneSpec, num_classes: int, image_size: int, seed: int) -> nn.Module:
    """A newly initialised server part (the model after ``spec.split``) with ``num_classes`` outputs.

    Used for attackers' heads and other networks that consume a release: never pretrained.
    """
    fresh = dataclasses.replace(spec, pretrained=False)
    return build_split(fresh, num_classes, image_size, seed).server


def fresh_model(name: str, num_classes: int, image_size: int, seed: int) -> nn.Module:
    """A whole newly initialised timm classifier (for image-shaped releases)."""
    return create_model(name, num_classes, image_size, False, seed)


def list_backbones(pattern: str = "*") -> list[str]:
    timm = _timm()
    return sorted(fnmatch.filter(timm.list_models(), pattern))
