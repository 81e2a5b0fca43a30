"""Crops and flips of whole batches on their device: the GPU-resident path's augmentation.

Pure torch (no albumentations, no OpenCV): per-sample pipelines cannot run on a GPU-resident
split, and crops and flips by indexing cost next to nothing there (the airbench recipe).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import torch

from cnnlab.data.aug_params import PARAMS, aug_params
from cnnlab.errors import ConfigError

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
        p = aug_params(cfg)
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
