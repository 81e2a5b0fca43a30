"""The course's demos as the decks draw them: sign convention, RGB convolution, readable
numbers on small maps, activation derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.config import PROJECT_ROOT
from cnnlab.viz.activations import curves
from cnnlab.viz.figures import subplots
from cnnlab.viz.kernels import COURSE_KERNELS, KERNELS, convolve, rgb_convolve, show_map, text_color

from .conftest import run_script

DECK_6X6 = torch.tensor([[10, 10, 10, 0, 0, 0]] * 6)  # the decks' example: bright left half


def test_the_decks_vertical_edge_is_positive_on_their_example():
    assert (
        convolve(DECK_6X6, COURSE_KERNELS["vertical edge (course)"]).tolist()
        == [[0, 30, 30, 0]] * 4
    )
    assert convolve(DECK_6X6, COURSE_KERNELS["sobel (course)"]).tolist() == [[0, 40, 40, 0]] * 4
    # the other sign convention finds the same edge negative, and ReLU would erase it
    assert convolve(DECK_6X6, KERNELS["vertical edge"]).tolist() == [[0, -30, -30, 0]] * 4


def test_rgb_convolution_is_three_kernels_summed_plus_bias():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 10, (3, 5, 5)).astype(np.float32)
    kernels = rng.integers(-2, 3, (3, 3, 3)).astype(np.float32)
    per_channel, out = rgb_convolve(torch.from_numpy(image), kernels.tolist(), bias=1.5)
    # by hand: for each output pixel, sum over channels and the 3x3 window (no flip)
    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            expected[i, j] = (image[:, i : i + 3, j : j + 3] * kernels).sum() + 1.5
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(per_channel.sum(0).numpy() + 1.5, expected, rtol=1e-6)


def test_numbers_on_small_maps_are_readable_on_any_cell():
    assert text_color(0, 0, 255) == "white" and text_color(255, 0, 255) == "black"
    fig, ax = subplots()
    show_map(ax, torch.tensor([[0.0, 255.0], [128.0, 30.0]]))
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"0": "white", "255": "black", "128": "black", "30": "white"}


@pytest.mark.parametrize("fmap", [torch.full((3, 3), 7.0), torch.tensor([[5.0]])])
def test_a_constant_or_1x1_map_is_not_drawn_black(fmap):
    fig, ax = subplots()
    show_map(ax, fmap)
    (image,) = ax.images
    r, g, b, _ = image.to_rgba(np.array([[float(fmap.flatten()[0])]]))[0, 0]
    assert 0.3 < r < 0.7 and r == g == b  # mid-grey
    assert [t.get_text() for t in ax.texts][0] in ("7", "5")


def test_activation_derivatives_match_their_formulas():
    x = torch.linspace(-3, 3, 61)
    got = curves(x)
    s, t = torch.sigmoid(x), torch.tanh(x)
    torch.testing.assert_close(got["sigmoid"][1], s * (1 - s))
    torch.testing.assert_close(got["tanh"][1], 1 - t**2)
    torch.testing.assert_close(got["ReLU"][1], (x > 0).float())
    torch.testing.assert_close(got["leaky ReLU (0.1)"][1], torch.where(x > 0, 1.0, 0.1))
    assert torch.equal(got["step"][1], torch.zeros_like(x))  # nothing to learn from
    torch.testing.assert_close(got["step"][0], (x > 0).float())


def test_kernels_script_writes_into_outputs_not_the_tracked_docs():
    proc = run_script("scripts/kernels.py", "rgb=true", "size=16")
    assert proc.returncode == 0, proc.stderr
    saved = [line.removeprefix("Saved ") for line in proc.stdout.splitlines()]
    assert len(saved) == 3
    assert all(p.startswith(str(PROJECT_ROOT / "outputs" / "course")) for p in saved)
