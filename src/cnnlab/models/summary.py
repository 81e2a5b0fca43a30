"""Layer arithmetic and the Keras-style layer table.

Shapes come from the convolution arithmetic, O = floor((W - K + 2P) / S) + 1, not from
running the net, so a net that cannot fit the data fails while it is being built, naming the
layer. ``layer_table`` also runs one real forward pass and checks that it agrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.blocks import ACTIVATIONS

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) after flattening

_POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d)  # MinPool2d subclasses MaxPool2d
_SHAPE_PRESERVING = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
    nn.Identity,
    *ACTIVATIONS.values(),
)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def window_out(
    size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output size of a convolution or pooling window: O = (W - K + 2P) / S + 1."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        return f"Conv2d {m.out_channels}@{k[0]}x{k[1]} s{s[0]} p{p[0]}"
    if isinstance(m, _POOL_TYPES):
        return (
            f"{type(m).__name__} {m.kernel_size}x{m.kernel_size} s{m.stride}"
            if isinstance(m.kernel_size, int)
            else type(m).__name__
        )
    if isinstance(m, nn.Linear):
        return f"Linear {m.out_features}"
    if isinstance(m, nn.Dropout):
        return f"Dropout {m.p:g}"
    if isinstance(m, nn.ZeroPad2d):
        return f"ZeroPad2d {m.padding[0]}"
    return type(m).__name__


def next_shape(name: str, m: nn.Module, shape: Shape) -> Shape:
    """The output shape of leaf module ``m`` for input ``shape``; ModelError if it vanishes."""
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        c, h, w = shape
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        d = _pair(getattr(m, "dilation", 1)) if isinstance(m, nn.Conv2d | nn.MaxPool2d) else (1, 1)
        ceil = getattr(m, "ceil_mode", False)
        oh = window_out(h, k[0], s[0], p[0], d[0], ceil)
        ow = window_out(w, k[1], s[1], p[1], d[1], ceil)
        if oh < 1 or ow < 1:
            raise ModelError(
                f"Layer {name!r} ({_describe(m)}) would shrink the {h}x{w} feature map to "
                f"{oh}x{ow}: the model is too deep for this image size. Use a shallower "
                f"model (fewer pooling stages), a smaller kernel or padding, or larger images."
            )
        return (m.out_channels if isinstance(m, nn.Conv2d) else c, oh, ow)
    if isinstance(m, nn.ZeroPad2d):
        left, right, top, bottom = m.padding
        c, h, w = shape
        return (c, h + top + bottom, w + left + right)
    if isinstance(m, nn.Flatten):
        return (math.prod(shape),)
    if isinstance(m, nn.Linear):
        return (m.out_features,)
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        oh, ow = _pair(m.output_size)
        return (shape[0], oh or shape[1], ow or shape[2])
    if isinstance(m, _SHAPE_PRESERVING):
        return shape
    raise TypeError(f"no shape rule for layer {name!r} of type {type(m).__name__}")


def trace_shapes(layers: Iterable[tuple[str, nn.Module]], input_shape: Shape) -> Shape:
    """Walk named leaf layers with the arithmetic above; return the final shape."""
    shape = tuple(input_shape)
    for name, m in layers:
        shape = next_shape(name, m, shape)
    return shape


def leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules in registration order (= forward order for the Sequential nets here)."""
    return [(n, m) for n, m in net.named_modules() if n and not any(m.children())]


@dataclass
class Row:
    name: str
    kind: str
    shape: Shape
    params: int

    @property
    def shape_str(self) -> str:
        """H x W x C like the course's Keras tables; a flat vector is just its length."""
        if len(self.shape) == 3:
            c, h, w = self.shape
            return f"{h}x{w}x{c}"
        return "x".join(map(str, self.shape))


def layer_rows(net: nn.Module, input_shape: Shape, check: bool = True) -> list[Row]:
    """One row per layer; activations fold into the layer before them, as in Keras."""
    rows: list[Row] = []
    shape = tuple(input_shape)
    for name, m in leaves(net):
        shape = next_shape(name, m, shape)
        params = sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)
        if isinstance(m, tuple(ACTIVATIONS.values())) and rows:
            rows[-1].kind += f" + {type(m).__name__.lower()}"
            continue
        rows.append(Row(name, _describe(m), shape, params))
    if check:
        _check_against_forward(net, input_shape, rows)
    return rows


@torch.no_grad()
def _check_against_forward(net: nn.Module, input_shape: Shape, rows: list[Row]) -> None:
    """The arithmetic must agree with what PyTorch computes; a mismatch is a cnnlab bug."""
    real: dict[str, Shape] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: real.__setitem__(n, tuple(out.shape[1:])))
        for n, m in leaves(net)
    ]
    was_training = net.training
    try:
        net.eval()
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        net(torch.zeros(2, *input_shape, device=device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    for row in rows:
        if real[row.name] != row.shape:
            raise AssertionError(
                f"layer {row.name}: arithmetic says {row.shape}, forward pass gives {real[row.name]}"
            )


def count_params(net: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def layer_table(net: nn.Module, input_shape: Shape, title: str | None = None) -> str:
    """The Keras-style table as text: layer, type, output shape (HxWxC), parameters."""
    rows = layer_rows(net, input_shape)
    c, h, w = input_shape
    header = ("Layer", "Type", "Output shape", "Params")
    body = [("input", "", f"{h}x{w}x{c}", "")]
    body += [(r.name, r.kind, r.shape_str, f"{r.params:,}") for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(4)]

    def fmt(line):
        return "  ".join(
            str(v).rjust(wd) if i == 3 else str(v).ljust(wd)
            for i, (v, wd) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    rule = "-" * len(fmt(header))
    total = count_params(net, trainable_only=False)
    trainable = count_params(net)
    lines = ([title] if title else []) + [rule, fmt(header), rule, *map(fmt, body), rule]
    lines += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
    ]
    return "\n".join(lines)
