"""The course's first CIFAR-10 network (deck 001): three 3x3 conv blocks, then dense layers."""

from __future__ import annotations

from torch import nn

from cnnlab.models import blocks
from cnnlab.models.base import Layers, Net, check_io, output_shape
from cnnlab.models.blocks import check_rate, check_width, conv_layers, dense_layers, scaled


class SimpleCNN(Net):
    def __init__(
        self,
        input_shape,
        num_classes: int,
        channels: tuple[int, ...] = (16, 32, 64),
        fc_width: int = 256,
        head: str = "flatten",
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str = "relu",
        pool: str = "max",
        width: float = 1.0,
    ) -> None:
        """conv 3x3 (padding 1) -> [BN] -> act -> 2x2 pool, once per entry of ``channels``
        (3 -> 16 -> 32 -> 64 as in the deck), then the head, a dense layer of ``fc_width``
        units with dropout, and the output layer.

        ``head``: ``flatten`` keeps every value of the last maps (4x4x64 = 1024 on CIFAR-10);
        ``gap`` / ``gmp`` keep one average / maximum per channel (64), deck 003's global
        pooling, which makes the dense layers far smaller and the net independent of image size.
        """
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        dropout, width = check_rate("model.dropout", dropout), check_width(width)
        layers: Layers = []
        in_ch = c
        for i, out in enumerate(channels, start=1):
            out = scaled(out, width)
            layers += conv_layers(f"conv{i}", in_ch, out, 3, 1, batch_norm, activation)
            layers.append((f"pool{i}", blocks.pool(pool, 2)))
            in_ch = out
        layers += blocks.head_layers(head)
        (flat,) = output_shape(layers, (c, h, w))
        fc = scaled(fc_width, width)
        layers += [
            *dense_layers("fc1", flat, fc, False, activation, dropout),
            ("output", nn.Linear(fc, num_classes)),
        ]
        super().__init__(layers, f"Simple CNN ({head})")
