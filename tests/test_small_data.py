"""experiment=small_data and the small-data benchmark (benchmarks/small_data.py): the recipe
composes with any dataset, the folder-maker writes exactly what it says, and the classical
baseline is scored on the test split."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import compose_config, create
from cnnlab.data.folder import scan_folder
from cnnlab.weights import net_args
from tests.support.synthetic import write_mnist_like

ROOT = Path(__file__).resolve().parents[1]
BENCH = runpy.run_path(str(ROOT / "benchmarks" / "small_data.py"))


def _idx(path: Path) -> np.ndarray:
    """An uncompressed IDX file read here, by its header, apart from cnnlab's reader."""
    raw = path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.mark.parametrize(
    "data", ["data=folder data.root=/some/photos", "data=fashion_mnist", "data=mnist"]
)
def test_small_data_recipe_composes_with_any_dataset_and_keeps_it(data):
    cfg = compose_config("train", ["experiment=small_data", *data.split()])
    assert cfg.data.name == data.split()[0].removeprefix("data=")  # the dataset is the user's
    base = compose_config("train", data.split())
    # the recipe's own settings land on every dataset
    assert cfg.aug.affine_p > 0 and base.aug.affine_p == 0
    assert cfg.loss.label_smoothing > 0
    assert cfg.trainer.max_epochs > base.trainer.max_epochs
    # nothing a dataset can refuse is forced: a mirrored digit is another digit
    assert cfg.test_tta is None and cfg.aug.hflip == 0


def test_small_data_recipe_leaves_the_model_choice_to_the_command_line():
    cfg = compose_config("train", ["experiment=small_data", "model=lenet"])
    assert cfg.model == compose_config("train", ["model=lenet"]).model
    # a torchvision net from a start: the recipe adds no key its constructor would refuse
    start = ["model=torchvision", "model.arch=resnet18", "model.init_from=/runs/a/best.ckpt"]
    cfg = compose_config("train", ["experiment=small_data", "data=fashion_mnist", *start])
    assert cfg.model == compose_config("train", start).model
    assert cfg.aug.affine_p > 0 and cfg.trainer.max_epochs == 40  # the recipe still applies
    net = create(net_args(cfg.model), input_shape=(1, 32, 32), num_classes=10)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_small_data_recipe_trains_simple_cnn_with_batch_norm_and_dropout():
    cfg = compose_config("train", ["experiment=small_data", "data=fashion_mnist"])
    net = create(net_args(cfg.model), input_shape=(1, 28, 28), num_classes=10)
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.Dropout in kinds


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory) -> tuple[Path, Path]:
    """A Fashion-MNIST-format dataset (60 training, 40 test images), and the folder made
    from it with 3 images per class of classes 2, 5 and 7, drawn with seed 1."""
    tmp = tmp_path_factory.mktemp("small")
    write_mnist_like(tmp / "data", "fashion_mnist", n_train=60, n_test=40, seed=3)
    data = BENCH["load_fashion"](tmp / "data")
    folder = BENCH["make_folder"](tmp / "out", "f", data, (2, 5, 7), 3, seed=1)
    return tmp / "data" / "FashionMNIST" / "raw", folder


def test_folder_maker_writes_n_images_per_class_with_their_idx_pixels_and_labels(tiny_fashion):
    raw, folder = tiny_fashion
    x, y = _idx(raw / "train-images-idx3-ubyte"), _idx(raw / "train-labels-idx1-ubyte")
    tx, ty = _idx(raw / "t10k-images-idx3-ubyte"), _idx(raw / "t10k-labels-idx1-ubyte")
    layout = scan_folder(folder)
    assert layout.classes == ("2_Pullover", "5_Sandal", "7_Sneaker")
    for split, images, labels in (("train", x, y), ("test", tx, ty)):
        for k, label in enumerate((2, 5, 7)):
            files = sorted((folder / split / layout.classes[k]).glob("*.png"))
            indices = [int(p.stem) for p in files]  # named by the index in the official split
            if split == "train":
                assert len(files) == 3
            else:  # the whole test split of the class
                assert indices == np.flatnonzero(labels == label).tolist()
            assert all(labels[i] == label for i in indices)
            for p, i in zip(files, indices, strict=True):
                assert np.array_equal(np.asarray(Image.open(p)), images[i])
    # the draw is the seed's, and another seed draws other images
    again = BENCH["make_folder"](folder.parent, "g", BENCH["load_fashion"](raw.parents[1]),
                                 (2, 5, 7), 3, seed=2)  # fmt: skip
    first = sorted(p.name for p in (folder / "train").rglob("*.png"))
    assert first != sorted(p.name for p in (again / "train").rglob("*.png"))


def _constant(folder: Path, cls: str, name: str, value: int) -> None:
    (folder / cls).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value + len(name))
    img = np.clip(value + rng.integers(-10, 10, (28, 28)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(folder / cls / f"{name}.png")


def test_classical_baseline_scores_the_test_images_not_the_training_ones(tmp_path):
    # training: dark images are class a, bright ones class b; any classifier separates them.
    # test: 6 images, one of them bright but labelled a, so the test accuracy is 5/6 exactly
    # (the training accuracy would be 1.0)
    for i in range(6):
        _constant(tmp_path / "train", "a", f"{i}", 20)
        _constant(tmp_path / "train", "b", f"{i}", 230)
    for i in range(3):
        _constant(tmp_path / "test", "a", f"{i}", 25)
    _constant(tmp_path / "test", "a", "odd", 225)
    for i in range(2):
        _constant(tmp_path / "test", "b", f"{i}", 225)
    accs = BENCH["classical_baseline"](tmp_path)
    assert accs == {"svm_rbf": pytest.approx(5 / 6), "logreg": pytest.approx(5 / 6)}
