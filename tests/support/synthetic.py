"""Small learnable datasets written in the built-in datasets' real on-disk formats.

No full MNIST, CIFAR-10 or SVHN can be had offline, so tests and benchmarks write these
instead: the real loading code (each format's checks and reader) runs on them unchanged.
Any dataset in ``SPECS`` can be written, by its own format's writer. Each class draws a
distinct bar pattern plus noise, so a net can learn it in a few steps.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.formats import read_idx
from cnnlab.data.specs import get_spec
from tests.support.formats import md5_overrides, write_files
from tests.support.formats import write_idx as _write_idx


def write_idx(path: str | Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array as an IDX file (the MNIST format), optionally gzipped."""
    path = _write_idx(Path(path), array)
    if compress:
        gz = path.with_name(path.name + ".gz")
        with gzip.open(gz, "wb") as f:
            f.write(path.read_bytes())
        path.unlink()
        path = gz
    return path


def make_images(
    n: int, shape: tuple[int, int, int], num_classes: int = 10, seed: int = 0, noise: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (N, H, W, C) and labels: class k is a bright bar at a k-dependent place."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = rng.integers(0, num_classes, size=n).astype(np.uint8)
    images = rng.integers(0, noise, size=(n, h, w, c), dtype=np.int16)
    band = max(1, h // (num_classes + 2))
    for k in range(num_classes):
        rows = slice(band * (k + 1), band * (k + 2))
        mask = labels == k
        if k % 2:  # odd classes: vertical bars, even: horizontal, so neighbours differ in kind
            images[mask, :, rows, :] += 180
        else:
            images[mask, rows, :, :] += 180
        if c == 3:  # colour cue too
            images[mask, :, :, k % 3] += 20
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_synthetic(
    name: str,
    data_dir: str | Path | None,
    n_train: int = 500,
    n_test: int = 200,
    seed: int = 0,
    folder: str | Path | None = None,
) -> dict[str, str]:
    """Dataset ``name``'s files with synthetic images, in torchvision's layout under
    ``data_dir`` (or in ``folder`` if given); returns each file's md5 (checksummed formats
    need them trusted: ``tests.support.formats.md5_overrides``)."""
    spec = get_spec(name)
    out = Path(folder) if folder is not None else spec.target_dir(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for train, n, s in ((True, n_train, seed), (False, n_test, seed + 1)):
        images, labels = make_images(n, spec.shape, len(spec.classes), s)
        splits[train] = (
            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(labels.astype(np.int64)),
        )
    return write_files(spec.format, out, spec, splits)


def write_mnist_like(
    data_dir: str | Path | None,
    name: str = "mnist",
    n_train: int = 600,
    n_test: int = 200,
    compress: bool = False,
    seed: int = 0,
    folder: str | Path | None = None,
) -> Path:
    """The four IDX files of ``name`` (mnist or fashion_mnist), in torchvision's layout
    under ``data_dir`` or in ``folder`` if given, gzipped if ``compress``."""
    out = Path(folder) if folder is not None else get_spec(name).target_dir(data_dir)
    write_synthetic(name, data_dir, n_train, n_test, seed, folder=out)
    if compress:
        for f in get_spec(name).files:
            write_idx(out / f, read_idx(out / f), compress=True)
    return out


def write_cifar_like(
    data_dir: str | Path, n_train: int = 500, n_test: int = 200, seed: int = 0
) -> dict[str, str]:
    """CIFAR-10's python batches under ``data_dir/cifar-10-batches-py``; returns each file's md5."""
    return write_synthetic("cifar10", data_dir, n_train, n_test, seed)


@contextmanager
def trusted(name: str, sums: dict[str, str]) -> Iterator[None]:
    """Within the block, dataset ``name``'s md5-checked files are expected to have ``sums``
    (what ``write_synthetic`` returned), so synthetic copies load; restored on leaving.

    For the notebooks and benchmarks that run on synthetic CIFAR-10 or SVHN files: the
    official sums stay in force everywhere else (tests use pytest's monkeypatch instead).
    """
    settings = md5_overrides(get_spec(name).format, sums)
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in settings]
    try:
        for obj, attr, value in settings:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)
