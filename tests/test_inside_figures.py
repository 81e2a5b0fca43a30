"""Figures that say what they show (issue 14, section 5): the augmentation grid's row labels,
filters titled by how a multi-channel filter is drawn, every tile labelled.

The figures are inspected before rendering (their texts, tick labels and image arrays);
expected pixels are computed here from the weights and images with numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cnnlab.build import build
from cnnlab.models import LeNet5
from cnnlab.viz.figures import (
    augmentation_figure,
    feature_map_figure,
    feature_maps,
    filters_figure,
    filters_title,
)
from cnnlab.viz.grids import ROW_PAD, augmentation_rows

from .conftest import make_cfg, run_script, tiny_run


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]


def test_augmentation_rows_are_labelled_original_then_each_draw(tmp_path, tiny_mnist):
    datamodule, _ = build(make_cfg(tmp_path, tiny_mnist, "aug=light", "data.val_size=100"))
    datamodule.setup("fit")
    rows = augmentation_rows(datamodule, n=5, repeats=3)
    fig = augmentation_figure(rows, "aug=light on MNIST")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["original", "draw 1", "draw 2", "draw 3"]
    # each label sits on its row: the grid's pixel at the tick is that row's first image's centre
    grid = np.asarray(ax.images[0].get_array())
    h, w = rows[0].shape[2:]
    for r, (tick, row) in enumerate(zip(ax.get_yticks(), rows, strict=True)):
        assert int(tick) == ROW_PAD + r * (h + ROW_PAD) + h // 2  # the middle line of row r
        assert grid[int(tick), ROW_PAD + w // 2, 0] == int(row[0, 0, h // 2, w // 2])
    assert not torch.equal(rows[0], rows[1])  # the draws do change the images


def test_a_multi_channel_filter_is_titled_as_the_mean_it_is_drawn_as():
    torch.manual_seed(0)
    net = LeNet5((1, 28, 28), 10)
    assert filters_title("C3", net.C3) == "C3: 16 learned 5x5 filters (mean over 6 input channels)"
    assert filters_title("C1", net.C1) == "C1: 6 learned 5x5 filters (one input channel)"
    fig = filters_figure(net.C3, filters_title("C3", net.C3))
    texts = _texts(fig)
    assert "mean over 6 input channels" in texts[-1]
    assert [t for t in texts if t.startswith("filter ")] == [f"filter {k}" for k in range(1, 17)]
    # the first tile is filter 1 averaged over its 6 input channels, on the scale all tiles
    # share: [-m, m] -> [0, 1] for m the largest |mean weight| of any filter
    means = net.C3.weight.detach().numpy().mean(axis=1)
    stretched = (means[0] / np.abs(means).max() + 1) / 2
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    scale = 5  # a 5x5 kernel is drawn 25x25: each weight a 5x5 block
    top_left = mosaic[: 5 * scale : scale, : 5 * scale : scale]
    np.testing.assert_allclose(top_left, stretched, atol=1e-6)


def test_feature_maps_are_labelled_with_their_channel_and_range():
    torch.manual_seed(0)
    net = LeNet5((1, 28, 28), 10).eval()
    fmap = feature_maps(net, torch.randn(1, 1, 28, 28))["C1"]
    fig = feature_map_figure(fmap, "after C1")
    expected = [f"channel {k + 1}\n{m.min():.2g} to {m.max():.2g}" for k, m in enumerate(fmap)]
    assert [t for t in _texts(fig) if t.startswith("channel ")] == expected
    assert _texts(fig)[-1] == "after C1: 6 maps of 28x28"


def test_inspect_checkpoint_writes_labelled_figures_larger_than_before(tmp_path):
    tiny_run(tmp_path, "trainer.max_epochs=1", "logger=none")
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((40, 30), 255, np.uint8)).save(image)  # a white page...
    Image.fromarray(np.zeros((12, 8), np.uint8)).save(tmp_path / "ink.png")
    page = Image.open(image)
    page.paste(Image.open(tmp_path / "ink.png"), (10, 14))  # ...with a dark stroke on it
    page.save(image)
    out = tmp_path / "inside"
    proc = run_script(
        "scripts/inspect_checkpoint.py",
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}", f"image={image}",
        f"hydra.run.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Prepared: inverted" in proc.stdout  # as predict.py prepares a photo
    sizes = {p.name: Image.open(p).size for p in out.glob("*.png")}
    assert set(sizes) == {"filters_C1.png", "filters_C3.png", "features_C1.png", "features_C3.png"}
    # the old figures were 269x79 to 520x182 pixels, too small to read
    assert all(w >= 700 and h >= 240 for w, h in sizes.values()), sizes
