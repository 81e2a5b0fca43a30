"""The multi-layer perceptron: the "MLP vs CNN" baseline."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Layers, Net, check_io
from cnnlab.models.blocks import check_rate, check_width, dense_layers, scaled


class MLP(Net):
    def __init__(
        self,
        input_shape,
        num_classes: int,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.5,
        input_dropout: float = 0.2,
        batch_norm: bool = False,
        activation: str = "relu",
        width: float = 1.0,
    ) -> None:
        """flatten -> [dropout] -> (Linear -> [BN] -> act -> [dropout]) per hidden width -> classes."""
        (c, h, w), num_classes = check_io(input_shape, num_classes)
        dropout, input_dropout = (
            check_rate("model.dropout", dropout),
            check_rate("model.input_dropout", input_dropout),
        )
        width = check_width(width)
        if not all(isinstance(n, int) and n > 0 for n in hidden):
            raise ConfigError(
                f"model.hidden={list(hidden)!r} must be a list of positive layer widths."
            )
        layers: Layers = [("flatten", nn.Flatten())]
        if input_dropout > 0:
            layers.append(("input_drop", nn.Dropout(input_dropout)))
        features = c * h * w
        for i, n in enumerate(hidden, start=1):
            n = scaled(n, width)
            layers += dense_layers(f"fc{i}", features, n, batch_norm, activation, dropout)
            features = n
        layers.append(("output", nn.Linear(features, num_classes)))
        sizes = "-".join(str(scaled(n, width)) for n in hidden)
        super().__init__(layers, f"MLP {sizes}")
