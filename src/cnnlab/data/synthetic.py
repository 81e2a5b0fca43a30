"""Small learnable datasets written in the real on-disk formats (IDX, CIFAR python batches).

No full MNIST or CIFAR-10 can be had offline, so tests and benchmarks write these instead:
the real loading code (torchvision's readers, cnnlab's checks) runs on them unchanged.
Each class draws a distinct bar pattern plus noise, so a net can learn it in a few steps.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

from cnnlab.data.sources import get_spec

_IDX_UBYTE = 0x08


def write_idx(path: str | Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array as an IDX file (the MNIST format), optionally gzipped."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
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


def write_mnist_like(
    data_dir: str | Path,
    name: str = "mnist",
    n_train: int = 600,
    n_test: int = 200,
    compress: bool = False,
    seed: int = 0,
    folder: str | Path | None = None,
) -> Path:
    """The four IDX files of ``name`` (mnist or fashion_mnist), in torchvision's layout
    under ``data_dir`` or in ``folder`` if given."""
    spec = get_spec(name)
    out = Path(folder) if folder is not None else spec.target_dir(data_dir)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images, labels = make_images(n, spec.shape, len(spec.classes), s)
        write_idx(out / f"{prefix}-images-idx3-ubyte", images[..., 0], compress)
        write_idx(out / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return out


def write_cifar_like(
    data_dir: str | Path, n_train: int = 500, n_test: int = 200, seed: int = 0
) -> dict[str, str]:
    """CIFAR-10's python batches (five train batches, test batch, meta) under
    ``data_dir/cifar-10-batches-py``; returns each file's md5."""
    spec = get_spec("cifar10")
    out = spec.target_dir(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = make_images(n_train + n_test, spec.shape, 10, seed)
    # CIFAR stores each image as 3072 bytes: the red plane, then green, then blue
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    train_parts = np.array_split(np.arange(n_train), 5)
    batches = {f"data_batch_{i + 1}": idx for i, idx in enumerate(train_parts)}
    batches["test_batch"] = np.arange(n_train, n_train + n_test)
    for fname, idx in batches.items():
        entry = {
            "batch_label": fname,
            "labels": [int(v) for v in labels[idx]],
            "data": flat[idx],
            "filenames": [f"{i}.png" for i in idx],
        }
        (out / fname).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": list(spec.classes), "num_cases_per_batch": 10000, "num_vis": 3072}
    (out / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in out.iterdir()}
