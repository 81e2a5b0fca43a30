"""What each built-in dataset is: its format, shape, classes and normalisation.

Adding a dataset is one entry in ``SPECS`` (its ``format`` says how its files are stored,
see ``formats.py``) plus ``conf/data/<name>.yaml``. ``normalize`` lives here too, with the
statistics it uses, so code that prepares a single image needs no DataModule.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets as tvd

from cnnlab.data.formats import CifarBatches, Format, Idx, Split, SvhnMat
from cnnlab.errors import ConfigError, DataError
from cnnlab.photo import Framing


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset: files, shape, classes, statistics."""

    name: str  # config name: data=<name>
    title: str
    format: Format  # how and where its files are stored
    shape: tuple[int, int, int]  # C, H, W
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # of the training split, per channel, in [0, 1] units
    std: tuple[float, ...]
    train_size: int
    test_size: int
    aliases: tuple[str, ...] = ()  # other folder names users and mirrors use
    debian_package: str | None = None
    # light objects on black, cropped and centred: how a photo must be framed to look like
    # one (None: natural images, only resized)
    framing: Framing | None = None
    # whether a mirror image shows the same class (test_tta=flip); not for digits: a
    # mirrored 2, 3, 4, 5, 7 or 9 is no digit at all
    hflip_keeps_label: bool = True

    @property
    def files(self) -> tuple[str, ...]:
        return self.format.files

    def target_dir(self, data_dir: str | os.PathLike) -> Path:
        return Path(data_dir) / self.format.folder

    def read(self, data_dir: str | os.PathLike, train: bool) -> Split:
        """The official train or test split: uint8 images (N, C, H, W), int64 labels."""
        return self.format.read(self.target_dir(data_dir), self, train)


_DIGITS = tuple(str(d) for d in range(10))

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        format=Idx(tvd.MNIST, "MNIST/raw"),
        shape=(1, 28, 28),
        classes=_DIGITS,
        mean=(0.1307,),
        std=(0.3081,),
        train_size=60000,
        test_size=10000,
        aliases=("MNIST", "mnist"),
        framing=Framing(box=20, centre="mass"),  # LeCun: 20x20 box, centre of mass at the centre
        hflip_keeps_label=False,
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        format=Idx(tvd.FashionMNIST, "FashionMNIST/raw"),
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
        train_size=60000,
        test_size=10000,
        aliases=("FashionMNIST", "fashion-mnist", "fashion_mnist"),
        debian_package="dataset-fashion-mnist",
        framing=Framing(box=28, centre="box"),  # Zalando: longest side 28, box centred
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        format=CifarBatches(tvd.CIFAR10, "cifar-10-batches-py", archive="cifar-10-python.tar.gz"),
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
        train_size=50000,
        test_size=10000,
        aliases=("cifar-10", "cifar10", "CIFAR10"),
    ),
    "svhn": DatasetSpec(
        name="svhn",
        title="SVHN",
        format=SvhnMat(tvd.SVHN, "svhn"),
        shape=(3, 32, 32),
        classes=_DIGITS,  # the .mat files label the digit 0 as 10; the reader maps it to 0
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        train_size=73257,
        test_size=26032,
        aliases=("svhn", "SVHN"),
        hflip_keeps_label=False,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(
            f"Unknown dataset {name!r}. Valid: {', '.join(sorted(SPECS))} "
            f"(choose one with data=<name>, or data=folder data.root=PATH for your own images)."
        ) from None


# data.normalize: which per-channel (mean, std) inputs are normalised with
NORMALIZE_MODES = {
    "dataset": "the dataset's own mean and std",
    "half": "mean 0.5, std 0.5 per channel: inputs in [-1, 1], as in the course's deck 001",
    "none": "mean 0, std 1: inputs stay in [0, 1]",
}


def normalization_stats(
    mode: str, dataset_stats: tuple[tuple[float, ...], tuple[float, ...]] | None, channels: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The (mean, std) that ``data.normalize=mode`` gives images of ``channels`` channels.

    ``dataset_stats``: the dataset's own (mean, std), or None where they are only known once
    the images are read (a folder's); ``dataset`` then gives (None, None) until they are.
    """
    if mode not in NORMALIZE_MODES:
        raise ConfigError(
            f"Unknown data.normalize={mode!r}. Valid: "
            + "; ".join(f"{k} ({v})" for k, v in NORMALIZE_MODES.items())
            + ". E.g. data.normalize=half."
        )
    if mode == "half":
        return (0.5,) * channels, (0.5,) * channels
    if mode == "none":
        return (0.0,) * channels, (1.0,) * channels
    return dataset_stats if dataset_stats is not None else (None, None)


def given_stats(mean, std, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``data.mean`` and ``data.std`` as given: ``channels`` finite means and positive stds."""
    try:
        m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        m = s = ()
    if not (len(m) == len(s) == channels) or not all(
        math.isfinite(v) and (i >= channels or v > 0) for i, v in enumerate(s + m)
    ):
        raise ConfigError(
            f"data.mean={mean!r} data.std={std!r} must be {channels} numbers each (one per "
            f"channel), the stds positive (e.g. data.mean=[0.5] data.std=[0.25]), or both null."
        )
    return m, s


def check_image_size(size) -> int | None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(
            f"data.image_size={size!r} must be a positive integer (e.g. data.image_size=224), "
            f"or null for the images' own size."
        )
    return size


@functools.lru_cache(maxsize=16)
def _normalization(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, -shift) on ``device``, with (x / 255 - mean) / std == x * scale - shift.

    Cached: normalisation runs on every batch, and building these tensors (and copying them
    to a GPU) each time would put host work and a transfer on the hot path.
    """
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (1.0 / (255.0 * s)).to(device), (-m / s).to(device)


def normalization_constants(mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, -shift) of ``normalize``, (1, C, 1, 1) on the CPU: for a module to hold."""
    scale, neg_shift = _normalization(tuple(map(float, mean)), tuple(map(float, std)), "cpu")
    return scale.clone(), neg_shift.clone()  # the cached tensors stay untouched


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> (x / 255 - mean) / std per channel, as float32 on x's device."""
    scale, neg_shift = _normalization(tuple(map(float, mean)), tuple(map(float, std)), x.device)
    return torch.addcmul(neg_shift, x.float(), scale)  # one fused multiply-add
