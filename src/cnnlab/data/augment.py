"""Training-time augmentation with albumentations, built from flat ``aug.*`` keys.

Every preset in ``conf/aug/`` sets the same flat keys (``conf/aug_common.yaml`` lists them,
all off), so any parameter can be changed from the command line: ``aug=light
aug.rotate_limit=20``. Augmentation works on uint8 HWC images, before normalisation, and
is applied to the training split only.

Randomness: the pipeline is reseeded for every batch from the run's seed and the batch's
sample positions. Each image still gets its own draw, but a batch's augmentation no longer
depends on which worker process made it, so runs are repeatable and a resumed run sees the
same augmented batches as an uninterrupted one.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import albumentations as A
import cv2
import numpy as np

from cnnlab.data.aug_params import aug_params, switched_on
from cnnlab.data.specs import DatasetSpec


def build_augmentation(
    cfg: Mapping[str, Any], spec: DatasetSpec, seed: int = 0
) -> Augmentation | None:
    """The albumentations pipeline the ``aug`` config describes, or None if it does nothing."""
    p = aug_params(cfg)
    on = switched_on(p)
    _, h, w = spec.shape
    steps: list[A.BasicTransform] = []
    if "pad_crop" in on:
        pad = int(p["pad_crop"])
        steps += [
            A.PadIfNeeded(h + 2 * pad, w + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(h, w),
        ]
    if "hflip" in on:
        steps.append(A.HorizontalFlip(p=p["hflip"]))
    if "affine" in on:
        s, z, r = p["shift_limit"], p["scale_limit"], p["rotate_limit"]
        steps.append(
            A.Affine(
                translate_percent=(-s, s),
                scale=(1 - z, 1 + z),
                rotate=(-r, r),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=p["affine_p"],
            )
        )
    if "elastic" in on:
        steps.append(
            A.ElasticTransform(alpha=max(h, w) * 0.5, sigma=max(h, w) * 0.12, p=p["elastic_p"])
        )
    if "grid_distortion" in on:
        steps.append(A.GridDistortion(num_steps=5, distort_limit=0.3, p=p["grid_distortion_p"]))
    if "brightness_contrast" in on:
        bc = p["brightness_contrast"]
        steps.append(A.RandomBrightnessContrast(bc, bc, p=p["brightness_contrast_p"]))
    if "cutout" in on:
        side = max(0.01, min(1.0, p["cutout_size"]))
        steps.append(
            A.CoarseDropout(
                num_holes_range=(1, int(p["cutout_holes"])),
                hole_height_range=(side / 2, side),
                hole_width_range=(side / 2, side),
                fill=0,
                p=p["cutout_p"],
            )
        )
    return Augmentation(A.Compose(steps), seed) if steps else None


class Augmentation:
    """Applies an albumentations pipeline to a batch of uint8 HWC images, one draw per image."""

    def __init__(self, compose: A.Compose, seed: int = 0):
        self.compose = compose
        self.seed = seed

    def __call__(self, images: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        if positions is not None:
            key = zlib.crc32(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
            self.compose.set_random_seed((self.seed * 1_000_003 + key) % 2**32)
        out = np.stack([self.compose(image=img)["image"] for img in images])
        return out[..., None] if out.ndim == 3 else out  # cv2 drops a single channel axis

    def __repr__(self) -> str:
        return f"Augmentation({self.compose})"
