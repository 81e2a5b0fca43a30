"""Your own images: ``python train.py data=folder data.root=PATH``.

``PATH`` holds one sub-folder per class (``PATH/cat/*.jpg``, ``PATH/dog/*.png``), or
``train/`` and ``test/`` folders laid out that way, as torchvision's ImageFolder expects.
Without a ``test/`` folder a seeded test split is carved off (``data.test_size``), before
the validation split is (``data.val_size``). Images of any size and colour mode are
resized to ``data.image_size`` with ``data.channels`` 3 (RGB) or 1 (grayscale) and held in
memory as uint8 like the built-in datasets, so augmentation, the in-memory batches and
everything downstream work unchanged. Normalisation uses the mean and std of the training
split (computed in ``setup``; the checkpoint stores them for prediction), unless
``data.normalize`` chooses fixed constants (``half``, ``none``).

The class folders are listed when the DataModule is built (the model needs the class
count before any image is read); images are decoded in ``setup``, once: the decoded tensor
is cached under ``data_dir/folder-cache/`` (``data.cache=false`` to skip), named by a hash
of every file's content, in order, and the image size, so any change to any byte re-decodes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.images import image_to_uint8
from cnnlab.data.specs import DatasetSpec
from cnnlab.data.splits import holdout, split_count
from cnnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# what torchvision's ImageFolder accepts, plus GIF
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)

LAYOUT_HINT = (
    "data.root must hold one sub-folder of images per class (ROOT/cat/1.jpg, ROOT/dog/2.png), "
    "or train/ and test/ folders laid out that way"
)


@dataclass(frozen=True)
class FolderLayout:
    """The image files under a root, by class; ``test`` is None when the root has no test/."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...] | None


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _images_of(folder: Path, claimed: dict[tuple[int, int], Path]) -> list[Path]:
    """The image files under ``folder``, each real file once (``claimed``: the real files
    (device, inode) already listed under another class folder, and where).

    Sub-folders and linked folders are walked, except a folder already walked (two links to
    one folder) and a folder the walk is inside of (a link back up: followed, it would list
    the same files again at every level, without end). A link to a file counts as the file
    it leads to; a link to nothing is an error naming it.
    """
    found: list[Path] = []
    walked = {_key(folder.stat())}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        inside = here.resolve()
        keep = []
        for d in sorted(n for n in dirnames if not n.startswith(".")):
            key = _key((here / d).stat())
            if key in walked or inside.is_relative_to((here / d).resolve()):
                log.warning("Not walking %s again: it leads to a folder already walked", here / d)
                continue
            walked.add(key)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(f for f in filenames if _is_image(Path(f))):
            path = here / name
            try:
                key = _key(path.stat())
            except OSError as e:  # a dangling link (or a loop of file links)
                target = os.readlink(path) if path.is_symlink() else path
                raise DataError(
                    f"{path} is a link to {target}, which cannot be opened ({e.strerror}). "
                    f"Remove the link or restore what it points to."
                ) from None
            first = claimed.setdefault(key, path)
            if first == path:
                found.append(path)
            elif not first.is_relative_to(folder):
                raise DataError(
                    f"{path} is the same file as {first}, in another class: an image belongs to "
                    f"one class. Remove one of them."
                )
    return found


def _check_classes(classes: Any, subset: Any) -> tuple[str, ...] | None:
    if not isinstance(subset, bool):
        raise ConfigError(f"data.classes_subset={subset!r} must be true or false.")
    if classes is None:
        return None
    is_list = isinstance(classes, Sequence) and not isinstance(classes, str)  # a ListConfig too
    names = tuple(classes) if is_list else ()
    if (
        not names
        or not all(isinstance(c, str) and c for c in names)
        or len(set(names)) < len(names)
    ):
        raise ConfigError(
            f"data.classes={classes!r} must be a list of distinct class names, in label order "
            f"(e.g. data.classes=[cat,dog]), or null for the folder names."
        )
    return names


def _match_classes(base: Path, found: list[str], classes: tuple[str, ...], subset: bool) -> None:
    """Class folders are matched to the model's classes by name, never by position."""
    unknown = [c for c in found if c not in classes]
    missing = [c for c in classes if c not in found]
    if unknown or (missing and not subset):
        why = "; ".join(
            f"{what} {', '.join(names)}"
            for what, names in (("unknown", unknown), ("missing", missing))
            if names
        )
        raise DataError(
            f"{base} has class folders {', '.join(found)} but the model's classes "
            f"(data.classes) are {', '.join(classes)} ({why}). Name the class folders as the "
            f"model's classes; data.classes_subset=true accepts folders for some of them only."
        )


def scan_folder(
    root: str | os.PathLike, classes: tuple[str, ...] | None = None, subset: bool = False
) -> FolderLayout:
    """List classes and image files (cheap: no image is opened); DataError on a bad layout.

    ``classes``: the class names in label order (a trained model's), which the class folders
    are matched to by name; ``subset`` lets some of them have no folder. None: the folder
    names, sorted.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data.root={str(root)!r} does not exist. {LAYOUT_HINT}.")
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is a file, not a folder. {LAYOUT_HINT}.")
    train_dir, test_dir = root / "train", root / "test"
    if test_dir.is_dir() and not train_dir.is_dir():
        raise DataError(f"{root} has a test/ folder but no train/ folder beside it. {LAYOUT_HINT}.")
    base = train_dir if train_dir.is_dir() else root
    class_dirs = _class_dirs(base)
    if len(class_dirs) < 2:
        loose = sum(1 for p in base.iterdir() if p.is_file() and _is_image(p))
        found = f"{len(class_dirs)} class sub-folder(s) and {loose} loose image(s)"
        raise DataError(
            f"{base} holds {found}; a classifier needs at least two classes. {LAYOUT_HINT}."
        )
    if classes is None:
        classes = tuple(d.name for d in class_dirs)
    else:
        _match_classes(base, [d.name for d in class_dirs], classes, subset)
    index = {name: i for i, name in enumerate(classes)}
    train, claimed = [], {}
    for d in class_dirs:
        images = _images_of(d, claimed)
        if not images:
            raise DataError(
                f"class folder {d} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                f"Add images to it or remove it."
            )
        train += [(p, index[d.name]) for p in images]
    train.sort(key=lambda item: item[1])  # label order (the model's, when given)
    test = None
    if test_dir.is_dir() and base == train_dir:
        test, claimed = [], {}
        for d in _class_dirs(test_dir):
            if d.name not in index:
                raise DataError(
                    f"{d} is a class that {train_dir} lacks ({', '.join(classes)}). "
                    f"Give train/ and test/ the same class folders."
                )
            test += [(p, index[d.name]) for p in _images_of(d, claimed)]
        test.sort(key=lambda item: item[1])
        if not test:
            raise DataError(
                f"{test_dir} holds no images. Add some, or remove it to carve a test split."
            )
        test = tuple(test)
    return FolderLayout(root, classes, tuple(train), test)


def _digests(paths: list[Path]) -> list[bytes]:
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                out.append(hashlib.file_digest(f, "sha256").digest())
        except OSError as e:
            raise DataError(
                f"{path} cannot be read ({e.strerror}). Delete or replace it."
            ) from None
    return out


def content_digests(paths: list[Path]) -> list[bytes]:
    """The SHA-256 of each file's bytes, in order (SHA-256: the fastest secure hash where the
    CPU has SHA instructions, measured 600 MB/s against BLAKE2b's 310). A few threads, each
    over a share of the files: file reads and hashlib release the GIL."""
    workers = max(1, min(4, os.cpu_count() or 1, len(paths) // 64))
    shares = [paths[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(_digests, shares))
    out = [b""] * len(paths)
    for i, share in enumerate(done):
        out[i::workers] = share
    return out


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """One image file -> uint8 (C, size, size); DataError naming the file if it cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return image_to_uint8(img, channels, (size, size))
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        raise DataError(
            f"{path} cannot be read as an image ({type(e).__name__}: {e}). Delete or replace it."
        ) from None


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in [0, 1] units."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(4096):  # float64 a chunk at a time, never a float copy of all
        x = chunk.to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() // c
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


class FolderDataModule(ImageDataModule):
    """``ImageDataModule`` over a folder of class sub-folders (``data=folder``)."""

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        channels: int = 3,
        test_size: int | float = 0.2,
        cache: bool = True,
        classes: list[str] | None = None,
        classes_subset: bool = False,
        name: str = "folder",
        **kwargs: Any,
    ):
        if root is None or str(root).strip() in ("", "???"):
            raise ConfigError(
                f"data=folder needs the images' folder: data.root=PATH ({LAYOUT_HINT})."
            )
        try:  # the path is written into text files (summary, metrics.json): UTF-8 only
            str(root).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"data.root={os.fsencode(str(root))!r} is not UTF-8 text, and cnnlab writes the "
                f"data's path into UTF-8 text files (the model summary, metrics.json). Rename "
                f"the folder, or link to it under a UTF-8 name (ln -s PATH photos; "
                f"data.root=photos)."
            ) from None
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise ConfigError(
                f"data.image_size={image_size!r} must be a positive integer (e.g. 32)."
            )
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"data.channels={channels!r} must be 3 (RGB) or 1 (grayscale).")
        self.layout = scan_folder(root, _check_classes(classes, classes_subset), classes_subset)
        self.image_size, self.channels = image_size, channels
        self.test_size, self.cache = test_size, cache
        self.n_test = (
            len(self.layout.test)
            if self.layout.test is not None
            else split_count(
                "data.test_size", test_size, len(self.layout.train), str(self.layout.root)
            )
        )
        super().__init__(name, **kwargs)

    def _make_spec(self, name: str) -> DatasetSpec:
        n_pool = len(self.layout.train) - (0 if self.layout.test is not None else self.n_test)
        return DatasetSpec(
            name="folder",
            title=f"images in {self.layout.root}",
            format=None,  # read by this class, not by a built-in format
            shape=(self.channels, self.image_size, self.image_size),
            classes=self.layout.classes,
            mean=None,  # computed from the training split in setup
            std=None,
            train_size=n_pool,
            test_size=self.n_test,
        )

    def prepare_data(self) -> None:
        """Nothing to fetch: the folder was listed when this DataModule was built."""

    def _cache_path(self, files: tuple[tuple[Path, int], ...]) -> Path:
        """Named by everything the decoded tensor depends on: the content of each file, in
        order, the image size and channels. Content, not size and modification time: an edit
        that keeps the size and restores the time (os.utime, a copy with ``cp -p``) would
        otherwise serve the old pixels."""
        h = hashlib.sha256(f"v2 {self.image_size} {self.channels}".encode())
        for digest in content_digests([path for path, _ in files]):
            h.update(digest)
        return Path(self.data_dir).expanduser() / "folder-cache" / f"{h.hexdigest()[:20]}.pt"

    def _decode(self, files: tuple[tuple[Path, int], ...]) -> torch.Tensor:
        """Every image of ``files`` as one uint8 tensor; from the cache when it is current."""
        shape = (len(files), *self.spec.shape)
        cache = self._cache_path(files) if self.cache else None
        if cache is not None and cache.is_file():
            try:
                images = torch.load(cache, map_location="cpu", weights_only=True)["images"]
                if images.dtype == torch.uint8 and tuple(images.shape) == shape:
                    log.info("Read %d decoded images from %s", len(files), cache)
                    return images
            except Exception as e:  # a damaged cache is rebuilt, never trusted
                log.warning("Ignoring the unreadable image cache %s (%s)", cache, e)
        log.info("Decoding %d images under %s", len(files), self.layout.root)
        images = torch.empty(shape, dtype=torch.uint8)
        for i, (path, _) in enumerate(files):
            images[i] = read_image(path, self.channels, self.image_size)
        if cache is not None:
            self._write_cache(cache, images)
        return images

    @staticmethod
    def _write_cache(cache: Path, images: torch.Tensor) -> None:
        """Atomically (temp name + rename), so a run beside this one never reads half a file."""
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".part", dir=cache.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save({"images": images}, f)
            os.replace(tmp, cache)
        except OSError as e:  # a cache is an optimisation: a read-only data_dir just goes without
            log.warning("Could not write the image cache %s (%s)", cache, e.strerror)

    def read_splits(self):
        files = self.layout.train + (self.layout.test or ())
        images = self._decode(files)
        labels = torch.tensor([label for _, label in files], dtype=torch.long)
        n = len(self.layout.train)
        train_x, train_y = images[:n], labels[:n]
        if self.layout.test is not None:
            test_x, test_y = images[n:], labels[n:]
        else:
            # seeded by split_seed like the validation split, but from its own stream
            kept, held = holdout(len(train_x), self.n_test, self.split_seed + 1_000_003)
            train_idx, test_idx = kept.sort().values, held.sort().values
            test_x, test_y = train_x[test_idx], train_y[test_idx]
            train_x, train_y = train_x[train_idx], train_y[train_idx]
        # the statistics of the whole training split, as the built-in datasets' published
        # values are (the validation split is carved from it afterwards)
        if self.normalize_mode == "dataset":
            self.mean, self.std = channel_stats(train_x)
        return train_x, train_y, test_x, test_y
