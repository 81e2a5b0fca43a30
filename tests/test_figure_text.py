"""What the figures' words and numbers look like once drawn: measured through matplotlib's
renderer (text extents), not read back from the code that placed them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer

from cnnlab.compare import bars, find_runs
from cnnlab.errors import ConfigError
from cnnlab.models import LeNet5
from cnnlab.viz.activations import activations_figure
from cnnlab.viz.figures import (
    bar_figure,
    cam_figure,
    confusion_figure,
    filters_figure,
    filters_title,
    sweep_figure,
)
from cnnlab.viz.kernels import COURSE_KERNELS, kernel_figure, pooling_figure
from cnnlab.viz.labels import LABELS, check_lang


def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(90)  # as save() writes it
    canvas.draw()
    return canvas.get_renderer()


def _random_image(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)  # every pixel different: three-digit values everywhere
    return torch.tensor(rng.integers(0, 256, (28, 28)).astype("float32"))


@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 0)])
def test_numbers_on_small_maps_never_overlap(stride, padding):
    fig = kernel_figure(_random_image(), COURSE_KERNELS, stride=stride, padding=padding)
    renderer = _drawn(fig)
    shown = 0
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text() and ax.images]
        shown += len(boxes)
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (ax.get_title(), a, b)
        if boxes:  # and every number stays within its map
            assert all(ax.bbox.x0 <= b.x0 and b.x1 <= ax.bbox.x1 for b in boxes)
    # the 7x7 max-pooled maps (stride 2) still print their 49 values each, only smaller
    if stride == 2:
        assert shown >= 4 * 49


def test_pooling_numbers_never_overlap():
    small = torch.nn.functional.adaptive_avg_pool2d(_random_image()[None, None] * 37, 8)[0, 0]
    fig = pooling_figure(small.round())
    renderer = _drawn(fig)
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def _seeds(root: Path, accs=(0.881, 0.874, 0.879, 0.885, 0.870)) -> Path:
    """A one-group sweep=seeds: one config, five seeds."""
    fixed = ["data=fashion_mnist", "model=lenet", "trainer.max_epochs=3"]
    for seed, acc in enumerate(accs):
        folder = root / ",".join([*fixed, f"seed={seed}"])
        folder.mkdir(parents=True)
        record = {"status": "completed", "overrides": [*fixed, f"seed={seed}"], "test/acc": acc}
        (folder / "metrics.json").write_text(json.dumps(record))
    return root


def test_a_seeds_sweep_bar_is_labelled_by_what_its_runs_share_not_by_one_seed(tmp_path):
    b = bars(find_runs([_seeds(tmp_path)]))
    assert b.labels == ["data=fashion_mnist, model=lenet, trainer.max_epochs=3 (n=5)"]
    assert b.values == pytest.approx([np.mean([0.881, 0.874, 0.879, 0.885, 0.870])])


def test_the_sweep_plot_starts_at_0_fills_its_width_and_puts_values_beside_the_error_bars(
    tmp_path,
):
    fig = sweep_figure(bars(find_runs([_seeds(tmp_path)])))
    renderer = _drawn(fig)
    (ax,) = fig.axes
    assert ax.get_ylim()[0] == 0
    assert ax.bbox.width > 0.75 * fig.bbox.width  # not squeezed into a corner by a long label
    (label,) = [t for t in ax.texts if t.get_text().startswith("0.8")]
    box = label.get_window_extent(renderer)
    assert ax.bbox.x0 < box.x0 and box.x1 < ax.bbox.x1 and ax.bbox.y0 < box.y0 < box.y1 < ax.bbox.y1
    (drawn,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    caps = [line.get_window_extent(renderer) for line in drawn.errorbar.lines[1]]
    bar_line = drawn.errorbar.lines[2][0].get_window_extent(renderer)
    assert all(box.x0 > b.x1 for b in [*caps, bar_line])  # right of the error bar and its caps
    assert label.get_text() == "0.878 ± 0.006"


def _colour_bars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_single_channel_filters_share_one_scale_shown_by_a_colour_bar():
    torch.manual_seed(0)
    net = LeNet5((1, 28, 28), 10)
    fig = filters_figure(net.C1, filters_title("C1", net.C1))
    (bar,) = _colour_bars(fig)
    top = float(net.C1.weight.detach().abs().max())
    assert bar.get_ylim() == pytest.approx((-top, top))
    assert bar.get_ylabel() == "weight"
    # the first tile's pixels are filter 1's weights on that shared scale: 0.5 is a weight of 0
    w = net.C1.weight.detach().numpy()[0, 0]
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    scale = 5  # a 5x5 kernel drawn 25x25
    np.testing.assert_allclose(
        mosaic[: 5 * scale : scale, : 5 * scale : scale], (w / top + 1) / 2, atol=1e-6
    )


def test_grad_cam_grids_have_a_colour_bar_from_0_to_1():
    fig = cam_figure(torch.rand(2, 1, 28, 28), torch.rand(2, 28, 28), ["a", "b"], "cam")
    (bar,) = _colour_bars(fig)
    assert bar.get_ylim() == pytest.approx((0, 1))


def test_activation_and_per_class_figures_label_their_axes():
    fig = activations_figure()
    rows = np.array(fig.axes).reshape(2, -1)
    assert {ax.get_ylabel() for ax in rows[0]} == {"f(x)"}
    assert {ax.get_ylabel() for ax in rows[1]} == {"f'(x)"}
    assert {ax.get_xlabel() for ax in rows[1]} == {"x"}
    (ax,) = bar_figure(["cat", "dog"], [0.5, 0.75], "Test accuracy per class").axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("accuracy", "class")


def test_both_languages_have_every_label_with_the_same_placeholders():
    import string

    assert set(LABELS) == {"en", "es"}
    assert set(LABELS["en"]) == set(LABELS["es"])
    fields = {
        lang: {k: {f for _, f, _, _ in string.Formatter().parse(v) if f} for k, v in t.items()}
        for lang, t in LABELS.items()
    }
    assert fields["en"] == fields["es"]
    with pytest.raises(ConfigError, match=r"^lang='fr' is not a language .*use lang=en or lang=es"):
        check_lang("fr")


def test_every_kernel_and_activation_has_a_spanish_name():
    from cnnlab.viz.activations import ACTIVATION_CURVES
    from cnnlab.viz.kernels import KERNELS
    from cnnlab.viz.labels import NAMES

    assert {*COURSE_KERNELS, *KERNELS, *ACTIVATION_CURVES} == set(NAMES["es"])


def _words(fig) -> str:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    texts += [ax.get_title() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    texts += [ax.get_ylabel() for ax in fig.axes]
    return " | ".join([*texts, fig._suptitle.get_text() if fig._suptitle else ""])


def test_course_figures_speak_spanish_with_lang_es():
    img = _random_image()
    es = _words(kernel_figure(img, COURSE_KERNELS, stride=2, padding=1, lang="es"))
    assert "convolución" in es and "agrupación máx. 2x2" in es and "relleno (padding) 1" in es
    assert "entrada 28x28" in es and "convolution" not in es
    assert "borde vertical (curso)" in es and "laplaciano" in es
    assert "agrupación media 2x2" in _words(pooling_figure(img[:8, :8], lang="es"))
    words = _words(activations_figure(lang="es"))
    assert "sin gradiente" in words and "Funciones de activación" in words and "escalón" in words
    cm = torch.tensor([[3, 1], [0, 4]])
    words = _words(confusion_figure(cm, ["a", "b"], "Prueba", lang="es"))
    assert "clase predicha" in words and "Prueba: exactitud 87.50% de 8" in words
    assert "accuracy" not in words
