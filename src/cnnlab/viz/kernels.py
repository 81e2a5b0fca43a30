"""The course's convolution and pooling demos, computed by the network's own layers.

A kernel is applied by an ``nn.Conv2d`` whose weights are set to it, and pooling by the same
pooling layers the models use, so what the figures show is exactly what a CNN computes
(including PyTorch's cross-correlation convention: the kernel is not flipped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from cnnlab.models.blocks import pool
from cnnlab.models.summary import window_out
from cnnlab.viz.figures import subplots
from cnnlab.viz.labels import label, term

# The sign convention matters: a conv layer computes cross-correlation (the kernel slides over
# the image unflipped), so [-1, 0, 1] answers a dark-to-bright edge (left to right) with a
# positive value and [1, 0, -1] a bright-to-dark one. The course's decks use the second form;
# cnnlab's classic set the first. Both are offered, each under its own name.
COURSE_KERNELS: dict[str, list[list[float]]] = {
    "vertical edge (course)": [[1, 0, -1], [1, 0, -1], [1, 0, -1]],
    "horizontal edge (course)": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "sobel (course)": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "laplacian": [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
}

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


def text_color(value: float, vmin: float, vmax: float, cmap: str = "gray") -> str:
    """Black or white, whichever reads better on the cell colour ``cmap`` gives ``value``."""
    from matplotlib import colormaps

    t = 0.5 if vmax <= vmin else (value - vmin) / (vmax - vmin)
    r, g, b, _ = colormaps[cmap](t)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


# the gid of the numbers printed on a map's cells, which fit_cell_numbers sizes to their cells
CELL_VALUE = "cell-value"
MIN_FONT = 4.5  # points: smaller numbers are not printed (the map says so instead)


def show_map(ax, fmap: torch.Tensor, cmap: str = "gray", numbers: bool | None = None) -> None:
    """Draw a 2-D map; maps up to 8x8 show every value, in a colour readable on its cell
    (``fit_cell_numbers`` then sizes them to the cells once the figure is laid out).

    A constant map (a 1x1 one included) is drawn mid-grey, not black: with no range to
    stretch, imshow would paint every cell with the lowest colour.
    """
    arr = fmap.detach().float().cpu().numpy()
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi)
    if numbers if numbers is not None else max(arr.shape) <= 8:
        for (i, j), v in np.ndenumerate(arr):
            label = f"{v:g}" if abs(v - round(v)) < 1e-6 else f"{v:.2f}"
            ax.text(
                j, i, label, ha="center", va="center", fontsize=8,
                color=text_color(v, lo, hi, cmap), gid=CELL_VALUE,
            )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def fit_cell_numbers(fig: Figure, lang: str = "en", fill: float = 0.9) -> None:
    """Shrink the numbers on each map's cells until every one fits inside its cell (so that
    neighbours never run together: "224183"); where that would take them under ``MIN_FONT``,
    drop them and say so under the map. Call it after the figure's layout is final: it
    measures the text as the renderer draws it."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays out axes with a fixed aspect, so their boxes are the maps' boxes
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_gid() == CELL_VALUE]
        if not texts or not ax.images:
            continue
        rows, cols = ax.images[0].get_array().shape[:2]
        cell_w, cell_h = ax.bbox.width / cols, ax.bbox.height / rows
        boxes = [t.get_window_extent(renderer) for t in texts]
        scale = min(
            min(fill * cell_w / b.width, fill * cell_h / b.height) for b in boxes if b.width
        )
        size = min(texts[0].get_fontsize() * scale, 8)
        if size < MIN_FONT:
            for t in texts:
                t.remove()
            ax.set_xlabel(label("too_small", lang), fontsize=6)
        else:
            for t in texts:
                t.set_fontsize(size)


def formula(size: int, k: int, stride: int, padding: int) -> str:
    out = window_out(size, k, stride, padding)
    return f"O = (W - K + 2P)/S + 1 = ({size} - {k} + 2*{padding})/{stride} + 1 = {out}"


def kernel_figure(
    image: torch.Tensor,
    kernels: dict[str, list] | None = None,
    stride: int = 1,
    padding: int = 0,
    pool_size: int = 2,
    lang: str = "en",
) -> Figure:
    """Columns: each kernel; rows: the kernel, the conv output, ReLU, max pool, average pool
    (``lang``: the language of its words, ``cnnlab.viz.labels``)."""
    kernels = kernels or KERNELS
    h, w = image.shape[-2:]
    cols = len(kernels) + 1
    fig, axes = subplots(5, cols, figsize=(1.55 * cols, 8.2))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title(label("input", lang, h=h, w=w), fontsize=8)
    rows = [
        label("convolution", lang),
        label("relu", lang),
        label("max_pool", lang, k=pool_size),
        label("avg_pool", lang, k=pool_size),
    ]
    for r, row in enumerate(rows, start=1):
        axes[r, 0].axis("off")
        axes[r, 0].text(
            0.95, 0.5, row, ha="right", va="center", fontsize=9, transform=axes[r, 0].transAxes
        )
    for c, (kernel_name, kernel) in enumerate(kernels.items(), start=1):
        k = np.asarray(kernel, dtype=float)
        axes[0, c].imshow(k, cmap="coolwarm", vmin=-np.abs(k).max(), vmax=np.abs(k).max())
        for (i, j), v in np.ndenumerate(k):
            text = f"{v:g}" if v == int(v) else "1/9" if abs(v - 1 / 9) < 1e-9 else f"{v:.2f}"
            axes[0, c].text(j, i, text, ha="center", va="center", fontsize=7)
        axes[0, c].set_title(term(kernel_name, lang), fontsize=8)
        out = convolve(image, kernel, stride, padding)
        relu = out.clamp_min(0)
        panels = [out, relu, pooled(relu, "max", pool_size), pooled(relu, "avg", pool_size)]
        for r, img in enumerate(panels, start=1):
            show_map(axes[r, c], img)
            axes[r, c].set_title(
                f"{img.shape[0]}x{img.shape[1]} [{img.min():.0f}, {img.max():.0f}]", fontsize=7
            )
    k0 = len(next(iter(kernels.values())))
    fig.suptitle(
        label(
            "kernels_title", lang, stride=stride, padding=padding,
            formula=formula(h, k0, stride, padding),
        ),
        fontsize=9,
    )  # fmt: skip
    fig.tight_layout()
    fit_cell_numbers(fig, lang)
    return fig


def pooling_figure(fmap: torch.Tensor, size: int = 2, lang: str = "en") -> Figure:
    """Max, average and min pooling of the same map, side by side, with values when small."""
    results = {kind: pooled(fmap, kind, size) for kind in ("max", "avg", "min")}
    fig, axes = subplots(1, 4, figsize=(12, 3.6))
    titles = [label("pool_input", lang), *(label(f"{k}_pool", lang, k=size) for k in results)]
    for ax, title, img in zip(axes, titles, [fmap, *results.values()], strict=True):
        show_map(ax, img)
        ax.set_title(f"{title} {img.shape[0]}x{img.shape[1]}", fontsize=9)
    fig.suptitle(label("pooling_title", lang, k=size), fontsize=10)
    fig.tight_layout()
    fit_cell_numbers(fig, lang)
    return fig


def rgb_convolve(
    image: torch.Tensor, kernels, bias: float = 0.0, stride: int = 1, padding: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB (3, H, W) image through one conv filter as the decks draw it.

    One 3x3 kernel per input channel (``kernels``: 3 kernels, or one used for all three),
    each channel correlated with its own kernel, the three results summed, plus one bias:
    what a ``Conv2d(3, 1, k)`` computes. Returns the per-channel maps (3, H', W') and the
    output map (H', W'), the latter from the conv layer itself.
    """
    k = torch.as_tensor(kernels, dtype=torch.float32)
    k = k.expand(3, *k.shape[-2:]) if k.ndim == 2 else k
    x = image.float().view(1, 3, *image.shape[-2:])
    conv = nn.Conv2d(3, 1, tuple(k.shape[-2:]), stride=stride, padding=padding)
    with torch.no_grad():
        conv.weight.copy_(k.unsqueeze(0))
        conv.bias.fill_(bias)
        out = conv(x)[0, 0]
        per_channel = torch.stack([convolve(x[0, i], k[i], stride, padding) for i in range(3)])
    return per_channel, out


def rgb_figure(image: torch.Tensor, kernels, bias: float = 0.0) -> Figure:
    """Rows R, G, B: the channel, its kernel, the channel's map; last column: sum + bias."""
    per_channel, out = rgb_convolve(image, kernels, bias)
    k = torch.as_tensor(kernels, dtype=torch.float32)
    k = k.expand(3, *k.shape[-2:]) if k.ndim == 2 else k
    fig, axes = subplots(3, 4, figsize=(10, 7.5))
    for i, name in enumerate(("red", "green", "blue")):
        show_map(axes[i, 0], image[i], cmap=f"{name.capitalize()}s")
        axes[i, 0].set_title(f"{name} channel", fontsize=9)
        show_map(axes[i, 1], k[i], cmap="coolwarm", numbers=True)
        axes[i, 1].set_title(f"kernel for {name}", fontsize=9)
        show_map(axes[i, 2], per_channel[i])
        axes[i, 2].set_title(f"{name} * kernel", fontsize=9)
        axes[i, 3].axis("off")
    show_map(axes[1, 3], out)
    axes[1, 3].set_title(f"sum of the three + bias {bias:g}", fontsize=9)
    axes[1, 3].axis("on")
    axes[1, 3].set_xticks([])
    axes[1, 3].set_yticks([])
    fig.suptitle(
        "One filter on an RGB image: one kernel per channel, the three maps summed, plus a bias "
        "= one output map (a Conv2d(3, 1, 3x3) has 3*3*3 + 1 = 28 parameters)",
        fontsize=9,
    )
    fig.tight_layout()
    fit_cell_numbers(fig)
    return fig


def sample_image(data_dir: str | Path, name: str = "fashion_mnist", index: int = 0) -> torch.Tensor:
    """One test image of a prepared dataset as (H, W) floats (first channel)."""
    from cnnlab.data.specs import get_spec

    images, _ = get_spec(name).read(data_dir, train=False)
    return images[index, 0].float()


# kernels= of ``cnnlab kernels``
KERNEL_SETS = {"course": COURSE_KERNELS, "classic": KERNELS}


def default_image() -> torch.Tensor:
    """A Fashion-MNIST test image, or, with no dataset here, a bright square with a diagonal edge."""
    from cnnlab.config import PROJECT_ROOT
    from cnnlab.data.sources import ensure_dataset
    from cnnlab.errors import CnnlabError

    try:
        ensure_dataset("fashion_mnist", PROJECT_ROOT / "data", download=False)
        return sample_image(PROJECT_ROOT / "data", "fashion_mnist", index=0)
    except CnnlabError:
        img = torch.zeros(28, 28)
        img[6:22, 6:22] = 200
        return torch.triu(img)


def rgb_image(path: str, size: int) -> torch.Tensor:
    """(3, H, W) floats in [0, 255]: the image given, else a small synthetic colour scene."""
    if path:
        from cnnlab.predict import open_image

        img = open_image(path).convert("RGB")
        img.thumbnail((size, size))
        return torch.tensor(list(img.getdata()), dtype=torch.float32).T.reshape(
            3, img.height, img.width
        )
    x = torch.zeros(3, 8, 8)
    x[0, :, :4] = 10  # red on the left
    x[1, :4, :] = 5  # green on top
    x[2] = torch.arange(8.0)  # blue growing to the right
    return x


def demo_figures(
    image: str, kernels: str, rgb: bool, stride: int, padding: int, size: int, lang: str
) -> list[tuple[str, Figure]]:
    """``cnnlab kernels``: (file name, figure) of the kernels, pooling (and rgb) demos."""
    from cnnlab.errors import ConfigError

    if kernels not in KERNEL_SETS:
        raise ConfigError(f"kernels={kernels!r}: choose one of {', '.join(KERNEL_SETS)}.")
    gray = load_gray(image, size) if image else default_image()
    if min(gray.shape) < 3:
        h, w = gray.shape
        raise ConfigError(f"image={image!r} is {w}x{h} pixels; the 3x3 kernels need 3x3 or more.")
    figures = [
        ("kernels.png", kernel_figure(gray, KERNEL_SETS[kernels], stride, padding, lang=lang))
    ]
    # a small map, so the pooled values can be printed on the figure
    small = torch.nn.functional.adaptive_avg_pool2d(gray[None, None], 8)[0, 0].round()
    figures.append(("pooling.png", pooling_figure(small, lang=lang)))
    if rgb:
        edges = [
            COURSE_KERNELS["vertical edge (course)"],
            COURSE_KERNELS["horizontal edge (course)"],
            [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
        ]
        figures.append(("rgb.png", rgb_figure(rgb_image(image, min(size, 16)), edges, bias=1.0)))
    return figures
