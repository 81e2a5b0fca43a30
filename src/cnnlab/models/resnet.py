"""ResNets (He et al., 2016): the CIFAR family (ResNet-20/56) and ResNet-18 for 32 px images.

This file is written the way a researcher adds their own net to cnnlab, and is the example
to copy: a plain ``nn.Module`` whose constructor takes ``input_shape`` (C, H, W) and
``num_classes`` plus its own keyword arguments, and a YAML file in ``conf/model/`` naming it
(``conf/model/resnet20.yaml``). Nothing else: the layer table, filters, feature maps,
predict and eval find the convolutions by walking the module tree. ``title`` is optional
(it names the net in logs; the class name is used without it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import blocks as b


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: out = act(F(x) + shortcut(x)).

    The shortcut is the identity when shapes agree, else a 1x1 convolution with the block's
    stride (the paper's option B), so the sum has matching shapes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, batch_norm: bool, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=not batch_norm)
        self.bn1 = _norm(out_ch, batch_norm)
        self.act1 = b.activation(act)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=not batch_norm)
        self.bn2 = _norm(out_ch, batch_norm)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=not batch_norm), _norm(out_ch, batch_norm)
            )
        self.act2 = b.activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem -> stages of basic blocks (each after the first halves the map) -> global
    average pool (``head=gmp``: global max pool) -> [dropout] -> linear.

    ``blocks`` is the number of blocks per stage and ``channels`` their widths:
    ResNet-20 = [3, 3, 3] x [16, 32, 64], ResNet-56 = [9, 9, 9] x the same (the paper's
    CIFAR nets), ResNet-18 = [2, 2, 2, 2] x [64, 128, 256, 512] (the ImageNet layout with a
    3x3 stem and no first max-pool, as is usual for 32 px images). Depth = 2 + 2 * blocks.
    Global average pooling makes any input size work, 28x28 included.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: Sequence[int] = (3, 3, 3),
        channels: Sequence[int] = (16, 32, 64),
        batch_norm: bool = True,
        dropout: float = 0.0,
        activation: str = "relu",
        width: float = 1.0,
        head: str = "gap",
    ):
        super().__init__()
        if head == "flatten":  # the one head that would tie the net to one image size
            raise ConfigError(
                "model.head=flatten does not suit a ResNet: it ends in global pooling by design, "
                "so the last linear layer stays small and any image size works. Use "
                "model.head=gap (the paper's) or model.head=gmp (global max pooling)."
            )
        if len(blocks) != len(channels) or not all(int(b) > 0 for b in blocks):
            raise ValueError(
                f"model.blocks={list(blocks)} and model.channels={list(channels)} must be "
                f"lists of the same length with at least one block per stage."
            )
        dropout, width = b.check_rate("model.dropout", dropout), b.check_width(width)
        widths = [b.scaled(c, width) for c in channels]
        self.title = f"ResNet-{2 + 2 * sum(blocks)}" + (" (gmp)" if head == "gmp" else "")
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=not batch_norm),
            _norm(widths[0], batch_norm),
            b.activation(activation),
        )
        stages, in_ch = [], widths[0]
        for i, (n, out_ch) in enumerate(zip(blocks, widths, strict=True)):
            stage = [
                BasicBlock(
                    in_ch if j == 0 else out_ch,
                    out_ch,
                    2 if i and j == 0 else 1,
                    batch_norm,
                    activation,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*stage))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            *(module for _, module in b.head_layers(head)),  # global pool, flatten
            nn.Dropout(dropout) if dropout else nn.Identity(),
            nn.Linear(in_ch, num_classes),
        )
        for m in self.modules():  # He initialisation, as in the paper
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
