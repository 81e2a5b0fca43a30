"""AlexNet (Krizhevsky et al., 2012, the ILSVRC winner) resized for 28-32 px images."""

from __future__ import annotations

from torch import nn

from cnnlab.models import blocks
from cnnlab.models.base import Layers, Net, check_io, output_shape
from cnnlab.models.blocks import check_rate, check_width, conv_layers, dense_layers, scaled

# (name, out channels, kernel, padding, LRN after?, pool after?) of the paper's five conv layers
_CONVS = (
    ("C1", 96, 5, 2, True, True),  # 11x11 stride 4 in the paper, sized for 224 px inputs
    ("C2", 256, 5, 2, True, True),
    ("C3", 384, 3, 1, False, False),
    ("C4", 384, 3, 1, False, False),
    ("C5", 256, 3, 1, False, True),
)


class AlexNet(Net):
    def __init__(
        self,
        input_shape,
        num_classes: int,
        dropout: float = 0.5,
        batch_norm: bool = False,
        lrn: bool = True,
        activation: str = "relu",
        pool: str = "max",
        width: float = 0.25,
        fc_width: int = 4096,
        head: str = "flatten",
    ) -> None:
        """C1-C5 convs, F6-F7 dense with dropout, F8 output.

        As in the paper: ReLU everywhere, local response normalisation after C1-C2 (``lrn``),
        overlapping 3x3 stride-2 pooling after C1, C2 and C5, dropout in F6-F7. ``batch_norm``
        adds the modern alternative after every conv. ``width`` scales every layer; the default
        0.25 (24..96 channels, 1024-unit dense layers) keeps it CPU-sized. ``head``: ``gap`` /
        ``gmp`` feed F6 one value per C5 channel instead of every value of C5's maps.
        """
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        dropout, width = check_rate("model.dropout", dropout), check_width(width)
        layers: Layers = []
        in_ch = c
        for name, out, k, p, has_lrn, has_pool in _CONVS:
            out = scaled(out, width)
            layers += conv_layers(name, in_ch, out, k, p, batch_norm, activation)
            if has_lrn and lrn:
                layers.append(
                    (f"{name}_lrn", nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
                )
            if has_pool:
                layers.append((f"{name}_pool", blocks.pool(pool, 3, stride=2, padding=1)))
            in_ch = out
        layers += blocks.head_layers(head)
        (flat,) = output_shape(layers, (c, h, w))
        fc = scaled(fc_width, width)
        layers += [
            *dense_layers("F6", flat, fc, False, activation, dropout),
            *dense_layers("F7", fc, fc, False, activation, dropout),
            ("F8", nn.Linear(fc, num_classes)),
        ]
        super().__init__(layers, blocks.titled("AlexNet", head))
