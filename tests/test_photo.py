"""Photos and drawings prepared the way the datasets were made (dark background, framed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.photo import Framing, light_background, prepare


def _drawing(canvas=(120, 90), box=(30, 50, 40, 60)) -> Image.Image:
    """A dark stroke drawn on white paper (slightly grey), off-centre in a large frame."""
    arr = np.full(canvas, 230, np.uint8)
    y, x, hh, ww = box
    arr[y : y + hh, x : x + ww // 3] = 20  # a thick vertical bar
    arr[y : y + 8, x : x + ww] = 20  # and a top bar: a "7"-like shape
    return Image.fromarray(arr)


def test_a_light_background_is_detected_and_inverted():
    assert light_background(np.asarray(_drawing(), dtype=np.float32))
    assert not light_background(255 - np.asarray(_drawing(), dtype=np.float32))
    p = prepare(_drawing(), (1, 28, 28), Framing(20, "mass"))
    x = p.image[0, 0].numpy()
    assert x[0, 0] == 0 and x.max() == 255  # black background, full-range stroke
    assert p.steps[0].startswith("inverted")


def test_mnist_framing_fits_a_20px_box_centred_by_mass():
    x = prepare(_drawing(), (1, 28, 28), Framing(20, "mass")).image[0, 0].numpy().astype(float)
    rows, cols = np.flatnonzero(x.max(1) > 40), np.flatnonzero(x.max(0) > 40)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (19, 20, 21)
    ys, xs = np.indices(x.shape)
    cy, cx = (x * ys).sum() / x.sum(), (x * xs).sum() / x.sum()
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0


def test_fashion_framing_fills_the_frame_centred_by_box():
    x = prepare(_drawing(), (1, 28, 28), Framing(28, "box")).image[0, 0].numpy()
    rows, cols = np.flatnonzero(x.max(1) > 40), np.flatnonzero(x.max(0) > 40)
    assert rows[-1] - rows[0] + 1 == 28  # the longest side (height) fills the frame
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # the box is centred


def test_a_dark_background_image_is_not_inverted():
    img = Image.fromarray(255 - np.asarray(_drawing()))
    auto = prepare(img, (1, 28, 28), Framing(20, "mass"))
    assert not any(s.startswith("inverted") for s in auto.steps)
    as_drawn = prepare(_drawing(), (1, 28, 28), Framing(20, "mass"))
    assert (auto.image.int() - as_drawn.image.int()).abs().float().mean() < 2  # same result
    forced = prepare(img, (1, 28, 28), Framing(20, "mass"), invert="true")
    assert forced.steps[0].startswith("inverted") and not forced.image.equal(auto.image)


def test_bad_invert_value_is_refused():
    with pytest.raises(ValueError, match="invert='maybe'"):
        prepare(_drawing(), (1, 28, 28), Framing(20), invert="maybe")


@pytest.fixture(scope="module")
def fashion_ckpt(tmp_path_factory, fashion_dir):
    from cnnlab.run import train

    from .conftest import make_cfg

    tmp = tmp_path_factory.mktemp("photo")
    cfg = make_cfg(
        tmp,
        fashion_dir,
        "experiment=lenet_fashion",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=150",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
    )
    train(cfg)
    return tmp / "run" / "checkpoints" / "best.ckpt"


def test_white_background_images_are_classified_about_as_well_as_the_originals(
    fashion_ckpt, fashion_dir
):
    from torchvision.datasets import FashionMNIST

    from cnnlab.checkpoint import load_classifier
    from cnnlab.data.specs import normalize
    from cnnlab.predict import input_normalization, prepare_input

    test = FashionMNIST(str(fashion_dir), train=False)
    images, labels = test.data[:200].numpy(), test.targets[:200].tolist()
    model, info = load_classifier(fashion_ckpt)  # what predict() does, once for 200 images
    stats = input_normalization(info)

    def accuracy(make, invert="auto"):
        x = torch.cat([prepare_input(make(img), info, invert).image for img in images])
        with torch.no_grad():
            preds = model(normalize(x, *stats)).argmax(1)
        return (preds == torch.tensor(labels)).float().mean().item()

    original = accuracy(Image.fromarray)
    on_white = accuracy(lambda img: Image.fromarray(255 - img))
    as_is = accuracy(lambda img: Image.fromarray(255 - img), invert="false")

    # a phone-style photo: the object small and off-centre on a large, slightly grey sheet
    def photo(img):
        sheet = np.full((120, 160), 225, np.uint8)
        sheet[20:76, 70:126] = 255 - np.asarray(Image.fromarray(img).resize((56, 56)))
        return Image.fromarray(sheet)

    in_a_photo = accuracy(photo)
    assert original > 0.75
    assert as_is < 0.4  # shown as it is, the net sees something it was never trained on
    assert on_white > original - 0.05 and in_a_photo > original - 0.10, (
        original,
        on_white,
        in_a_photo,
    )


def test_predict_script_says_what_it_did_and_shows_the_input(fashion_ckpt, tmp_path):
    from .conftest import run_script

    photo = tmp_path / "shoe.png"
    _drawing().save(photo)
    seen = tmp_path / "seen.png"
    proc = run_script(
        "scripts/predict.py", f"ckpt_path={fashion_ckpt}", f"image={photo}", f"show={seen}"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Prepared: inverted (light background")
    assert Image.open(seen).size == (28 * 8, 28 * 8)


def test_an_image_already_in_the_datasets_format_is_used_as_is():
    arr = np.zeros((28, 28), np.uint8)
    arr[4:10, 3:25] = 200  # off-centre and not 20 px tall: re-framing would change it
    p = prepare(Image.fromarray(arr), (1, 28, 28), Framing(20, "mass"))
    assert np.array_equal(p.image[0, 0].numpy(), arr) and p.steps[0].startswith("used as is")
