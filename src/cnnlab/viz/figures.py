"""Matplotlib figures of what a classifier does: confusion matrix, mistakes, filters, feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown on a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from cnnlab.metrics import per_class_accuracy  # noqa: E402
from cnnlab.models.blocks import ACTIVATIONS  # noqa: E402
from cnnlab.models.summary import record  # noqa: E402


def save(fig: plt.Figure, path: str | Path, dpi: int = 90) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_figure(
    cm: torch.Tensor, classes: Sequence[str], title: str = "Confusion matrix"
) -> plt.Figure:
    """Counts per (true, predicted) class, with per-class accuracy in the row labels."""
    per_class = per_class_accuracy(cm.cpu()).numpy()
    cm = cm.cpu().numpy()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(0.55 * n + 3, 0.5 * n + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(n), [f"{c} ({a:.0%})" for c, a in zip(classes, per_class, strict=True)], fontsize=8
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (class accuracy)")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > threshold else "black",
                )
    total = cm.sum()
    ax.set_title(f"{title}: accuracy {np.trace(cm) / max(total, 1):.2%} of {int(total)}")
    fig.tight_layout()
    return fig


def _show(ax: plt.Axes, image: np.ndarray, title: str = "", cmap: str = "gray", **kw) -> None:
    if image.ndim == 3 and image.shape[-1] == 1:  # one channel: a 2-D map (1x1 kernels too)
        image = image[..., 0]
    ax.imshow(image, cmap=cmap, **kw)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def to_display(images: torch.Tensor) -> np.ndarray:
    """Float or uint8 (N, C, H, W) -> (N, H, W, C) floats in [0, 1], each image stretched."""
    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-8)).permute(0, 2, 3, 1).numpy()


def mistakes_figure(
    images: torch.Tensor,
    true: Sequence[int],
    pred: Sequence[int],
    conf: Sequence[float],
    classes: Sequence[str],
    cols: int = 8,
) -> plt.Figure:
    """Misclassified images titled true -> predicted (confidence)."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    shown = to_display(images)
    for k, ax in enumerate(axes.flat):
        if k < n:
            _show(ax, shown[k], f"{classes[true[k]]}\n→ {classes[pred[k]]} {conf[k]:.0%}")
        else:
            ax.axis("off")
    fig.suptitle("Misclassified test images: true → predicted (confidence)", fontsize=9)
    fig.tight_layout()
    return fig


def _tiles(images: torch.Tensor, title: str, max_cols: int, inches: float, **show) -> plt.Figure:
    """A grid of (N, C, H, W) images, each stretched to its own range."""
    shown = to_display(images)
    cols = min(max_cols, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * inches, rows * inches + 0.4), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        if k < len(shown):
            _show(ax, shown[k], **show)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def filters_title(name: str, conv: nn.Conv2d) -> str:
    k = conv.kernel_size
    shown = "RGB" if conv.in_channels == 3 else f"mean over {conv.in_channels} input channels"
    if conv.in_channels == 1:
        shown = "one input channel"
    return f"{name}: {conv.out_channels} learned {k[0]}x{k[1]} filters ({shown})"


def filters_figure(conv: nn.Conv2d, title: str, max_filters: int = 64) -> plt.Figure:
    """One tile per output channel: RGB when the layer sees 3 channels, else the channel mean."""
    w = conv.weight.detach().cpu()[:max_filters]
    tiles = w if w.shape[1] == 3 else w.mean(dim=1, keepdim=True)
    return _tiles(tiles, title, max_cols=16, inches=0.6, interpolation="nearest")


# layers that keep a conv's map element by element: a conv block's output is the conv's
# carried through these (batch norm, the activation), i.e. what the next layer sees
_ELEMENTWISE = (
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    *ACTIVATIONS.values(),
)


def feature_maps(net: nn.Module, x: torch.Tensor, max_layers: int = 8) -> dict[str, torch.Tensor]:
    """Activations of one input after each conv block, keyed by the conv's name.

    Works on any net: the convolutions are found by running it with hooks on every leaf
    module. Deep nets show ``max_layers`` blocks spread from the first to the last.
    """
    calls = record(net, x[:1], keep_outputs=True)
    maps: dict[str, torch.Tensor] = {}
    for i, call in enumerate(calls):
        if not isinstance(call.module, nn.Conv2d) or call.name in maps:
            continue
        end = call
        for nxt in calls[i + 1 :]:
            if not (nxt.chained and isinstance(nxt.module, _ELEMENTWISE)):
                break
            end = nxt
        maps[call.name] = end.output[0].cpu()
    names = list(maps)
    if len(names) > max_layers:
        step = (len(names) - 1) / (max_layers - 1)
        names = [names[round(k * step)] for k in range(max_layers)]
    return {n: maps[n] for n in names}


def feature_map_figure(fmap: torch.Tensor, title: str, max_maps: int = 32) -> plt.Figure:
    """One tile per channel of a (C, H, W) activation."""
    c, h, w = fmap.shape
    return _tiles(
        fmap[:max_maps].unsqueeze(1),
        f"{title}: {c} maps of {h}x{w}",
        max_cols=8,
        inches=0.9,
        cmap="viridis",
    )


def bar_figure(labels: Sequence[str], values: Sequence[float], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 0.35 * len(labels) + 1))
    order = np.argsort(values)
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="C0")
    for y, i in enumerate(order):
        ax.text(values[i], y, f" {values[i]:.1%}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
