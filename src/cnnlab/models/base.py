"""``Net``: every classifier is one flat, named sequence of layers.

A flat ``nn.Sequential`` keeps the forward order equal to the registration order, which is
what the layer table, the shape arithmetic and the feature-map hooks walk.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

Layers = list[tuple[str, nn.Module]]


class Net(nn.Sequential):
    def __init__(
        self, layers: Layers, input_shape: tuple[int, int, int], num_classes: int, title: str
    ):
        super().__init__(OrderedDict(layers))
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.title = title

    def conv_names(self) -> list[str]:
        """Names of the convolution layers, input side first (for filters and feature maps)."""
        return [n for n, m in self.named_children() if isinstance(m, nn.Conv2d)]


def check_io(input_shape, num_classes) -> tuple[tuple[int, int, int], int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    return shape, int(num_classes)
