"""Matplotlib figures of what a classifier does: confusion matrix, mistakes, filters, feature maps.

Figures are built with matplotlib's object API (``Figure``), never pyplot: no global figure
state to leak or close, no GUI backend, and a run that logs none never imports pyplot.
Tile grids (filters, feature maps, mistakes) are one image in one axes, not an axes per tile:
laying out 64 axes costs ~0.1 s a figure, one costs a few ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from cnnlab.files import atomic_path
from cnnlab.metrics import per_class_accuracy
from cnnlab.models.blocks import ACTIVATIONS
from cnnlab.models.summary import record
from cnnlab.viz.bar_chart import Bars
from cnnlab.viz.labels import label


def subplots(rows: int = 1, cols: int = 1, figsize=None, **kw) -> tuple[Figure, Axes | np.ndarray]:
    """``pyplot.subplots`` without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kw)


def save(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` as a PNG, atomically (a temp name in the folder, then a rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix[1:] or "png")
    return Path(path)


def to_image(fig: Figure, dpi: int = 90) -> np.ndarray:
    """The figure rendered to an (H, W, 3) uint8 array, for TensorBoard's add_image."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_figure(
    cm: torch.Tensor, classes: Sequence[str], title: str = "Confusion matrix", lang: str = "en"
) -> Figure:
    """Counts per (true, predicted) class, with per-class accuracy in the row labels."""

    per_class = per_class_accuracy(cm.cpu()).numpy()
    cm = cm.cpu().numpy()
    n = len(classes)
    fig, ax = subplots(figsize=(0.55 * n + 3, 0.5 * n + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(n), [f"{c} ({a:.0%})" for c, a in zip(classes, per_class, strict=True)], fontsize=8
    )
    ax.set_xlabel(label("predicted", lang))
    ax.set_ylabel(label("true", lang))
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
    acc = np.trace(cm) / max(total, 1)
    ax.set_title(label("confusion_title", lang, title=title, acc=acc, n=int(total)))
    fig.tight_layout()
    return fig


def to_display(images: torch.Tensor) -> np.ndarray:
    """Float or uint8 (N, C, H, W) -> (N, H, W, C) floats in [0, 1], each image stretched."""
    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-8)).permute(0, 2, 3, 1).numpy()


def tile(shown: np.ndarray, cols: int, pad: int = 1, below: int = 0) -> np.ndarray:
    """(N, H, W, C) images in [0, 1] -> one (rows, cols) mosaic, NaN between tiles and in the
    ``below`` rows under each tile (room for a label), so they show as background."""
    n, h, w, c = shown.shape
    rows = -(-n // cols)
    cell_h, cell_w = h + below + pad, w + pad
    out = np.full((rows * cell_h - pad, cols * cell_w - pad, c), np.nan, dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        out[r * cell_h : r * cell_h + h, q * cell_w : q * cell_w + w] = shown[k]
    return out


def _mosaic(ax: Axes, mosaic: np.ndarray, cmap: str = "gray", **kw) -> None:
    """Show a tile() mosaic: one channel through ``cmap``, three as RGB; gaps white."""
    if mosaic.shape[-1] == 1:
        from matplotlib import colormaps

        colormap = colormaps[cmap].with_extremes(bad="white")
        ax.imshow(mosaic[..., 0], cmap=colormap, vmin=0, vmax=1, **kw)
    else:
        ax.imshow(np.nan_to_num(mosaic, nan=1.0), **kw)
    ax.axis("off")


def mistakes_figure(
    images: torch.Tensor,
    true: Sequence[int],
    pred: Sequence[int],
    conf: Sequence[float],
    classes: Sequence[str],
    cols: int = 8,
) -> Figure:
    """Misclassified images labelled true -> predicted (confidence) under each."""
    labels = [
        f"{classes[t]}\n→ {classes[p]} {c:.0%}" for t, p, c in zip(true, pred, conf, strict=True)
    ]
    title = "Misclassified test images: true → predicted (confidence)"
    return labelled_figure(to_display(images), labels, title, cols)


def labelled_figure(
    shown: np.ndarray,
    labels: Sequence[str],
    title: str,
    cols: int = 8,
    scale: float = 1.0,
    cmap: str = "gray",
) -> Figure:
    """(N, H, W, C) images in [0, 1] as one mosaic, a label of up to two lines under each
    (``scale``: size of the whole figure, text included; ``cmap``: for one channel)."""
    n, h, w, _ = shown.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    below, pad = max(8, h * 2 // 3), max(1, w // 10)  # label room under each image
    fig, ax = subplots(figsize=(cols * 1.3 * scale, (rows * 1.5 + 0.3) * scale))
    _mosaic(ax, tile(shown, cols, pad, below), cmap=cmap, interpolation="nearest")
    for k, text in enumerate(labels):
        r, q = divmod(k, cols)
        x, y = q * (w + pad) + w / 2, r * (h + below + pad) + h + below / 2
        ax.text(x, y, text, ha="center", va="center", fontsize=6.5 * scale)
    fig.suptitle(title, fontsize=9 * scale)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.35 / (rows * 1.5 + 0.3))
    return fig


# filters, feature maps, Grad-CAM grids: large enough to read each tile's label
FIGURE_SCALE = 1.5


def cam_overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """Images (N, C, H, W) under their [0, 1] maps (N, H, W) in the jet colours: (N, H, W, 3)."""
    from matplotlib import colormaps

    heat = colormaps["jet"](maps.detach().cpu().numpy())[..., :3]
    return ((1 - alpha) * _rgb(images) + alpha * heat).astype(np.float32)


def _rgb(images: torch.Tensor) -> np.ndarray:
    shown = to_display(images)
    return np.repeat(shown, 3, axis=-1) if shown.shape[-1] == 1 else shown


def value_bar(fig: Figure, cmap: str, lo: float, hi: float, caption: str) -> None:
    """A colour bar beside the figure's (first) axes: what the colours of ``cmap`` stand for."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(
        ScalarMappable(Normalize(lo, hi), cmap), ax=fig.axes[0], fraction=0.03, pad=0.01
    )
    bar.set_label(caption, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def cam_figure(
    images: torch.Tensor, maps: torch.Tensor, labels: Sequence[str], title: str, cols: int = 8
) -> Figure:
    """Each image with its Grad-CAM (or saliency) map over it, labelled, with the colour bar
    of the map (each image's map is scaled to its own maximum)."""
    fig = labelled_figure(cam_overlay(images, maps), labels, title, cols, scale=FIGURE_SCALE)
    value_bar(fig, "jet", 0.0, 1.0, label("cam_scale"))
    return fig


def filters_title(name: str, conv: nn.Conv2d) -> str:
    k = conv.kernel_size
    shown = "RGB" if conv.in_channels == 3 else f"mean over {conv.in_channels} input channels"
    if conv.in_channels == 1:
        shown = "one input channel"
    return f"{name}: {conv.out_channels} learned {k[0]}x{k[1]} filters ({shown})"


def filters_figure(conv: nn.Conv2d, title: str, max_filters: int = 64) -> Figure:
    """One labelled tile per output channel. A layer that sees 3 channels: RGB, each tile
    stretched to its own range (a colour has no one scale). Else the mean over its input
    channels (``filters_title`` says so) on one scale for all, symmetric about 0, with its
    colour bar: a weak filter looks weak, and the sign of each weight shows."""
    w = conv.weight.detach().cpu()[:max_filters]
    labels = [f"filter {k + 1}" for k in range(len(w))]
    if w.shape[1] == 3:
        shown, cmap, top = to_display(w), "gray", None
    else:
        tiles = w.mean(dim=1)
        top = float(tiles.abs().max()) or 1.0
        shown = ((tiles / top + 1) / 2).unsqueeze(-1).numpy()  # [-top, top] -> [0, 1]
        cmap = "coolwarm"
    # a 3x3 or 5x5 kernel blown up to about 24 px, so the label room under it is to scale
    f = max(1, -(-24 // shown.shape[1]))
    shown = shown.repeat(f, axis=1).repeat(f, axis=2)
    fig = labelled_figure(shown, labels, title, cols=8, scale=FIGURE_SCALE, cmap=cmap)
    if top is not None:
        value_bar(fig, cmap, -top, top, "weight")
    return fig


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


def feature_map_figure(fmap: torch.Tensor, title: str, max_maps: int = 32) -> Figure:
    """One labelled tile per channel of a (C, H, W) activation, each stretched to its own
    range (the label gives the range: a map that is all zeros after ReLU says so)."""
    c, h, w = fmap.shape
    maps = fmap[:max_maps].detach().float().cpu()
    labels = [
        f"channel {k + 1}\n{float(m.min()):.2g} to {float(m.max()):.2g}" for k, m in enumerate(maps)
    ]
    return labelled_figure(
        to_display(maps.unsqueeze(1)),
        labels,
        f"{title}: {c} maps of {h}x{w}",
        cols=8,
        scale=FIGURE_SCALE,
        cmap="viridis",
    )


def bar_figure(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    xlabel: str = "accuracy",
    ylabel: str = "class",
) -> Figure:
    """Horizontal bars of fractions (per-class accuracy, top-k probabilities), largest on top."""
    fig, ax = subplots(figsize=(5, 0.35 * len(labels) + 1.3))
    order = np.argsort(values)
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="C0")
    for y, i in enumerate(order):
        ax.text(values[i], y, f" {values[i]:.1%}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def sweep_figure(b: Bars) -> Figure:
    """A sweep's bars (``cnnlab.compare.bars``) on a y axis from 0, each value beside its error
    bar, coloured by the first swept key with its legend beside the axes."""
    palette = {c: f"C{i}" for i, c in enumerate(dict.fromkeys(b.colours))}
    legend = b.colour_by is not None and len(palette) > 1
    # room beside the axes for the legend, so it neither hides a bar label nor squeezes the axes
    width = max(5.0, 0.6 * len(b.values) + 2)
    width += (0.1 * max(map(len, palette)) + 2.0) * legend
    fig, ax = subplots(figsize=(width, 4))
    ax.bar(
        range(len(b.values)),
        b.values,
        yerr=b.errors if any(b.errors) else None,
        capsize=4,
        color=[palette[c] for c in b.colours],
    )
    for i, (v, e) in enumerate(zip(b.values, b.errors, strict=True)):
        # right of the error bar and its caps (4 points wide), at the mean: never on a cap
        ax.annotate(
            f"{v:.3f} ± {e:.3f}" if e else f"{v:.3f}", (i, v), xytext=(8, 0), textcoords="offset points", ha="left",
            va="center", fontsize=7, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )  # fmt: skip
    # one override a line: a long label (a group's common overrides) stays under its bar
    # instead of running diagonally off the figure and squeezing the axes into a corner
    many = len(b.values) > 6
    ax.set_xticks(
        range(len(b.values)),
        [label.replace(", ", "\n") for label in b.labels],
        rotation=30 if many else 0,
        ha="right" if many else "center",
        fontsize=8,
    )
    ax.set_ylabel(b.metric)
    high = max(v + e for v, e in zip(b.values, b.errors, strict=True))
    ax.set_ylim(0, high * 1.08 if high > 0 else 1)  # from 0: bar heights compare as values
    if legend:  # beside the axes: inside, it can hide a bar's label
        handles = [Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
        ax.legend(
            handles,
            [f"{b.colour_by}={c}" for c in palette],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
        )
    ax.set_title(b.title)
    fig.tight_layout()
    return fig


def input_and_cam_figure(
    image: torch.Tensor, cam: torch.Tensor, caption: str, title: str, lang: str = "en"
) -> Figure:
    """One image (C, H, W) as the net saw it, beside it under its map (H, W)."""
    shown = np.concatenate([_rgb(image[None]), cam_overlay(image[None], cam[None])])
    fig = labelled_figure(shown, [label("input_seen", lang), caption], title, cols=2, scale=1.6)
    value_bar(fig, "jet", 0.0, 1.0, label("cam_scale", lang))
    return fig


def augmentation_figure(rows: Sequence[torch.Tensor], title: str) -> Figure:
    """Rows of uint8 (n, C, H, W) images as they are (not stretched: a brightness change must
    show), each row labelled at its left: ``original``, ``draw 1``, ``draw 2``..."""
    from cnnlab.viz.grids import ROW_PAD, image_grid

    n, _, h, _ = rows[0].shape
    grid = image_grid(torch.cat(list(rows)), nrow=n, upscale=1).permute(1, 2, 0).numpy()
    fig, ax = subplots(figsize=(0.75 * n + 1.0, 0.75 * len(rows) + 0.5))
    ax.imshow(grid, interpolation="nearest")
    centres = [ROW_PAD + r * (h + ROW_PAD) + h / 2 for r in range(len(rows))]
    labels = ["original", *(f"draw {r}" for r in range(1, len(rows)))]
    ax.set_yticks(centres, labels, fontsize=9)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return fig
