"""``Net``: the zoo's nets are one flat, named sequence of layers.

A convenience for the built-in nets only: the layer table, filters, feature maps, predict
and eval work on any ``nn.Module`` (see ``resnet.py`` for a net written as a user would).
The layer names (``C1``, ``S2``, ``F5``...) are the papers', so tables read like them.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.models.summary import check_forward

Layers = list[tuple[str, nn.Module]]


class Net(nn.Sequential):
    def __init__(self, layers: Layers, title: str):
        super().__init__(OrderedDict(layers))
        self.title = title


def output_shape(layers: Layers, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ``layers`` produce for one input, from a dummy forward pass.

    Sizes the first dense layer; a layer the input cannot pass fails here, with its name.
    """
    return check_forward(nn.Sequential(OrderedDict(layers)), input_shape)


def check_io(input_shape, num_classes) -> tuple[tuple[int, int, int], int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    return shape, int(num_classes)
