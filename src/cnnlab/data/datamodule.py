"""One LightningDataModule for every built-in dataset (``data=mnist|fashion_mnist|cifar10|svhn``);
``folder.py`` extends it to a folder of the user's own images (``data=folder``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cnnlab.data.aug_params import aug_params, switched_on
from cnnlab.data.batch_augment import BatchAugmentation, BatchMix
from cnnlab.data.memory import BatchIndexSampler, ResumableLoader, TensorImageDataset
from cnnlab.data.sources import DEFAULT_MIRRORS, ensure_dataset
from cnnlab.data.specs import (
    DatasetSpec,
    check_image_size,
    get_spec,
    given_stats,
    normalization_stats,
    normalize,
)
from cnnlab.data.splits import check_folds, holdout, split_count, stratified_fold
from cnnlab.errors import ConfigError
from cnnlab.lightning_workarounds import batch_position

log = logging.getLogger(__name__)


class ImageDataModule(pl.LightningDataModule):
    """Official train/test split, a seeded validation split (or fold ``fold`` of ``folds``
    stratified folds), per-dataset normalisation.

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
        folds: int | None = None,
        fold: int | None = None,
        seed: int = 0,
        num_workers: int | None = None,
        download: bool = True,
        mirrors: Sequence[str] = DEFAULT_MIRRORS,
        aug: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        resident: bool = False,
        shuffle: bool = True,
        normalize: str = "dataset",
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        self.spec: DatasetSpec = self._make_spec(name)
        for key, value in (
            ("data.batch_size", batch_size),
            ("data.eval_batch_size", eval_batch_size),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive integer (e.g. {key}=128).")
        what = f"{self.spec.title}'s training split"
        check_folds(folds, fold, self.spec.train_size, what)
        if folds is None:  # with folds, fold i is the validation split and val_size is unused
            split_count("data.val_size", val_size, self.spec.train_size, what)
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.seed = val_size, split_seed, seed
        self.folds, self.fold = folds, fold
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
        # mixup / cutmix: on normalised batches on the training device, on both paths
        self.batch_mix = (
            BatchMix.from_config(self.aug, self.num_classes, seed) if self.aug else None
        )
        self.train_set = self.val_set = self.test_set = None
        # per-channel statistics the inputs are normalised with (a folder's own: set in setup);
        # checkpoints store them (cnnlab.checkpoint.RunInfo), so predict and export repeat them
        self.normalize_mode = normalize
        known = None if self.spec.mean is None else (self.spec.mean, self.spec.std)
        self.mean, self.std = normalization_stats(normalize, known, self.spec.shape[0])
        if mean is not None or std is not None:  # given (a start's weights fill them in)
            self.mean, self.std = given_stats(mean, std, self.spec.shape[0])
            self.normalize_mode = "given"  # a folder computes none of its own
        # batches resized on the device (a pretrained net's size); a folder's images already are
        self.resize_to = check_image_size(image_size)

    def _make_spec(self, name: str) -> DatasetSpec:
        return get_spec(name)

    # -- facts the model needs ---------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.resize_to is None:
            return self.spec.shape
        return (self.spec.shape[0], self.resize_to, self.resize_to)

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

    def read_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """train images, train labels, test images, test labels (uint8 NCHW, int64)."""
        return (
            *self.spec.read(self.data_dir, train=True),
            *self.spec.read(self.data_dir, train=False),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_x, train_y, test_x, test_y = self.read_splits()
        n, what = len(train_x), f"the training split in {self.data_dir}"
        # the validation split depends on split_seed only, never on the run's seed, so every
        # run of a sweep is validated on the same images (cnnlab.data.splits)
        if self.folds is None:
            val_size = split_count("data.val_size", self.val_size, n, what)
            train_idx, val_idx = holdout(n, val_size, self.split_seed)
        else:
            check_folds(self.folds, self.fold, n, what)  # the files may hold fewer than the spec
            train_idx, val_idx = stratified_fold(train_y, self.folds, self.fold, self.split_seed)
        if self.resident:
            device = (
                self.trainer.strategy.root_device
                if self.trainer is not None
                else torch.device("cpu")
            )
            train_x, train_y, test_x, test_y, train_idx, val_idx = (
                t.to(device) for t in (train_x, train_y, test_x, test_y, train_idx, val_idx)
            )
            self.batch_aug = (
                BatchAugmentation.from_config(self.aug, self.seed) if self.aug else None
            )
        else:
            self.transform = self._build_transform()
        self.train_set = TensorImageDataset(train_x, train_y, train_idx, self.transform)
        self.val_set = TensorImageDataset(train_x, train_y, val_idx)
        self.test_set = TensorImageDataset(test_x, test_y)
        log.info(
            "%s: %d train / %d val%s / %d test images held in memory as uint8 (%.0f MB)",
            self.spec.title,
            len(self.train_set),
            len(self.val_set),
            "" if self.folds is None else f" (fold {self.fold} of {self.folds})",
            len(self.test_set),
            (train_x.numel() + test_x.numel()) / 1e6,
        )

    def _build_transform(self):
        if not self.aug or not switched_on(aug_params(self.aug, warn=False)):
            return None  # aug=none never imports albumentations (0.3 s at start-up)
        from cnnlab.data.augment import build_augmentation

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
        """uint8 images (N, C, H, W) -> normalised float32 at ``data.image_size``, on x's device."""
        x = normalize(x, self.mean, self.std)
        size = self.resize_to
        if size is None or x.shape[-2:] == (size, size):
            return x
        # antialiased when shrinking, so no detail aliases into the smaller image
        return torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        t = self.trainer
        if t is None or not t.training or (self.batch_aug is None and self.batch_mix is None):
            return self.normalize(x), y
        key = (t.current_epoch, batch_position(t), t.global_rank)
        if self.batch_aug is not None:
            x = self.batch_aug(x, key)
        x = self.normalize(x)
        if self.batch_mix is None:
            return x, y
        # (images, soft targets for the loss, the original labels for training accuracy)
        return (*self.batch_mix(x, y, key), y)
