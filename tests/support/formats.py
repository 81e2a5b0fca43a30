"""Writers of each built-in format, and the md5 sums that make torchvision accept their files.

The readers and checks live in ``cnnlab.data.formats``; what writes a tiny copy for the tests
and the benchmark lives here, one function per format class (a new format registers its own).
"""

from __future__ import annotations

import pickle
import struct
from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.formats import CifarBatches, Format, Idx, Split, SvhnMat, md5sum
from cnnlab.data.specs import DatasetSpec

_IDX_UBYTE = 0x08


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.tobytes())
    return path


def _sums(fmt: Format, folder: Path) -> dict[str, str]:
    return {n: md5sum(folder / n) for n in fmt.files if (folder / n).exists()}


@singledispatch
def write_files(
    fmt: Format, folder: Path, spec: DatasetSpec, splits: dict[bool, Split]
) -> dict[str, str]:
    """Write a copy of ``fmt``'s files holding ``splits`` (train: True/False -> images, labels)
    into the existing ``folder``; return each file's md5."""
    raise NotImplementedError(f"no writer for {type(fmt).__name__} files in tests/support")


@write_files.register
def _(fmt: Idx, folder, spec, splits):
    for train, (x, y) in splits.items():
        images, labels = fmt.split_files(train)
        write_idx(folder / images, x[:, 0].numpy())
        write_idx(folder / labels, y.numpy())
    return _sums(fmt, folder)


@write_files.register
def _(fmt: CifarBatches, folder, spec, splits):
    for train, (x, y) in splits.items():
        names = [n for n, _ in (fmt.tv_class.train_list if train else fmt.tv_class.test_list)]
        # each image is C*H*W bytes: the red plane, then green, then blue
        flat = x.reshape(len(x), -1).numpy()
        for name, idx in zip(names, np.array_split(np.arange(len(x)), len(names)), strict=True):
            entry = {
                "batch_label": name,
                "labels": [int(v) for v in y[idx]],
                "data": flat[idx],
                "filenames": [f"{i}.png" for i in idx],
            }
            (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": list(spec.classes), "num_cases_per_batch": 10000, "num_vis": 3072}
    (folder / fmt.tv_class.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    return _sums(fmt, folder)


@write_files.register
def _(fmt: SvhnMat, folder, spec, splits):
    import scipy.io

    for train, (x, y) in splits.items():
        labels = torch.where(y == 0, 10, y).numpy().astype(np.uint8).reshape(-1, 1)
        mat = {"X": np.ascontiguousarray(x.permute(2, 3, 1, 0).numpy()), "y": labels}
        scipy.io.savemat(folder / fmt.split_file(train), mat)
    return _sums(fmt, folder)


@singledispatch
def md5_overrides(fmt: Format, sums: dict[str, str]) -> list[tuple[Any, str, Any]]:
    """``(object, attribute, value)`` settings making torchvision (and cnnlab, which reads the
    same lists) expect ``sums``: how the written copies are trusted."""
    raise NotImplementedError(f"no md5 overrides for {type(fmt).__name__} in tests/support")


@md5_overrides.register
def _(fmt: Idx, sums):
    # IDX files are checked by their headers (the known sums are of the .gz downloads, and
    # Debian's copies are recompressed), so written ones need no sums trusted
    return []


@md5_overrides.register
def _(fmt: CifarBatches, sums):
    c = fmt.tv_class
    return [
        (c, "train_list", [[n, sums[n]] for n, _ in c.train_list]),
        (c, "test_list", [[n, sums[n]] for n, _ in c.test_list]),
        (c, "meta", {**c.meta, "md5": sums[c.meta["filename"]]}),
    ]


@md5_overrides.register
def _(fmt: SvhnMat, sums):
    lists = {
        k: [url, name, sums.get(name, md5)]
        for k, (url, name, md5) in fmt.tv_class.split_list.items()
    }
    return [(fmt.tv_class, "split_list", lists)]
