"""The course decks' worked examples as inputs, for the layers the models use to compute.

``01_convolution_kernels_pooling.ipynb`` (beside this file) and ``tests/test_worked.py`` run
these through ``cnnlab.viz.kernels`` (a real ``nn.Conv2d`` and the models' pooling layers) and
check the numbers the decks print. The 6x6 edge image is the decks' own; the other inputs are
small ones that give the decks' results (what matters is the arithmetic: the same layer
computes every one of them).
"""

from __future__ import annotations

import torch
from torch import nn

# deck: a 6x6 image, bright (10) left half, dark right half; the vertical-edge kernel
# [[1, 0, -1]] * 3 answers with a 4x4 map 0 / 30 / 30 / 0 on every row
EDGE_IMAGE = [[10, 10, 10, 0, 0, 0]] * 6

# deck: one position of a 5x5 filter on a 5x5 patch, one multiply-add over 25 pixels = 6.
# The filter is an "X"; the patch lights 6 of the X's 9 pixels (and 2 pixels off it,
# which the filter's zeros ignore).
X_FILTER_5X5 = [
    [1, 0, 0, 0, 1],
    [0, 1, 0, 1, 0],
    [0, 0, 1, 0, 0],
    [0, 1, 0, 1, 0],
    [1, 0, 0, 0, 1],
]
PATCH_5X5 = [
    [1, 0, 1, 0, 1],
    [0, 1, 0, 0, 0],
    [1, 0, 1, 0, 0],
    [0, 0, 0, 1, 0],
    [0, 0, 0, 0, 1],
]

# deck: the Laplacian [[0, -1, 0], [-1, 4, -1], [0, -1, 0]] on a 3x3 patch = 60: a pixel
# 15 brighter than its four neighbours gives 4 * 15 (corners do not count)
LAPLACIAN_PATCH = [
    [10, 10, 10],
    [10, 25, 10],
    [10, 10, 10],
]

# deck: 2x2 max pooling, stride 2, of a 4x4 map = [[9, 8], [7, 9]]
POOL_MAP = [
    [1, 9, 2, 8],
    [3, 4, 5, 6],
    [7, 0, 9, 1],
    [2, 6, 3, 4],
]

# deck: output volumes of a conv layer, (input C, H, W), filters, kernel, stride, padding ->
# (H, W, filters): 32x32x3 with ten 5x5 filters -> 28x28x10; 100x100x3 with a hundred -> 96x96x100
OUTPUT_VOLUMES = (
    ((3, 32, 32), 10, 5, 1, 0),
    ((3, 100, 100), 100, 5, 1, 0),
)


def conv_volume(
    input_shape: tuple[int, int, int], filters: int, kernel: int, stride: int = 1, padding: int = 0
) -> tuple[tuple[int, int, int], int]:
    """Output (H, W, C) and parameter count of ``filters`` kernels of ``kernel`` x ``kernel``
    on an input of ``input_shape`` (C, H, W), read off a real ``nn.Conv2d``.

    Built and run on the meta device: shapes only, no memory, any size.
    """
    c, h, w = input_shape
    with torch.device("meta"):
        conv = nn.Conv2d(c, filters, kernel, stride=stride, padding=padding)
        out = conv(torch.empty(1, c, h, w))
    _, oc, oh, ow = out.shape
    return (oh, ow, oc), sum(p.numel() for p in conv.parameters())
