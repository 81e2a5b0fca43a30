"""Kernel and pooling demos (exact arithmetic), prediction on image files, TensorBoard images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.data.specs import get_spec, normalize
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict, to_input
from cnnlab.viz.kernels import KERNELS, convolve, formula, kernel_figure, pooled, pooling_figure

from .test_train import EPOCHS, trained  # noqa: F401  (module fixture: a short LeNet-5 run)

STEP = torch.tensor([[0, 0, 0, 10, 10, 10]] * 6)  # dark left half, bright right half


def test_vertical_edge_on_a_step_image():
    out = convolve(STEP, KERNELS["vertical edge"])
    assert out.tolist() == [[0, 30, 30, 0]] * 4  # (6 - 3 + 0)/1 + 1 = 4


def test_padding_and_stride_follow_the_formula():
    padded = convolve(STEP, KERNELS["vertical edge"], padding=1)
    assert padded.shape == (6, 6)
    assert padded[0].tolist() == [0, 0, 20, 20, 0, -20]  # border rows see two image rows
    assert padded[2].tolist() == [0, 0, 30, 30, 0, -30]
    strided = convolve(STEP, KERNELS["vertical edge"], stride=2)
    assert strided.tolist() == [[0, 30], [0, 30]]  # (6 - 3)/2 + 1 = 2 (floor)
    assert formula(6, 3, 2, 0).endswith("= 2")


def test_laplacian_and_emboss_by_hand():
    img = torch.zeros(5, 5)
    img[2, 2] = 1  # a single bright pixel
    assert convolve(img, KERNELS["laplacian"]).tolist() == [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]
    # cross-correlation, as conv layers compute it: the kernel appears flipped around the pixel
    assert convolve(img, KERNELS["emboss"]).tolist() == [[2, 1, 0], [1, 1, -1], [0, -1, -2]]


def test_pooling_by_hand():
    fmap = torch.tensor([[1.0, 2, 5, 0], [3, 4, 1, 1], [0, -2, 7, 8], [6, 4, 9, 2]])
    assert pooled(fmap, "max").tolist() == [[4, 5], [6, 9]]
    assert pooled(fmap, "avg").tolist() == [[2.5, 1.75], [2, 6.5]]
    assert pooled(fmap, "min").tolist() == [[1, 0], [-2, 2]]


def test_demo_figures_render(tmp_path):
    img = torch.rand(28, 28) * 255
    assert len(kernel_figure(img).axes) == 5 * (len(KERNELS) + 1)
    assert len(pooling_figure(img[:8, :8]).axes) == 4


def test_prediction_on_an_image_file_matches_the_dataset_forward(trained, tmp_path):  # noqa: F811
    cfg, _ = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    images, _ = get_spec("mnist").read(cfg.data.data_dir, train=False)
    from cnnlab.checkpoint import load_classifier

    model, _ = load_classifier(ckpt)
    for i in range(5):
        png = tmp_path / f"{i}.png"
        Image.fromarray(images[i, 0].numpy()).save(png)
        with torch.no_grad():
            expected = model(normalize(images[i : i + 1], *_mnist_stats())).softmax(1)[0]
        # the trained run's noisy images have grey backgrounds that invert=auto would take for
        # paper (test_photo covers the automatic choice); here they go in as they are
        got = predict(ckpt, png, invert="false")
        assert torch.allclose(got.probs, expected, atol=1e-6)
        assert got.top(1)[0][0] == str(int(expected.argmax()))


def test_any_size_and_colour_mode_becomes_the_dataset_format():
    rgba = Image.fromarray(np.full((300, 200, 4), 255, dtype=np.uint8), "RGBA")
    x = to_input(rgba, (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.uint8 and int(x.max()) == 255
    gray16 = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 8)
    assert gray16.mode.startswith("I")
    y = to_input(gray16, (3, 32, 32))
    assert y.shape == (1, 3, 32, 32) and int(y.max()) > 200


def test_not_an_image_is_refused(trained, tmp_path):  # noqa: F811
    cfg, _ = trained
    fake = tmp_path / "photo.jpg"
    fake.write_text("definitely not a jpeg")
    with pytest.raises(CnnlabError, match=r"photo.jpg is not an image that can be read"):
        predict(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt", fake)


def test_tensorboard_holds_the_diagnostic_images(trained):  # noqa: F811
    cfg, metrics = trained
    acc = EventAccumulator(cfg.paths.output_dir, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    assert {
        "samples/train",
        "val/confusion_matrix",
        "test/confusion_matrix",
        "test/accuracy_per_class",
        "filters/C1",
        "feature_maps/C1",
        "feature_maps/C3",
    } <= images
    assert ("test/misclassified" in images) == (metrics["test/acc"] < 1)
    counts = [
        json.loads(e.tensor_proto.string_val[0])
        for e in acc.Tensors("val/confusion_counts/text_summary")
    ]
    assert len(counts) == EPOCHS  # one per epoch
    assert all(np.sum(c) == cfg.data.val_size for c in counts)
    test_counts = json.loads(
        acc.Tensors("test/confusion_counts/text_summary")[-1].tensor_proto.string_val[0]
    )
    assert np.trace(test_counts) / np.sum(test_counts) == pytest.approx(
        metrics["test/acc"], abs=1e-6
    )
    scalars = set(acc.Tags()["scalars"])
    assert {f"val/acc_class/{c}" for c in "0123456789"} <= scalars


def _mnist_stats():
    spec = get_spec("mnist")
    return spec.mean, spec.std
