"""LeNet-5 (LeCun et al., 1998): the modern variant and the 1998 layout as the course shows it."""

from __future__ import annotations

from torch import nn

from cnnlab.models import blocks
from cnnlab.models.base import Layers, Net, check_io, output_shape
from cnnlab.models.blocks import check_rate, check_width, conv_layers, dense_layers, scaled

# LeNet-5 was designed for 32x32 inputs; smaller images (MNIST's 28x28) are zero-padded to it.
LENET_SIZE = 32


def _pad_to_lenet(h: int, w: int) -> int:
    return max(0, (LENET_SIZE - min(h, w)) // 2)


class LeNet5(Net):
    def __init__(
        self,
        input_shape,
        num_classes: int,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str = "relu",
        pool: str = "max",
        width: float = 1.0,
        head: str = "flatten",
    ) -> None:
        """Modern LeNet-5: C1 6@5x5 -> pool -> C3 16@5x5 -> pool -> F5 120 -> F6 84 -> output.

        ReLU and max-pooling by default, optional batch norm after every conv/dense layer and
        dropout in F5-F6; ``width`` scales every layer (2.0 doubles the channels and units).
        ``head``: ``gap`` / ``gmp`` feed F5 one value per C3 channel (16) instead of the
        5x5x16 = 400 of ``flatten``.
        """
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        dropout, width = check_rate("model.dropout", dropout), check_width(width)
        c1, c3, f5, f6 = (scaled(n, width) for n in (6, 16, 120, 84))
        features: Layers = [
            *conv_layers("C1", c, c1, 5, _pad_to_lenet(h, w), batch_norm, activation),
            ("S2", blocks.pool(pool, 2)),
            *conv_layers("C3", c1, c3, 5, 0, batch_norm, activation),
            ("S4", blocks.pool(pool, 2)),
            *blocks.head_layers(head),
        ]
        (flat,) = output_shape(features, (c, h, w))
        layers = features + [
            *dense_layers("F5", flat, f5, batch_norm, activation, dropout),
            *dense_layers("F6", f5, f6, batch_norm, activation, dropout),
            ("output", nn.Linear(f6, num_classes)),
        ]
        super().__init__(layers, blocks.titled("LeNet-5", head))


class LeNet5Classic(Net):
    def __init__(
        self, input_shape, num_classes: int, activation: str = "tanh", pool: str = "avg"
    ) -> None:
        """The 1998 layout as the course builds it in Keras.

        Input padded to 32x32, C1 6@5x5 tanh, 2x2 average pool, C3 16@5x5 tanh, 2x2 average pool,
        flatten 400, dense 120 tanh, dense 84 tanh, dense classes: 61,706 parameters on MNIST.
        (LeCun's trainable subsampling and RBF output are left out, as the course does.)
        """
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        pad = _pad_to_lenet(h, w)
        layers: Layers = [("pad", nn.ZeroPad2d(pad))] if pad else []
        layers += [
            ("C1", nn.Conv2d(c, 6, 5)),
            ("C1_act", blocks.activation(activation)),
            ("S2", blocks.pool(pool, 2)),
            ("C3", nn.Conv2d(6, 16, 5)),
            ("C3_act", blocks.activation(activation)),
            ("S4", blocks.pool(pool, 2)),
            ("flatten", nn.Flatten()),
        ]
        (flat,) = output_shape(layers, (c, h, w))
        layers += [
            ("F5", nn.Linear(flat, 120)),
            ("F5_act", blocks.activation(activation)),
            ("F6", nn.Linear(120, 84)),
            ("F6_act", blocks.activation(activation)),
            ("output", nn.Linear(84, num_classes)),
        ]
        super().__init__(layers, "LeNet-5 (1998 layout)")
