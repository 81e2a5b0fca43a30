"""VGG (Simonyan & Zisserman, 2014): stacks of 3x3 convs, 2x2 max-pool between stages."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import blocks
from cnnlab.models.base import Layers, Net, check_io, output_shape
from cnnlab.models.blocks import check_rate, check_width, conv_layers, dense_layers, scaled

STAGE_CHANNELS = (64, 128, 256, 512, 512)
# convs per stage for each depth (the paper's configurations A, B, D and E)
DEPTHS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


class VGG(Net):
    def __init__(
        self,
        input_shape,
        num_classes: int,
        depth: int = 11,
        dropout: float = 0.5,
        batch_norm: bool = True,
        activation: str = "relu",
        pool: str = "max",
        width: float = 0.25,
        fc_width: int = 512,
        head: str = "flatten",
    ) -> None:
        """VGG-11/13/16/19 for small images.

        Five stages halve the map five times. On 28x28 inputs that would reach 0x0 (28, 14, 7,
        3, 1, 0), so the pools round up (``ceil_mode``): 28 -> 14 -> 7 -> 4 -> 2 -> 1, and
        32 -> 16 -> 8 -> 4 -> 2 -> 1 as usual. The classifier is the paper's three dense layers,
        narrowed to ``fc_width`` units for 1x1 maps, with dropout before F6-F7. Batch norm is on by
        default (VGG-BN); ``model.batch_norm=false`` gives the 2014 original. ``head``: on 28-32 px
        images the last map is 1x1, so ``gap`` / ``gmp`` change nothing; on larger ones (a
        folder's ``data.image_size=64``: 2x2) they keep the classifier's size fixed.
        """
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        if depth not in DEPTHS:
            raise ConfigError(
                f"model.depth={depth!r} is not a VGG depth. Valid: {', '.join(map(str, DEPTHS))}."
            )
        dropout, width = check_rate("model.dropout", dropout), check_width(width)
        layers: Layers = []
        in_ch = c
        for stage, (n_convs, out) in enumerate(
            zip(DEPTHS[depth], STAGE_CHANNELS, strict=True), start=1
        ):
            out = scaled(out, width)
            for i in range(1, n_convs + 1):
                layers += conv_layers(f"conv{stage}_{i}", in_ch, out, 3, 1, batch_norm, activation)
                in_ch = out
            layers.append((f"pool{stage}", blocks.pool(pool, 2, ceil_mode=True)))
        layers += blocks.head_layers(head)
        (flat,) = output_shape(layers, (c, h, w))
        fc = scaled(fc_width, width)
        layers += [
            *([("flatten_drop", nn.Dropout(dropout))] if dropout else []),
            *dense_layers("F6", flat, fc, False, activation, dropout),
            *dense_layers("F7", fc, fc, False, activation, 0.0),
            ("F8", nn.Linear(fc, num_classes)),
        ]
        super().__init__(layers, blocks.titled(f"VGG-{depth}", head))
