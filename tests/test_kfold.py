"""k-fold cross-validation (``data.folds=K data.fold=i``) and the seed / fold sweep presets.

Fold membership is checked against sets and counts computed here from the labels, on
classes of unequal sizes (an unstratified split would spread them unevenly).
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from cnnlab.config import compose_config
from cnnlab.data import FolderDataModule, ImageDataModule
from cnnlab.data.splits import stratified_fold
from cnnlab.errors import ConfigError

from .conftest import FOLDER_CLASSES, tiny_run, write_folder

# classes of 53, 24, 7, 101 and 15 images, shuffled: no fold can get an equal share by luck
LABELS = torch.tensor([0] * 53 + [1] * 24 + [2] * 7 + [3] * 101 + [4] * 15)[
    torch.randperm(200, generator=torch.Generator().manual_seed(1))
]


def _folds(labels, k, seed):
    return [stratified_fold(labels, k, i, seed) for i in range(k)]


@pytest.mark.parametrize("k", [2, 5, 7])
def test_folds_are_disjoint_cover_the_split_and_are_stratified(k):
    folds = _folds(LABELS, k, seed=0)
    vals = [set(val.tolist()) for _, val in folds]
    for i, (train, val) in enumerate(folds):
        assert set(train.tolist()) == set(range(200)) - vals[i]  # the rest trains
        assert len(train) + len(val) == 200
    assert sum(len(v) for v in vals) == 200 and set().union(*vals) == set(range(200))
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    for c, total in Counter(LABELS.tolist()).items():
        per_fold = [sum(LABELS[j].item() == c for j in v) for v in vals]
        assert sum(per_fold) == total
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)  # within one image


def test_folds_are_drawn_by_the_split_seed():
    a, b, c = _folds(LABELS, 5, 0), _folds(LABELS, 5, 0), _folds(LABELS, 5, 1)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def _val_and_train(dm):
    dm.prepare_data()
    dm.setup("fit")
    return set(dm.val_set.indices.tolist()), set(dm.train_set.indices.tolist())


def _mnist(data_dir, **kw):
    return ImageDataModule("mnist", data_dir=str(data_dir), mirrors=[], download=False, **kw)


def test_image_datamodule_folds_partition_the_training_split(tiny_mnist):
    plain = _mnist(tiny_mnist, val_size=100)
    plain_val, _ = _val_and_train(plain)
    vals = []
    for i in range(4):
        dm = _mnist(tiny_mnist, folds=4, fold=i, val_size=100)  # val_size is ignored
        val, train = _val_and_train(dm)
        assert val.isdisjoint(train) and val | train == set(range(600))
        assert len(val) == 150
        labels = Counter(dm.val_set.labels[sorted(val)].tolist())
        everything = Counter(dm.train_set.labels.tolist())
        assert all(abs(labels[c] - everything[c] / 4) <= 1 for c in everything)  # stratified
        # the test split is the official one, untouched
        assert torch.equal(dm.test_set.images, plain.test_set.images)
        vals.append(val)
    assert set().union(*vals) == set(range(600)) and sum(map(len, vals)) == 600
    assert plain_val not in vals  # folds=null keeps the val_size split


def test_folds_ignore_the_run_seed_and_follow_the_split_seed(tiny_mnist):
    val = {s: _val_and_train(_mnist(tiny_mnist, folds=3, fold=1, seed=s))[0] for s in (0, 7)}
    assert val[0] == val[7]
    other = _val_and_train(_mnist(tiny_mnist, folds=3, fold=1, split_seed=5))[0]
    assert other != val[0] and len(other) == len(val[0])


def test_folder_datamodule_folds_partition_its_training_split(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=10)  # 30 images; 6 carved off for test
    vals = []
    for i in range(3):
        dm = FolderDataModule(
            root=str(root), image_size=8, test_size=6, folds=3, fold=i, mirrors=[],
            download=False, data_dir=str(tmp_path / "data"),
        )  # fmt: skip
        val, train = _val_and_train(dm)
        assert val.isdisjoint(train) and val | train == set(range(24))
        assert len(dm.test_set) == 6
        per_class = Counter(dm.train_set.labels[sorted(val)].tolist())
        everything = Counter(dm.train_set.labels.tolist())
        assert all(abs(per_class[c] - everything[c] / 3) <= 1 for c in range(len(FOLDER_CLASSES)))
        vals.append(val)
    assert set().union(*vals) == set(range(24)) and sum(map(len, vals)) == 24


BAD = [
    ({"fold": 2}, r"data.fold=2 needs data.folds=K, the number of folds"),
    ({"folds": 1, "fold": 0}, r"data.folds=1 must be an integer >= 2"),
    ({"folds": 2.5, "fold": 0}, r"data.folds=2.5 must be an integer >= 2"),
    ({"folds": True, "fold": 0}, r"data.folds=True must be an integer >= 2"),
    ({"folds": 5}, r"data.fold=None must be an integer in \[0, 5\)"),
    ({"folds": 5, "fold": 5}, r"data.fold=5 must be an integer in \[0, 5\)"),
    ({"folds": 5, "fold": -1}, r"data.fold=-1 must be an integer in \[0, 5\)"),
    ({"folds": 70000, "fold": 0}, r"data.folds=70000 is more folds than MNIST's training split"),
]


@pytest.mark.parametrize("kw,pattern", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_fold_values_are_refused_naming_the_value(kw, pattern, tmp_path):
    with pytest.raises(ConfigError, match=pattern) as e:
        _mnist(tmp_path, **kw)
    assert "\n" not in str(e.value)


def test_more_folds_than_the_files_hold_is_refused_in_setup(tiny_mnist):
    dm = _mnist(tiny_mnist, folds=601, fold=0)  # the spec says 60000; the files hold 600
    with pytest.raises(ConfigError, match=r"data.folds=601 is more folds than the training"):
        _val_and_train(dm)


def test_the_sweep_presets_set_what_they_sweep():
    kfold = compose_config("train", ["sweep=kfold", "data.fold=3"])
    assert kfold.data.folds == 5 and kfold.data.fold == 3
    assert compose_config("train", ["sweep=kfold", "data.folds=10"]).data.folds == 10
    assert compose_config("train", []).data.folds is None  # off by default


def test_a_fold_trains_end_to_end_on_the_resident_path(tmp_path, caplog):
    # data.resident moves the fold's indices to the training device with the images
    caplog.set_level(logging.INFO, logger="cnnlab.data.datamodule")
    _, metrics = tiny_run(
        tmp_path, "data.folds=3", "data.fold=2", "data.resident=true", "trainer.max_epochs=1"
    )
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.5  # chance: 0.1
    assert metrics["val/acc"] * 200 == pytest.approx(round(metrics["val/acc"] * 200), abs=1e-4)
    assert "400 train / 200 val (fold 2 of 3) / 200 test images" in caplog.text
