"""Training-time augmentation with albumentations, built from flat ``aug.*`` keys.

Every preset in ``conf/aug/`` sets the same flat keys (``conf/aug/_common.yaml`` lists them,
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
import torch

from cnnlab.data.specs import DatasetSpec
from cnnlab.errors import ConfigError

# key -> (default, check); the defaults disable everything
PARAMS: dict[str, float] = {
    "pad_crop": 0,  # pixels of zero padding before a random crop back to size (CIFAR recipe)
    "hflip": 0.0,  # probability of a horizontal flip
    "shift_limit": 0.0,  # max translation, as a fraction of the image size
    "scale_limit": 0.0,  # max zoom in or out, as a fraction
    "rotate_limit": 0.0,  # max rotation, degrees
    "affine_p": 0.0,  # probability of the shift/scale/rotate above
    "elastic_p": 0.0,  # probability of an elastic distortion
    "grid_distortion_p": 0.0,  # probability of a grid distortion
    "brightness_contrast": 0.0,  # max brightness/contrast change (fraction)
    "brightness_contrast_p": 0.0,
    "cutout_holes": 0,  # up to this many erased rectangles (coarse dropout / cutout)
    "cutout_size": 0.25,  # their max side, as a fraction of the image size
    "cutout_p": 0.0,
}
_PROBABILITIES = (
    "hflip",
    "affine_p",
    "elastic_p",
    "grid_distortion_p",
    "brightness_contrast_p",
    "cutout_p",
)


def _params(cfg: Mapping[str, Any]) -> dict[str, float]:
    unknown = set(cfg) - set(PARAMS) - {"name"}
    if unknown:
        raise ConfigError(
            f"Unknown augmentation key(s) {', '.join(sorted('aug.' + k for k in unknown))}. "
            f"Valid: {', '.join('aug.' + k for k in PARAMS)}."
        )
    out = {k: cfg.get(k, default) for k, default in PARAMS.items()}
    for key, value in out.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"aug.{key}={value!r} must be a number >= 0.")
        if key in _PROBABILITIES and value > 1:
            raise ConfigError(f"aug.{key}={value!r} is a probability: use a value in [0, 1].")
    return out


def build_augmentation(
    cfg: Mapping[str, Any], spec: DatasetSpec, seed: int = 0
) -> Augmentation | None:
    """The albumentations pipeline the ``aug`` config describes, or None if it does nothing."""
    p = _params(cfg)
    _, h, w = spec.shape
    steps: list[A.BasicTransform] = []
    if p["pad_crop"] > 0:
        pad = int(p["pad_crop"])
        steps += [
            A.PadIfNeeded(h + 2 * pad, w + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(h, w),
        ]
    if p["hflip"] > 0:
        steps.append(A.HorizontalFlip(p=p["hflip"]))
    if p["affine_p"] > 0 and (p["shift_limit"] or p["scale_limit"] or p["rotate_limit"]):
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
    if p["elastic_p"] > 0:
        steps.append(
            A.ElasticTransform(alpha=max(h, w) * 0.5, sigma=max(h, w) * 0.12, p=p["elastic_p"])
        )
    if p["grid_distortion_p"] > 0:
        steps.append(A.GridDistortion(num_steps=5, distort_limit=0.3, p=p["grid_distortion_p"]))
    if p["brightness_contrast_p"] > 0 and p["brightness_contrast"] > 0:
        bc = p["brightness_contrast"]
        steps.append(A.RandomBrightnessContrast(bc, bc, p=p["brightness_contrast_p"]))
    if p["cutout_p"] > 0 and p["cutout_holes"] >= 1:
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


ON_DEVICE = ("pad_crop", "hflip")


class BatchAugmentation:
    """Random crop (after zero padding) and horizontal flip of a whole uint8 batch, on its device.

    The GPU-resident path (``data.resident=true``) keeps the split on the accelerator, where
    per-sample albumentations cannot run; crops and flips by indexing cost next to nothing
    there (the airbench recipe). Only ``aug.pad_crop`` and ``aug.hflip`` apply.
    """

    def __init__(self, pad: int, flip_p: float, seed: int = 0):
        self.pad, self.flip_p = pad, flip_p
        self.seed = seed

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int = 0) -> BatchAugmentation | None:
        p = _params(cfg)
        others = [
            f"aug.{k}={p[k]}"
            for k, v in PARAMS.items()
            if k not in ON_DEVICE and p[k] != v and k != "cutout_size"
        ]
        if others:
            raise ConfigError(
                f"With data.resident=true augmentation runs on the device, where only "
                f"aug.pad_crop and aug.hflip exist; got {', '.join(others)}. Use aug=cifar or aug=none, "
                f"or data.resident=false for albumentations."
            )
        if not p["pad_crop"] and not p["hflip"]:
            return None
        return cls(int(p["pad_crop"]), float(p["hflip"]), seed)

    def __call__(self, x: torch.Tensor, key: tuple[int, ...] = ()) -> torch.Tensor:
        """``key`` (epoch, batch, rank) reseeds the draw: repeatable, resumable, distinct per rank."""
        seed = zlib.crc32(repr((self.seed, *key)).encode())
        g = torch.Generator(device=x.device).manual_seed(seed)
        n, _, h, w = x.shape
        if self.pad:
            padded = torch.nn.functional.pad(x, (self.pad,) * 4)
            dy = torch.randint(0, 2 * self.pad + 1, (n, 1, 1), device=x.device, generator=g)
            dx = torch.randint(0, 2 * self.pad + 1, (n, 1, 1), device=x.device, generator=g)
            rows = (dy + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
            cols = (dx + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
            batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if self.flip_p:
            flip = torch.rand(n, device=x.device, generator=g) < self.flip_p
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        return x.contiguous()
