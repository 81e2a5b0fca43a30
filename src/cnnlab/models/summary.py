"""The layer table of any ``nn.Module``, read off one real forward pass.

Forward hooks on every leaf module record, in execution order, what each layer produced:
output shape, parameters, multiply-accumulates, and the receptive field while the net is a
plain chain of layers. Nothing here knows the zoo's layer names, so a researcher's own net
(residual blocks, nested modules, functional calls) gets the same table as LeNet-5.

The same pass checks that a net fits its input: a layer that cannot take what reaches it
fails at build time with its name (``check_forward``), not deep inside training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.blocks import ACTIVATIONS

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) after flattening

_WINDOWS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # MinPool2d subclasses MaxPool2d
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # model.head=gap|gmp
_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


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


def describe(m: nn.Module) -> str:
    """A short human description of a layer: ``Conv2d 6@5x5 s1 p0``, ``Linear 120``..."""
    if isinstance(m, nn.Conv2d):
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        return f"Conv2d {m.out_channels}@{k[0]}x{k[1]} s{s[0]} p{p[0]}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = _pair(m.kernel_size), _pair(m.stride)
        return f"{type(m).__name__} {k[0]}x{k[1]} s{s[0]}"
    if isinstance(m, nn.Linear):
        return f"Linear {m.out_features}"
    if isinstance(m, nn.Dropout):
        return f"Dropout {m.p:g}"
    if isinstance(m, nn.ZeroPad2d):
        return f"ZeroPad2d {m.padding[0]}"
    return type(m).__name__


def model_title(net: nn.Module) -> str:
    """What to call a net in logs and tables: its optional ``title``, else its class name."""
    return str(getattr(net, "title", "") or type(net).__name__)


def leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named leaf modules (modules without children), in registration order."""
    return [(n, m) for n, m in net.named_modules() if n and not any(m.children())]


@dataclass
class Call:
    """One call of a leaf module during a traced forward pass."""

    name: str
    module: nn.Module
    in_shape: Shape
    out_shape: Shape
    chained: bool  # its input is the previous call's output (a plain chain of layers so far)
    output: torch.Tensor | None = None  # kept only when asked for (feature maps)


def _shape(t) -> Shape:
    return tuple(t.shape[1:]) if isinstance(t, torch.Tensor) else ()


def find_convs(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every 2-D convolution of a net, found by walking its module tree (no naming rules)."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def record(net: nn.Module, x: torch.Tensor, keep_outputs: bool = False) -> list[Call]:
    """Run ``net`` on ``x`` in eval mode and record every leaf call in execution order.

    A layer that raises (a kernel larger than its input, a Linear of the wrong width) is
    reported as a ModelError naming the layer and the shape that reached it.
    """
    calls: list[Call] = []
    current: list[tuple[str, nn.Module, Shape]] = []
    last_out: list[torch.Tensor | None] = [x]

    def pre(name):
        def hook(module, args):
            current.append((name, module, _shape(args[0]) if args else ()))

        return hook

    def post(name):
        def hook(module, args, out):
            chained = bool(args) and args[0] is last_out[0]
            kept = out.detach() if keep_outputs and isinstance(out, torch.Tensor) else None
            calls.append(Call(name, module, current.pop()[2], _shape(out), chained, kept))
            last_out[0] = out

        return hook

    handles = []
    for name, m in leaves(net):
        handles += [m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post(name))]
    was_training = net.training
    try:
        net.eval()
        net(x)
    except RuntimeError as e:
        if not current:  # a functional op between layers failed
            raise ModelError(
                f"{model_title(net)} cannot run on a {_shape_str(_shape(x))} input "
                f"({_first_line(e)}). Check its layer sizes for this input shape."
            ) from None
        name, m, shape = current[-1]
        raise ModelError(_misfit(name, m, shape, e)) from None
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return calls


def trace(net: nn.Module, input_shape: Shape) -> list[Call]:
    """``record`` on one all-zero input of ``input_shape`` (C, H, W)."""
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    return record(net, torch.zeros(1, *input_shape, device=device))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _misfit(name: str, m: nn.Module, shape: Shape, error: Exception) -> str:
    where = f"Layer {name!r} ({describe(m)}) cannot take its {_shape_str(shape)} input"
    oh = ow = 1
    if isinstance(m, _WINDOWS) and len(shape) == 3:
        k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        d = _pair(getattr(m, "dilation", 1))
        ceil = getattr(m, "ceil_mode", False)
        oh = window_out(shape[1], k[0], s[0], p[0], d[0], ceil)
        ow = window_out(shape[2], k[1], s[1], p[1], d[1], ceil)
    if oh < 1 or ow < 1:
        return (
            f"{where}: it would shrink the {shape[1]}x{shape[2]} feature map to {oh}x{ow}, so the "
            f"model is too deep for this image size. Use a shallower model (fewer pooling "
            f"stages), a smaller kernel or padding, or larger images."
        )
    return f"{where} ({_first_line(error)}). Check the layer sizes for this input shape."


def check_forward(net: nn.Module, input_shape: Shape) -> Shape:
    """Run a dummy forward pass; return the output shape or raise ModelError naming the layer."""
    calls = trace(net, input_shape)
    return calls[-1].out_shape if calls else tuple(input_shape)


def _shape_str(shape: Shape) -> str:
    """H x W x C like the course's Keras tables; a flat vector is just its length."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(map(str, shape))


@dataclass
class Row:
    name: str
    kind: str
    shape: Shape
    params: int
    macs: int  # multiply-accumulates for one image
    receptive_field: int | None  # in input pixels; None once the net is no longer a chain
    arithmetic: str = ""  # O = (W - K + 2P) / S + 1, for conv and pooling windows

    @property
    def shape_str(self) -> str:
        return _shape_str(self.shape)


def _macs(m: nn.Module, out_shape: Shape) -> int:
    """Multiply-accumulates of one image through a conv or linear layer."""
    if isinstance(m, nn.Conv2d):
        return math.prod(out_shape) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    return 0


def _arithmetic(m: nn.Module, in_shape: Shape, out_shape: Shape) -> str:
    if (
        not isinstance(m, _WINDOWS)
        or len(in_shape) != 3
        or _pair(getattr(m, "dilation", 1)) != (1, 1)  # the formula has no dilation term
    ):
        return ""
    w, k, s, p = in_shape[2], _pair(m.kernel_size)[1], _pair(m.stride)[1], _pair(m.padding)[1]
    rounding = "⌈⌉" if getattr(m, "ceil_mode", False) else ""
    return f"({w}-{k}+2*{p})/{s}+1 = {out_shape[2]}{' ' + rounding if rounding else ''}"


def layer_rows(net: nn.Module, input_shape: Shape) -> list[Row]:
    """One row per layer call; activations fold into the layer before them, as in Keras."""
    rows: list[Row] = []
    rf: int | None = 1  # receptive field and the input-pixel distance between neighbours
    jump = 1
    for call in trace(net, input_shape):
        m = call.module
        if rf is not None and not call.chained:
            rf = None  # a branch or a functional op in between: the field is not a chain's
        if rf is not None and isinstance(m, _WINDOWS):
            k, s = _pair(m.kernel_size)[0], _pair(m.stride)[0]
            rf += (k - 1) * _pair(getattr(m, "dilation", 1))[0] * jump
            jump *= s
        global_pool = isinstance(m, _GLOBAL_POOLS) and tuple(call.out_shape[1:]) == (1, 1)
        if rf is not None and (
            global_pool or (len(call.out_shape) != 3 and len(call.in_shape) == 3)
        ):
            # flattening or pooling a whole map: every unit after it sees the whole input
            rf = max(input_shape[1:])
        if isinstance(m, _ACTIVATION_TYPES) and rows and call.chained:
            rows[-1].kind += f" + {type(m).__name__.lower()}"
            continue
        params = sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)
        rows.append(
            Row(
                call.name,
                describe(m),
                call.out_shape,
                params,
                _macs(m, call.out_shape),
                rf,
                _arithmetic(m, call.in_shape, call.out_shape),
            )
        )
    return rows


def count_params(net: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def layer_table(net: nn.Module, input_shape: Shape, title: str | None = None) -> str:
    """The Keras-style table as text: layer, type, output shape (HxWxC), parameters, MACs,
    receptive field, and the output-size arithmetic of conv and pooling layers."""
    rows = layer_rows(net, input_shape)
    c, h, w = input_shape
    header = ("Layer", "Type", "Output shape", "Params", "MACs", "RF", "O = (W-K+2P)/S+1")
    body = [("input", "", f"{h}x{w}x{c}", "", "", "1", "")]
    body += [
        (
            r.name,
            r.kind,
            r.shape_str,
            f"{r.params:,}",
            _si(r.macs) if r.macs else "",
            "" if r.receptive_field is None else str(r.receptive_field),
            r.arithmetic,
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    right = {3, 4, 5}

    def fmt(line):
        return "  ".join(
            str(v).rjust(wd) if i in right else str(v).ljust(wd)
            for i, (v, wd) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    rule = "-" * len(fmt(header))
    total = count_params(net, trainable_only=False)
    trainable = count_params(net)
    macs = sum(r.macs for r in rows)
    lines = ([title] if title else []) + [rule, fmt(header), rule, *map(fmt, body), rule]
    lines += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        f"Multiply-accumulates per image: {_si(macs)} (FLOPs ~ 2x)",
    ]
    return "\n".join(lines)
