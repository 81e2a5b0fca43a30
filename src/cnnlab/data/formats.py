"""On-disk formats of the built-in datasets: their files, checks and readers.

A format knows, for the datasets stored that way: which files make a copy (read from
torchvision's class attributes, so torchvision's md5 sums stay the one source of truth),
how to check them, how to read a split into ``(uint8 images N x C x H x W, int64 labels)``
and how to fetch them with torchvision's own download. A new dataset in an existing format
is one ``DatasetSpec`` entry; a new format is one class here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from cnnlab.errors import DataError

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 N x C x H x W images, int64 labels


class DatasetFacts(Protocol):
    """What a format reads of a dataset's spec (``cnnlab.data.specs.DatasetSpec`` has it all):
    formats need no more, and the specs module, which builds each spec from a format, stays the
    one that imports the other."""

    @property
    def title(self) -> str: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def classes(self) -> tuple[str, ...]: ...


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_labels(labels: torch.Tensor, num_classes: int, path: Path) -> torch.Tensor:
    """Labels outside ``[0, num_classes)`` would surface as an IndexError deep in training."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise DataError(
            f"{path} holds label {int(bad[0])}, outside the dataset's {num_classes} classes "
            f"(0..{num_classes - 1}): it is corrupt or from another dataset. Fetch it again."
        )
    return labels


@dataclass(frozen=True)
class Format(ABC):
    """Files of one dataset in torchvision's layout under ``data_dir / folder``."""

    tv_class: type  # the torchvision class that knows the files, sums and URLs
    folder: str  # torchvision's folder under data_dir holding the files

    compressed_ok = False  # whether ``<name>.gz`` copies may stand in for the files
    archive: str | None = None  # a tarball users may drop into data_dir

    @property
    @abstractmethod
    def files(self) -> tuple[str, ...]:
        """The files the reader needs, in the form it reads them (uncompressed)."""

    @abstractmethod
    def known_md5(self) -> dict[str, str]:
        """md5 sums torchvision knows for the files in their stored (downloaded) form."""

    @abstractmethod
    def check(self, folder: Path, spec: DatasetFacts) -> None:
        """Raise DataError naming the first file in ``folder`` that is not a sound copy."""

    @abstractmethod
    def read(self, folder: Path, spec: DatasetFacts, train: bool) -> Split:
        """The official train or test split of checked files."""

    @abstractmethod
    def download(self, data_dir: Path) -> None:
        """torchvision's own download: official URLs, md5-checked, with a progress bar."""

    @abstractmethod
    def download_url(self) -> str: ...

    def torchvision_dataset(self, data_dir: Path, train: bool, transform=None):
        """torchvision's per-sample dataset over the same files (the benchmark's baseline)."""
        return self.tv_class(root=str(data_dir), train=train, download=False, transform=transform)

    @abstractmethod
    def how_to_get(self, data_dir: Path) -> str:
        """One line for the not-found message: which files to put where (and their source)."""


# ----------------------------------------------------------------------------- IDX (MNIST family)

_IDX_ITEM_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
_IDX_UBYTE = 0x08


def check_idx(path: Path, dims: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Validate an uncompressed IDX file: magic number, header, size, and (if given) its
    per-item dims, such as (28, 28) for MNIST images; return all its dims."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_ITEM_SIZES:
            raise DataError(
                f"{path} is not an IDX file (bad magic number {head.hex() or 'empty'}). "
                f"Delete it and fetch it again."
            )
        ndim = head[3]
        raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header. Delete it and fetch it again.")
    found = struct.unpack(f">{ndim}I", raw_dims)
    shape = "x".join(map(str, found))
    expected = 4 + 4 * ndim + _IDX_ITEM_SIZES[head[2]] * int(np.prod(found, dtype=np.int64))
    if size < expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes) but the "
            f"file has {size} bytes. Delete it and fetch it again."
        )
    if size > expected:
        raise DataError(
            f"{path} is corrupt: header says {shape} ({expected} bytes) but the file has "
            f"{size} bytes, {size - expected} more than its header accounts for. "
            f"Delete it and fetch it again."
        )
    if dims is not None and (head[2] != _IDX_UBYTE or tuple(found[1:]) != tuple(dims)):
        want = "x".join(map(str, ("N", *dims)))
        raise DataError(
            f"{path} holds {shape} items of type 0x{head[2]:02x}, not the {want} unsigned "
            f"bytes this dataset has: it is from another dataset. Fetch the right file."
        )
    return found


def read_idx(path: Path) -> np.ndarray:
    dims = check_idx(path)
    offset = 4 + 4 * len(dims)
    return np.fromfile(path, dtype=np.uint8, offset=offset).reshape(dims)


@dataclass(frozen=True)
class Idx(Format):
    """MNIST's format: four IDX files (images and labels, train and t10k), gzipped upstream."""

    compressed_ok = True

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name.removesuffix(".gz") for name, _ in self.tv_class.resources)

    def known_md5(self) -> dict[str, str]:
        return dict(self.tv_class.resources)

    def split_files(self, train: bool) -> tuple[str, str]:
        prefix = "train" if train else "t10k"
        images = next(f for f in self.files if f.startswith(prefix) and "images" in f)
        labels = next(f for f in self.files if f.startswith(prefix) and "labels" in f)
        return images, labels

    def check(self, folder, spec):
        for train in (True, False):
            images, labels = self.split_files(train)
            n_images = check_idx(folder / images, spec.shape[1:])[0]
            n_labels = check_idx(folder / labels, ())[0]
            if n_images != n_labels:
                raise DataError(
                    f"{folder / images} holds {n_images} images but {folder / labels} holds "
                    f"{n_labels} labels. One of them is from another release; fetch both again."
                )

    def read(self, folder, spec, train):
        images, labels = self.split_files(train)
        x = torch.from_numpy(read_idx(folder / images)).unsqueeze(1)
        y = torch.from_numpy(read_idx(folder / labels).astype(np.int64))
        return x, check_labels(y, len(spec.classes), folder / labels)

    def download(self, data_dir):
        for train in (True, False):
            self.tv_class(root=str(data_dir), train=train, download=True)

    def download_url(self):
        return self.tv_class.mirrors[0] + self.tv_class.resources[0][0]

    def how_to_get(self, data_dir):
        gz = ", ".join(f"{f}.gz" for f in self.files)
        return f"put the four IDX files ({gz}) into {data_dir / self.folder}/"


# ----------------------------------------------------------------------------- CIFAR python batches


@dataclass(frozen=True)
class CifarBatches(Format):
    """CIFAR's python pickles: five training batches, a test batch and batches.meta."""

    archive: str | None = None

    @property
    def files(self):
        lists = self.tv_class.train_list + self.tv_class.test_list
        return tuple(name for name, _ in lists) + (self.tv_class.meta["filename"],)

    def known_md5(self):
        sums = dict(self.tv_class.train_list + self.tv_class.test_list)
        sums[self.tv_class.meta["filename"]] = self.tv_class.meta["md5"]
        return sums

    def check(self, folder, spec):
        check_md5(self, folder, spec)

    def read(self, folder, spec, train):
        names = [n for n, _ in (self.tv_class.train_list if train else self.tv_class.test_list)]
        xs, ys = [], []
        for name in names:
            x, y = cifar_batch(folder / name, spec.shape)
            xs.append(x)
            ys.append(check_labels(y, len(spec.classes), folder / name))
        return torch.cat(xs), torch.cat(ys)

    def download(self, data_dir):
        for train in (True, False):
            self.tv_class(root=str(data_dir), train=train, download=True)

    def download_url(self):
        return self.tv_class.url

    def how_to_get(self, data_dir):
        return (
            f"put {self.archive} (from {self.tv_class.url}) into {data_dir}/, or its "
            f"extracted files ({', '.join(self.files)}) into {data_dir / self.folder}/"
        )


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3's protocol-2 pickles call it for ``bytes`` (the raw bytes
    of a numpy array re-pickled by Python 3): to latin-1 only, no other codec is looked up."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode to {encoding!r}")
    return text.encode("latin1")


class CifarUnpickler(pickle.Unpickler):
    """Reads CIFAR's python batches without ever building anything they name but plain data.

    A pickle may call any importable function while it is read, so a crafted batch could run
    code the moment training starts. The real batches hold only dicts, lists, strings, ints
    and a uint8 numpy array; rebuilding that array is all they ever ask for (numpy's
    ``_reconstruct``, ``ndarray`` and ``dtype``; Python 3's protocol-2 re-pickles add
    ``_codecs.encode`` to latin-1 for its bytes). Any other global is refused before it is
    imported, so nothing outside this table is ever called.
    """

    ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1's (and Python 2's)
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name}") from None


def cifar_batch(path: Path, shape: tuple[int, int, int]) -> Split:
    """One CIFAR python batch: its images (N, C, H, W) and labels; DataError naming the file
    if it is not one, and before anything it names is built if it would build other objects."""
    try:
        with open(path, "rb") as f:
            # latin1: the real batches are Python 2 pickles, their image bytes str objects
            entry = CifarUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{path} is refused: it names {str(e).removeprefix('global ')}, which a CIFAR "
            f"batch never does (only dicts, lists, strings, ints and a uint8 array), and "
            f"unpickling it could run code. Delete it and fetch the official file again."
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as e:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}). "
            f"Delete it and fetch it again."
        ) from None
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
    size = int(np.prod(shape))
    if not (
        type(data) is np.ndarray
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == size
        and isinstance(labels, list)
        and len(labels) == len(data)
        and all(type(v) is int for v in labels)
    ):
        raise DataError(
            f"{path} is not a CIFAR batch: it lacks 'data' (N x {size} uint8) with as many "
            f"integer 'labels'. Delete it and fetch the official file again."
        )
    x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *shape))
    return x, torch.tensor(labels, dtype=torch.long)


# md5 sums already checked are remembered, so CIFAR-10's 170 MB are not hashed on every start
# (~0.4 s). The record lives in cnnlab's own per-user cache, never in the data folder (a folder
# could carry a forged one), and is keyed by what no file's content can change under: its
# inode and its change time (ctime), which every write moves to now and no program can set
# back (os.utime restores the modification time only). A file replaced, edited or touched
# since is hashed again.
CACHE_DIR_ENV = "CNNLAB_CACHE_DIR"


def cache_dir() -> Path:
    """cnnlab's per-user cache: ``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``, else
    ``~/.cache/cnnlab``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def _record_path(folder: Path) -> Path:
    key = hashlib.sha256(os.fsencode(folder.resolve())).hexdigest()[:24]
    return cache_dir() / "verified" / f"{key}.json"


def _verified(folder: Path) -> dict[str, list]:
    """The files of ``folder`` whose sums were checked; a missing or malformed record is empty."""
    try:
        record = json.loads(_record_path(folder).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("folder") != os.fsdecode(folder.resolve()):
        return {}
    files = record.get("files")
    return files if isinstance(files, dict) else {}


def _stamp(path: Path) -> list:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def check_md5(fmt: Format, folder: Path, spec: DatasetFacts) -> None:
    sums = fmt.known_md5()
    cache, checked = _verified(folder), {}
    for name in fmt.files:
        stamp = _stamp(folder / name)
        if cache.get(name) == [*stamp, sums[name]]:  # the same file, unwritten since its check
            checked[name] = cache[name]
            continue
        got = md5sum(folder / name)
        if got != sums[name]:
            raise DataError(
                f"{folder / name} failed its integrity check (md5 {got}, expected "
                f"{sums[name]}): the file is corrupt, truncated or not the official "
                f"{spec.title}. Delete it and fetch it again."
            )
        checked[name] = [*stamp, got]
    if checked != cache:
        record = {"folder": os.fsdecode(folder.resolve()), "files": checked}
        with contextlib.suppress(OSError):  # without a writable cache, files are hashed again
            path = _record_path(folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            tmp.write_text(json.dumps(record))
            tmp.replace(path)


# ----------------------------------------------------------------------------- SVHN .mat files


@dataclass(frozen=True)
class SvhnMat(Format):
    """SVHN's MATLAB files: ``X`` (H, W, C, N) uint8 and ``y`` (N, 1) with 10 meaning digit 0."""

    splits: tuple[str, str] = ("train", "test")

    def split_file(self, train: bool) -> str:
        return self.tv_class.split_list[self.splits[0 if train else 1]][1]

    @property
    def files(self):
        return tuple(self.split_file(t) for t in (True, False))

    def known_md5(self):
        return {self.tv_class.split_list[s][1]: self.tv_class.split_list[s][2] for s in self.splits}

    def check(self, folder, spec):
        check_md5(self, folder, spec)

    def read(self, folder, spec, train):
        import scipy.io  # torchvision's SVHN reads it the same way

        path = folder / self.split_file(train)
        try:
            # loadmat parses; it never unpickles or calls anything a file names. Only the two
            # arrays are read, and MATLAB objects, functions, structs and cells (object arrays
            # or their subclasses) are refused below, never handed on
            mat = scipy.io.loadmat(path, variable_names=("X", "y"))
            for key in ("X", "y"):
                value = mat[key]
                if type(value) is not np.ndarray or value.dtype.kind not in "uif":
                    raise TypeError(f"its {key} is a {type(value).__name__} of {value.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))
            y = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1))
        # what scipy raises depends on where a damaged file stops making sense (measured:
        # empty MatReadError, a cut header IndexError, garbled data TypeError, cut data
        # OSError; a MATLAB 7.3 (HDF5) file NotImplementedError)
        except (
            ValueError,
            KeyError,
            OSError,
            IndexError,
            TypeError,
            NotImplementedError,
            scipy.io.matlab.MatReadError,
        ) as e:
            raise DataError(
                f"{path} is not a readable SVHN .mat file ({e}). Fetch it again."
            ) from None
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != spec.shape or len(x) != len(y):
            raise DataError(
                f"{path} holds {len(x)} images of {tuple(x.shape[1:])} {x.dtype} and {len(y)} "
                f"labels, not {spec.title}'s {spec.shape} uint8 images. Fetch it again."
            )
        y = torch.where(y == 10, 0, y)  # SVHN's label 10 is the digit 0
        return x.contiguous(), check_labels(y, len(spec.classes), path)

    def download(self, data_dir):
        for split in self.splits:
            self.tv_class(root=str(data_dir / self.folder), split=split, download=True)

    def download_url(self):
        return self.tv_class.split_list[self.splits[0]][0]

    def torchvision_dataset(self, data_dir, train, transform=None):
        split = self.splits[0 if train else 1]
        return self.tv_class(root=str(data_dir / self.folder), split=split, transform=transform)

    def how_to_get(self, data_dir):
        urls = " and ".join(self.tv_class.split_list[s][0] for s in self.splits)
        return f"put {' and '.join(self.files)} (from {urls}) into {data_dir / self.folder}/"
