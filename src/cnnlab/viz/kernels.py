"""The course's convolution and pooling demos, computed by the network's own layers.

A kernel is applied by an ``nn.Conv2d`` whose weights are set to it, and pooling by the same
pooling layers the models use, so what the figures show is exactly what a CNN computes
(including PyTorch's cross-correlation convention: the kernel is not flipped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.models.blocks import pool
from cnnlab.models.summary import window_out
from cnnlab.viz.figures import plt

KERNELS: dict[str, list[list[float]]] = {
    "vertical edge": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "horizontal edge": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box blur": [[1 / 9] * 3] * 3,
}


def convolve(image: torch.Tensor, kernel, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """A single-channel (H, W) image through a conv layer holding ``kernel`` (no bias)."""
    k = torch.as_tensor(kernel, dtype=torch.float32)
    conv = nn.Conv2d(1, 1, tuple(k.shape), stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(k.view(1, 1, *k.shape))
        return conv(image.float().view(1, 1, *image.shape[-2:]))[0, 0]


def pooled(fmap: torch.Tensor, kind: str, size: int = 2) -> torch.Tensor:
    """(H, W) map through the models' own ``kind`` pooling layer (max, avg or min)."""
    with torch.no_grad():
        return pool(kind, size)(fmap.view(1, 1, *fmap.shape[-2:]))[0, 0]


def load_gray(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Any image file as a (H, W) float tensor in [0, 255], optionally resized (longest side)."""
    from cnnlab.predict import open_image

    img = open_image(path).convert("L")
    if size:
        img.thumbnail((size, size))
    return torch.from_numpy(np.asarray(img, dtype=np.float32))


def formula(size: int, k: int, stride: int, padding: int) -> str:
    out = window_out(size, k, stride, padding)
    return f"O = (W - K + 2P)/S + 1 = ({size} - {k} + 2*{padding})/{stride} + 1 = {out}"


def kernel_figure(
    image: torch.Tensor,
    kernels: dict[str, list] | None = None,
    stride: int = 1,
    padding: int = 0,
    pool_size: int = 2,
) -> plt.Figure:
    """Columns: each kernel; rows: the kernel, the conv output, ReLU, max pool, average pool."""
    kernels = kernels or KERNELS
    h, w = image.shape[-2:]
    cols = len(kernels) + 1
    fig, axes = plt.subplots(5, cols, figsize=(1.55 * cols, 8.2))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title(f"input {h}x{w}", fontsize=8)
    labels = [
        "kernel",
        "convolution",
        "ReLU",
        f"max pool {pool_size}x{pool_size}",
        f"avg pool {pool_size}x{pool_size}",
    ]
    for r, label in enumerate(labels[1:], start=1):
        axes[r, 0].axis("off")
        axes[r, 0].text(
            0.95, 0.5, label, ha="right", va="center", fontsize=9, transform=axes[r, 0].transAxes
        )
    for c, (name, kernel) in enumerate(kernels.items(), start=1):
        k = np.asarray(kernel, dtype=float)
        axes[0, c].imshow(k, cmap="coolwarm", vmin=-np.abs(k).max(), vmax=np.abs(k).max())
        for (i, j), v in np.ndenumerate(k):
            text = f"{v:g}" if v == int(v) else "1/9" if abs(v - 1 / 9) < 1e-9 else f"{v:.2f}"
            axes[0, c].text(j, i, text, ha="center", va="center", fontsize=7)
        axes[0, c].set_title(name, fontsize=8)
        out = convolve(image, kernel, stride, padding)
        relu = out.clamp_min(0)
        panels = [out, relu, pooled(relu, "max", pool_size), pooled(relu, "avg", pool_size)]
        for r, img in enumerate(panels, start=1):
            axes[r, c].imshow(img, cmap="gray")
            axes[r, c].set_title(
                f"{img.shape[0]}x{img.shape[1]} [{img.min():.0f}, {img.max():.0f}]", fontsize=7
            )
    k0 = len(next(iter(kernels.values())))
    fig.suptitle(
        f"Classic 3x3 kernels as a conv layer computes them, stride {stride}, padding {padding}: "
        f"{formula(h, k0, stride, padding)}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def pooling_figure(fmap: torch.Tensor, size: int = 2) -> plt.Figure:
    """Max, average and min pooling of the same map, side by side, with values when small."""
    results = {kind: pooled(fmap, kind, size) for kind in ("max", "avg", "min")}
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    small = fmap.numel() <= 64
    for ax, (title, img) in zip(
        axes,
        [("input", fmap), *((f"{k} pool {size}x{size}", v) for k, v in results.items())],
        strict=True,
    ):
        ax.imshow(img, cmap="gray")
        ax.set_title(f"{title} {img.shape[0]}x{img.shape[1]}", fontsize=9)
        if small:
            for (i, j), v in np.ndenumerate(img.numpy()):
                ax.text(j, i, f"{v:g}", ha="center", va="center", color="red", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def sample_image(data_dir: str | Path, name: str = "fashion_mnist", index: int = 0) -> torch.Tensor:
    """One test image of a prepared dataset as (H, W) floats (first channel)."""
    from cnnlab.data.specs import get_spec

    images, _ = get_spec(name).read(data_dir, train=False)
    return images[index, 0].float()
