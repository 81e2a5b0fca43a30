"""Where each dataset's files come from, and how they are checked.

The on-disk layout is torchvision's (``<data_dir>/MNIST/raw/``, ``<data_dir>/FashionMNIST/raw/``,
``<data_dir>/cifar-10-batches-py/``), so a ``data/`` folder is interchangeable with other
torchvision code. ``ensure_dataset`` fills that layout from, in order:

1. ``data_dir`` itself: torchvision's layout, or the files (raw or ``.gz``) dropped anywhere
   a user would plausibly put them (``data_dir/``, ``data_dir/mnist/``...);
2. OS dataset mirrors such as Debian's ``/usr/share/datasets/fashion-mnist/``;
3. torchvision's own download (official URLs, md5-checked, with a progress bar).

Every file is checked before use (IDX header and size, CIFAR md5 as torchvision knows it),
so a truncated download fails with the file's name instead of a numpy stack trace.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import struct
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchvision import datasets as tvd

from cnnlab.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_MIRRORS = ("/usr/share/datasets",)


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset: files, layout, shape, classes, statistics."""

    name: str  # config name: data=<name>
    title: str
    tv_class: type  # torchvision class that reads the files
    folder: str  # torchvision's folder under data_dir holding the files
    fmt: str  # "idx" or "cifar"
    shape: tuple[int, int, int]  # C, H, W
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # of the training split, per channel, in [0, 1] units
    std: tuple[float, ...]
    aliases: tuple[str, ...]  # other folder names users and mirrors use
    train_size: int
    test_size: int
    debian_package: str | None = None
    archive: str | None = None  # a tarball users may drop into data_dir (CIFAR)

    @property
    def files(self) -> tuple[str, ...]:
        """The files torchvision reads, in the form it reads them (uncompressed)."""
        if self.fmt == "idx":
            return tuple(name.removesuffix(".gz") for name, _ in self.tv_class.resources)
        lists = self.tv_class.train_list + self.tv_class.test_list
        return tuple(name for name, _ in lists) + (self.tv_class.meta["filename"],)

    def known_md5(self) -> dict[str, str]:
        """md5 sums torchvision knows for the files in their stored form.

        Read at call time from torchvision's class so there is one source of truth.
        """
        if self.fmt == "idx":
            return {name: md5 for name, md5 in self.tv_class.resources}
        lists = self.tv_class.train_list + self.tv_class.test_list
        sums = {name: md5 for name, md5 in lists}
        sums[self.tv_class.meta["filename"]] = self.tv_class.meta["md5"]
        return sums

    def target_dir(self, data_dir: str | os.PathLike) -> Path:
        return Path(data_dir) / self.folder

    def download_urls(self) -> list[str]:
        if self.fmt == "idx":
            return [m + self.tv_class.resources[0][0] for m in self.tv_class.mirrors]
        return [self.tv_class.url]


_MNIST_CLASSES = tuple(str(d) for d in range(10))

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        tv_class=tvd.MNIST,
        folder="MNIST/raw",
        fmt="idx",
        shape=(1, 28, 28),
        classes=_MNIST_CLASSES,
        mean=(0.1307,),
        std=(0.3081,),
        aliases=("MNIST", "mnist"),
        train_size=60000,
        test_size=10000,
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        tv_class=tvd.FashionMNIST,
        folder="FashionMNIST/raw",
        fmt="idx",
        shape=(1, 28, 28),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mean=(0.2860,),
        std=(0.3530,),
        aliases=("FashionMNIST", "fashion-mnist", "fashion_mnist"),
        train_size=60000,
        test_size=10000,
        debian_package="dataset-fashion-mnist",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        tv_class=tvd.CIFAR10,
        folder="cifar-10-batches-py",
        fmt="cifar",
        shape=(3, 32, 32),
        classes=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        aliases=("cifar-10", "cifar10", "CIFAR10"),
        train_size=50000,
        test_size=10000,
        archive="cifar-10-python.tar.gz",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(
            f"Unknown dataset {name!r}. Valid: {', '.join(sorted(SPECS))} "
            f"(choose one with data=<name>)."
        ) from None


# ----------------------------------------------------------------------------- checks

_IDX_DTYPES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def check_idx(path: Path) -> tuple[int, ...]:
    """Validate an uncompressed IDX file's header against its size; return its dims."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise DataError(
                f"{path} is not an IDX file (bad magic number {head.hex() or 'empty'}). "
                f"Delete it and fetch it again."
            )
        ndim = head[3]
        raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header. Delete it and fetch it again.")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    expected = 4 + 4 * ndim + _IDX_DTYPES[head[2]] * _prod(dims)
    if size != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {'x'.join(map(str, dims))} "
            f"({expected} bytes) but the file has {size} bytes. Delete it and fetch it again."
        )
    return dims


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(spec: DatasetSpec, folder: Path) -> None:
    """Check every file of ``spec`` in ``folder`` (torchvision's layout); raise DataError."""
    if spec.fmt == "idx":
        dims = {name: check_idx(folder / name) for name in spec.files}
        for images, labels in _idx_pairs(spec):
            if dims[images][0] != dims[labels][0]:
                raise DataError(
                    f"{folder / images} holds {dims[images][0]} images but "
                    f"{folder / labels} holds {dims[labels][0]} labels. "
                    f"One of them is from another release; fetch both again."
                )
        return
    sums = spec.known_md5()
    for name in spec.files:
        got = md5sum(folder / name)
        if got != sums[name]:
            raise DataError(
                f"{folder / name} failed its integrity check (md5 {got}, expected "
                f"{sums[name]}): the file is corrupt, truncated or not the official "
                f"{spec.title}. Delete it and fetch it again."
            )


def _idx_pairs(spec: DatasetSpec) -> list[tuple[str, str]]:
    files = spec.files
    return [
        (
            next(f for f in files if f.startswith(p) and "images" in f),
            next(f for f in files if f.startswith(p) and "labels" in f),
        )
        for p in ("train", "t10k")
    ]


# ----------------------------------------------------------------------------- sources


def _find_files(spec: DatasetSpec, folder: Path) -> dict[str, Path] | None:
    """Map each needed file to its raw or gzipped copy in ``folder``; None if any is missing."""
    found = {}
    for name in spec.files:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _describe_missing(spec: DatasetSpec, folder: Path) -> str:
    if not folder.is_dir():
        return f"{folder}: no such directory"
    missing = [
        n for n in spec.files if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()
    ]
    return f"{folder}: missing {', '.join(missing)}"


def _install(spec: DatasetSpec, found: dict[str, Path], target: Path) -> None:
    """Copy (and gunzip) found files into torchvision's layout under ``target``."""
    _ensure_writable(target)
    for name, src in found.items():
        dst = target / name
        if src == dst:
            continue
        tmp = dst.with_suffix(dst.suffix + ".part")
        try:
            if src.suffix == ".gz":
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            else:
                shutil.copyfile(src, tmp)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"{src} could not be read ({e}): it is truncated or corrupt. "
                f"Delete it and fetch it again."
            ) from None
        os.replace(tmp, dst)  # atomic: a crash never leaves a half-written file in place


def _ensure_writable(target: Path) -> None:
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".cnnlab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DataError(
            f"data_dir is not writable: cannot create files in {target} ({e.strerror}). "
            f"Choose another folder with data.data_dir=PATH or CNNLAB_DATA_DIR=PATH."
        ) from None


def _extract_archive(spec: DatasetSpec, data_dir: Path) -> bool:
    """Unpack a CIFAR tarball dropped into data_dir, if there is one."""
    if spec.archive is None:
        return False
    archive = data_dir / spec.archive
    if not archive.is_file():
        return False
    log.info("Extracting %s", archive)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # the "data" filter refuses absolute paths and links out of data_dir (Python >= 3.10.12)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(data_dir, **safe)  # noqa: S202
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(
            f"{archive} could not be extracted ({e}): it is truncated or corrupt. "
            f"Delete it and download it again from {spec.tv_class.url}."
        ) from None
    return True


def _download(spec: DatasetSpec, data_dir: Path) -> None:
    """torchvision's own download: official URLs, md5-checked, with a progress bar."""
    _ensure_writable(data_dir)
    for train in (True, False):
        spec.tv_class(root=str(data_dir), train=train, download=True)


def ensure_dataset(
    name: str,
    data_dir: str | os.PathLike,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    download: bool = True,
) -> Path:
    """Make ``name``'s files present and verified in torchvision's layout under ``data_dir``.

    Returns the folder holding them. Raises DataError naming every place tried and the fix.
    """
    spec = get_spec(name)
    data_dir = Path(data_dir).expanduser()
    target = spec.target_dir(data_dir)
    tried: list[str] = []

    if _find_files(spec, target) is None and _extract_archive(spec, data_dir):
        tried.append(f"{data_dir / spec.archive}: extracted")

    local = [target, data_dir] + [data_dir / a for a in spec.aliases]
    remote = [Path(m) / a for m in mirrors for a in spec.aliases]
    for folder in dict.fromkeys(local + remote):  # ordered, without repeats
        found = _find_files(spec, folder)
        if found is None:
            tried.append(_describe_missing(spec, folder))
            continue
        if folder != target or any(p.suffix == ".gz" for p in found.values()):
            log.info("Preparing %s from %s into %s", spec.title, folder, target)
            _install(spec, found, target)
        verify(spec, target)
        return target

    if download:
        log.info("Downloading %s into %s", spec.title, data_dir)
        try:
            _download(spec, data_dir)
        except DataError:
            raise
        except Exception as e:  # network errors come in many types; report, don't crash
            first = str(e).strip().splitlines()
            tried.append(f"download from {spec.download_urls()[0]}: {first[-1] if first else e}")
        else:
            verify(spec, target)
            return target
    else:
        tried.append("download: disabled (data.download=false)")

    raise DataError(_not_found_message(spec, data_dir, tried))


def _not_found_message(spec: DatasetSpec, data_dir: Path, tried: list[str]) -> str:
    files = ", ".join(f"{f}.gz" if spec.fmt == "idx" else f for f in spec.files)
    fixes = []
    if spec.debian_package:
        fixes.append(
            f"install Debian's package: sudo apt-get install {spec.debian_package} "
            f"(puts the files in /usr/share/datasets/)"
        )
    if spec.archive:
        fixes.append(
            f"put {spec.archive} (from {spec.tv_class.url}) into {data_dir}/, or its "
            f"extracted files ({files}) into {spec.target_dir(data_dir)}/"
        )
    else:
        fixes.append(f"put the four IDX files ({files}) into {spec.target_dir(data_dir)}/")
    fixes.append("or run once with internet access (data.download=true, or `make data`)")
    lines = [f"{spec.title} not found. Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("Fix: " + "\n     ".join(fixes))
    return "\n".join(lines)
