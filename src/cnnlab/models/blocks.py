"""Building blocks shared by the nets: activations, pooling (max/avg/min), conv blocks, heads."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class MinPool2d(nn.MaxPool2d):
    """Min pooling, min(x) = -max(-x): the course shows it beside max and average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -super().forward(-x)


POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "min": MinPool2d}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"Unknown model.activation={name!r}. Valid: {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


def pool(
    name: str,
    kernel_size: int = 2,
    stride: int | None = None,
    padding: int = 0,
    ceil_mode: bool = False,
) -> nn.Module:
    if name not in POOLS:
        raise ConfigError(f"Unknown model.pool={name!r}. Valid: {', '.join(POOLS)}.")
    return POOLS[name](kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)


def check_rate(key: str, p: float) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise ConfigError(
            f"{key}={p!r} is outside [0, 1): it is the probability of zeroing a unit "
            f"(e.g. {key}=0.5; 0 disables dropout)."
        )
    return float(p)


def check_width(width: float) -> float:
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise ConfigError(f"model.width={width!r} must be a positive number (1.0 = paper size).")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """Channel count scaled by the width multiplier (at least one channel)."""
    return max(1, round(channels * width))


def conv_layers(
    prefix: str,
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    padding: int,
    batch_norm: bool,
    act: str,
    stride: int = 1,
) -> list[tuple[str, nn.Module]]:
    """Conv -> [BatchNorm] -> activation, named ``prefix``, ``prefix_bn``, ``prefix_act``.

    With batch norm the conv's bias is redundant (BN subtracts the mean), so it is dropped.
    """
    layers: list[tuple[str, nn.Module]] = [
        (
            prefix,
            nn.Conv2d(
                in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=not batch_norm
            ),
        ),
    ]
    if batch_norm:
        layers.append((f"{prefix}_bn", nn.BatchNorm2d(out_ch)))
    layers.append((f"{prefix}_act", activation(act)))
    return layers


def dense_layers(
    prefix: str, in_f: int, out_f: int, batch_norm: bool, act: str, dropout: float
) -> list[tuple[str, nn.Module]]:
    """Linear -> [BatchNorm1d] -> activation -> [Dropout]."""
    layers: list[tuple[str, nn.Module]] = [(prefix, nn.Linear(in_f, out_f, bias=not batch_norm))]
    if batch_norm:
        layers.append((f"{prefix}_bn", nn.BatchNorm1d(out_f)))
    layers.append((f"{prefix}_act", activation(act)))
    if dropout > 0:
        layers.append((f"{prefix}_drop", nn.Dropout(dropout)))
    return layers


# model.head: how the last feature maps become a vector for the dense layers. flatten keeps
# every value; gap / gmp keep one average / maximum per channel (deck 003's global pooling):
# far fewer inputs to the first dense layer, and a net that takes any image size.
GLOBAL_POOLS: dict[str, type[nn.Module]] = {
    "gap": nn.AdaptiveAvgPool2d,
    "gmp": nn.AdaptiveMaxPool2d,
}
HEADS = ("flatten", *GLOBAL_POOLS)


def head_layers(name: str) -> list[tuple[str, nn.Module]]:
    """[global pool (gap, gmp)] -> flatten, named ``gap``/``gmp`` and ``flatten``."""
    if name not in HEADS:
        raise ConfigError(
            f"Unknown model.head={name!r}. Valid: {', '.join(HEADS)} (e.g. model.head=gap)."
        )
    pool = [(name, GLOBAL_POOLS[name](1))] if name in GLOBAL_POOLS else []
    return [*pool, ("flatten", nn.Flatten())]


def titled(title: str, head: str) -> str:
    """The net's title, naming a head other than the paper's flatten."""
    return title if head == "flatten" else f"{title} ({head})"
