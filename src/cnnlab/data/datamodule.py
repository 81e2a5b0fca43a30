"""One LightningDataModule for every dataset cnnlab knows (``data=mnist|fashion_mnist|cifar10``)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cnnlab.data.batch_augment import BatchAugmentation
from cnnlab.data.memory import BatchIndexSampler, ResumableLoader, TensorImageDataset, load_split
from cnnlab.data.sources import DEFAULT_MIRRORS, DatasetSpec, ensure_dataset, get_spec
from cnnlab.errors import ConfigError

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _normalization(spec: DatasetSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, -shift) on ``device``, with (x / 255 - mean) / std == x * scale - shift.

    Cached: normalisation runs on every batch, and building these tensors (and copying them
    to a GPU) each time would put host work and a transfer on the hot path.
    """
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (1.0 / (255.0 * std)).to(device), (-mean / std).to(device)


def normalize(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 images (N, C, H, W) of ``spec``'s dataset -> the float input its models expect."""
    scale, neg_shift = _normalization(spec, x.device)
    return torch.addcmul(neg_shift, x.float(), scale)  # one fused multiply-add


class ImageDataModule(pl.LightningDataModule):
    """Official train/test split, a seeded validation split, per-dataset normalisation.

    Batches leave the loaders as uint8 and are normalised on the device they train on,
    so the host never holds a float copy of the data.
    """

    def __init__(
        self,
        name: str,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int | None = None,
        download: bool = True,
        mirrors: Sequence[str] = DEFAULT_MIRRORS,
        aug: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        resident: bool = False,
        shuffle: bool = True,
    ):
        super().__init__()
        self.spec = get_spec(name)
        for key, value in (
            ("data.batch_size", batch_size),
            ("data.eval_batch_size", eval_batch_size),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive integer (e.g. {key}=128).")
        if not isinstance(val_size, int) or not 1 <= val_size < self.spec.train_size:
            raise ConfigError(
                f"data.val_size={val_size!r} must be an integer in [1, {self.spec.train_size}) "
                f"for {self.spec.title} (its training split has {self.spec.train_size} images)."
            )
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.seed = val_size, split_seed, seed
        self.download, self.mirrors = download, tuple(mirrors)
        self.aug = dict(aug) if aug else {}
        self.transform = None  # set in setup(): albumentations pipeline for training
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        # GPU-resident path: the whole split on the training device, augmented there in batches
        self.resident = resident
        self.shuffle = shuffle  # false: the same batches every epoch (debug=overfit)
        if resident and self.aug:  # what the device cannot do is refused now, not in setup()
            BatchAugmentation.from_config(self.aug)
        self._prepared = False
        self.batch_aug = None
        self.train_set = self.val_set = self.test_set = None

    # -- facts the model needs ---------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.shape

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    # -- data ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # called by train() up front and again by Lightning in fit and test: verify once
        if not self._prepared:
            ensure_dataset(self.spec.name, self.data_dir, self.mirrors, self.download)
            self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_x, train_y = load_split(self.spec, self.data_dir, train=True)
        test_x, test_y = load_split(self.spec, self.data_dir, train=False)
        n = len(train_x)
        if self.val_size >= n:
            raise ConfigError(
                f"data.val_size={self.val_size} leaves no training images "
                f"({n} in {self.data_dir}); lower it."
            )
        # the validation split depends on split_seed only, never on the run's seed, so every
        # run of a sweep is validated on the same images
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        if self.resident:
            device = (
                self.trainer.strategy.root_device
                if self.trainer is not None
                else torch.device("cpu")
            )
            train_x, train_y, test_x, test_y, perm = (
                t.to(device) for t in (train_x, train_y, test_x, test_y, perm)
            )
            self.batch_aug = (
                BatchAugmentation.from_config(self.aug, self.seed) if self.aug else None
            )
        else:
            self.transform = self._build_transform()
        self.train_set = TensorImageDataset(train_x, train_y, perm[self.val_size :], self.transform)
        self.val_set = TensorImageDataset(train_x, train_y, perm[: self.val_size])
        self.test_set = TensorImageDataset(test_x, test_y)
        log.info(
            "%s: %d train / %d val / %d test images held in memory as uint8 (%.0f MB)",
            self.spec.title,
            len(self.train_set),
            len(self.val_set),
            len(self.test_set),
            (train_x.numel() + test_x.numel()) / 1e6,
        )

    def _build_transform(self):
        if not self.aug:
            return None
        from cnnlab.data.augment import build_augmentation  # albumentations is slow to import

        return build_augmentation(self.aug, self.spec, self.seed)

    def _workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        # in-memory batches need no workers; per-sample augmentation does
        return 0 if self.transform is None else min(4, os.cpu_count() or 1)

    def _loader(self, dataset: TensorImageDataset, train: bool) -> DataLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = BatchIndexSampler(
            len(dataset),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train and self.shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )
        workers = self._workers() if train else 0
        loader = ResumableLoader if train else DataLoader
        return loader(
            dataset,
            batch_size=None,  # the sampler yields whole batches
            sampler=sampler,
            # a loader draws its workers' base seed from this generator; without one it would
            # draw from torch's global RNG and shift dropout masks after a resume
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    # -- normalisation -------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> normalised float32, on x's device."""
        return normalize(x, self.spec)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if self.batch_aug is not None and self.trainer is not None and self.trainer.training:
            t = self.trainer
            x = self.batch_aug(
                x,
                (
                    t.current_epoch,
                    t.fit_loop.epoch_loop.batch_progress.current.ready,
                    t.global_rank,
                ),
            )
        return self.normalize(x), y
