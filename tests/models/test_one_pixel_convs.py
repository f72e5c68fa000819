"""Convolutions whose output is one pixel computed as a matrix product of the window they read: the same function
and gradients as the convolution."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.backbones import (
    BackboneSpec,
    build_split,
    create_model,
    one_pixel_convs,
    one_pixel_window,
    strided_1x1_at_unit_stride,
)
from benchmark.models.trainer import place

# (kernel, stride, padding, dilation): every combination, whether or not it gives a one-pixel output
GEOMETRIES = list(itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)))
SIZES = (1, 2, 3, 4, 5)  # input sides
# (in, out, groups): plain, grouped, depthwise, depthwise with a channel multiplier
CHANNELS = [(6, 4, 1), (6, 4, 2), (6, 6, 6), (3, 6, 3)]


def _plain(conv: nn.Conv2d) -> nn.Conv2d:
    ref = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    ref.load_state_dict(conv.state_dict())
    return ref


def _run(conv: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    y = conv(x)
    y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape))
    return y.detach(), [x.grad] + [p.grad for p in conv.parameters()]


def _output_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("k, s, p, d", GEOMETRIES)
def test_window_is_exactly_what_the_one_output_reads(k, s, p, d):
    conv = nn.Conv2d(2, 2, (k, 1), (s, 1), (p, 0), (d, 1))  # the geometry along the rows; one column tap
    for size in SIZES:
        taps = [t for t in range(k) if 0 <= t * d - p < size]  # taps of output 0 that read the input
        window = one_pixel_window(conv, (size, 1))
        if _output_size(size, k, s, p, d) != 1 or not taps:
            assert window is None, size
            continue
        assert window is not None, size
        rows, cols, kernel_rows, kernel_cols = window
        assert list(range(size))[rows] == [t * d - p for t in taps]
        assert list(range(k))[kernel_rows] == taps
        assert (cols, kernel_cols) == (slice(0, 1, 1), slice(0, 1))


@pytest.mark.parametrize("channels", CHANNELS, ids=[f"in{a}-out{b}-g{g}" for a, b, g in CHANNELS])
@pytest.mark.parametrize("bias", [True, False])
def test_one_pixel_path_matches_the_convolution(channels, bias):
    """Where a window exists (or the path runs a strided 1x1 convolution at unit stride), the path's output and
    every gradient match the convolution computed in float64 (the
    ground truth: a float32 CPU convolution is not one, as some library kernels have been wrong on some CPUs, e.g.
    the weight gradient of strided 1x1 channels-last convolutions with few input channels); anywhere else the path
    runs the convolution itself, bit for bit."""
    c_in, c_out, groups = channels
    checked = 0
    for (k, s, p, d), size in itertools.product(GEOMETRIES, SIZES):
        if _output_size(size, k, s, p, d) < 1:
            continue  # the convolution itself refuses such an input
        torch.manual_seed(k * 100 + s * 10 + p + d + 1000 * size)
        conv = nn.Conv2d(c_in, c_out, k, s, p, d, groups=groups, bias=bias)
        truth = _plain(conv).double()
        one_pixel_convs(conv)
        window = one_pixel_window(conv, (size, size))
        own = window is not None or strided_1x1_at_unit_stride(conv)  # computed by the path itself
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(5, c_in, size, size).contiguous(memory_format=layout)
            where = f"kernel {k} stride {s} padding {p} dilation {d}, input {size}x{size}, {layout}"
            if not own:
                with torch.no_grad():
                    assert torch.equal(conv(x), nn.Conv2d._conv_forward(conv, x, conv.weight, conv.bias)), where
                continue
            y, grads = _run(conv, x)
            y_ref, grads_ref = _run(truth, x.double())
            assert y.shape == y_ref.shape, where
            torch.testing.assert_close(y, y_ref.float(), rtol=1e-5, atol=1e-5, msg=lambda m, w=where: f"{w}: {m}")
            for name, g, g_ref in zip(("input", "weight", "bias"), grads, grads_ref, strict=False):
                torch.testing.assert_close(g, g_ref.float(), rtol=1e-5, atol=1e-5,
                                           msg=lambda m, w=where, n=name: f"{w}, {n} gradient: {m}")
            conv.zero_grad(set_to_none=True)
            truth.zero_grad(set_to_none=True)
        checked += window is not None and size > 1
    assert checked >= 20  # the path itself was exercised on windows wider than one pixel, not only the fallback


def test_one_pixel_inputs_give_the_bits_of_the_one_tap_product():
    """On a 1x1 map the window is the one live tap: the path is the product of the channels with that tap's
    weights, bit for bit (what the records of numerics version 2 computed)."""
    torch.manual_seed(0)
    conv = one_pixel_convs(nn.Conv2d(8, 5, 3, 1, 1))
    x = torch.randn(4, 8, 1, 1)
    with torch.no_grad():
        assert torch.equal(conv(x), F.linear(x.flatten(1), conv.weight[:, :, 1, 1], conv.bias)[:, :, None, None])


def test_larger_maps_run_the_convolution_unchanged():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, 1, 1)
    ref = _plain(conv)
    one_pixel_convs(conv)
    for size in (2, 3, 8):
        x = torch.randn(3, 4, size, size)
        y, grads = _run(conv, x)
        y_ref, grads_ref = _run(ref, x)
        assert torch.equal(y, y_ref)  # the very same kernel: bit for bit
        for g, g_ref in zip(grads, grads_ref, strict=True):
            assert torch.equal(g, g_ref)
        conv.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)


@pytest.mark.parametrize("conv", [nn.Conv2d(2, 2, 3, 1, 1, padding_mode="reflect"), nn.Conv2d(2, 2, 3, padding="same")],
                         ids=["reflect", "same"])
def test_convolutions_without_numeric_zero_padding_are_left_alone(conv):
    assert one_pixel_window(conv, (1, 1)) is None
    one_pixel_convs(conv)
    assert "_conv_forward" not in conv.__dict__


def test_subclasses_are_left_alone():
    class Custom(nn.Conv2d):
        pass

    conv = Custom(2, 2, 3, 1, 1)
    one_pixel_convs(conv)
    assert "_conv_forward" not in conv.__dict__


@pytest.mark.parametrize("size, wider", [(8, 1), (28, 1)])
def test_created_models_use_it_and_train_the_same(size, wider):
    """test_resnet has one-pixel outputs from layer2 on at the quick suite's 8x8 and in layer4 at the official
    track's 28x28 (``wider`` of them read a window wider than one pixel): the model create_model returns takes the
    path there, in the harness's channels-last layout, and its outputs and every gradient match the plain
    convolutions'."""
    model = place(create_model("test_resnet", 10, size, seed=1), "cpu")
    plain = copy.deepcopy(model)
    for m in plain.modules():
        m.__dict__.pop("_conv_forward", None)
    live = [m for m in model.modules() if "_conv_forward" in m.__dict__]
    assert len(live) == sum(type(m) is nn.Conv2d for m in model.modules())  # every test_resnet conv qualifies
    x, y = torch.randn(16, 3, size, size).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (16,))
    windows: list[tuple[int, int]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: windows.append(tuple(inp[0].shape[-2:])) if
                                         one_pixel_window(mod, inp[0].shape[-2:]) else None) for m in live]
    outs = []
    for m in (model, plain):
        m.train()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        outs.append((loss.detach(), [p.grad for p in m.parameters()]))
    for h in hooks:
        h.remove()
    assert windows and sum(w != (1, 1) for w in windows) == wider
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    for g, g_ref in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def test_copies_keep_the_path_on_their_own_weights():
    model = one_pixel_convs(nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1)))
    twin = copy.deepcopy(model)
    assert twin[0]._conv_forward.__self__ is twin[0]
    with torch.no_grad():
        twin[0].weight.mul_(2)
        twin[0].bias.zero_()
        model[0].bias.zero_()
    x = torch.randn(2, 3, 1, 1)
    torch.testing.assert_close(twin(x), 2 * model(x))
    assert list(twin.state_dict()) == ["0.weight", "0.bias"]


def test_split_models_keep_it_and_still_reproduce_the_model():
    sm = build_split(BackboneSpec("test_resnet", "layer1"), num_classes=3, image_size=8, seed=2).eval()
    full = create_model("test_resnet", 3, 8, seed=2).eval()
    assert any("_conv_forward" in m.__dict__ for m in sm.server.modules())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(sm.server(sm.client(x)), full(x))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("c_in, groups", [(4, 1), (6, 2), (8, 8), (15, 1)])
def test_strided_1x1_with_few_channels_runs_at_unit_stride(monkeypatch, layout, c_in, groups):
    """A strided 1x1 convolution with fewer than 16 input channels per group never reaches the library's strided
    kernel (every convolution it calls has stride 1) and computes the convolution's function and gradients (float64
    truth), padded or not; with 16 or more channels per group the strided convolution runs as it is."""
    calls: list[tuple[int, int]] = []
    conv2d = F.conv2d

    def spy(x, w, b=None, stride=1, *args, **kwargs):
        calls.append(tuple(stride) if isinstance(stride, (tuple, list)) else (stride, stride))
        return conv2d(x, w, b, stride, *args, **kwargs)

    monkeypatch.setattr(F, "conv2d", spy)
    c_out = 2 * groups if groups > 1 else 6
    for stride, padding, size in itertools.product((2, 3), (0, 1), (4, 5, 7)):
        torch.manual_seed(stride * 10 + padding + size)
        conv = nn.Conv2d(c_in, c_out, 1, stride, padding, groups=groups)
        truth = _plain(conv).double()
        one_pixel_convs(conv)
        assert strided_1x1_at_unit_stride(conv)
        x = torch.randn(3, c_in, size, size).contiguous(memory_format=layout)
        calls.clear()
        y, grads = _run(conv, x)
        assert calls and set(calls) == {(1, 1)}, (stride, padding, size, calls)
        y_ref, grads_ref = _run(truth, x.double())
        assert y.shape == y_ref.shape
        torch.testing.assert_close(y, y_ref.float(), rtol=1e-5, atol=1e-5)
        for g, g_ref in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, g_ref.float(), rtol=1e-5, atol=1e-5)
    wide = one_pixel_convs(nn.Conv2d(16 * groups, c_out, 1, 2, groups=groups))
    assert not strided_1x1_at_unit_stride(wide)
    calls.clear()
    wide(torch.randn(2, 16 * groups, 6, 6))
    assert calls == [(2, 2)]
