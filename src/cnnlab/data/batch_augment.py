"""Whole batches augmented on their device: crops and flips (the GPU-resident path's
augmentation) and mixup / cutmix (every path).

Pure torch (no albumentations, no OpenCV): per-sample pipelines cannot run on a GPU-resident
split, and crops and flips by indexing cost next to nothing there (the airbench recipe).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cnnlab.data.aug_params import PARAMS, aug_params
from cnnlab.errors import ConfigError

ON_DEVICE = ("pad_crop", "hflip")
MIXING = ("mixup_alpha", "cutmix_alpha")  # BatchMix's keys: they run on the device on every path


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
            if k not in (*ON_DEVICE, *MIXING) and p[k] != v
        ]
        if others:
            raise ConfigError(
                f"With data.resident=true augmentation runs on the device, where only "
                f"aug.pad_crop and aug.hflip exist (and aug.mixup_alpha, aug.cutmix_alpha, as "
                f"everywhere); got {', '.join(others)}. Use aug=cifar or aug=none, "
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


class BatchMix:
    """Mixup (``aug.mixup_alpha``) and CutMix (``aug.cutmix_alpha``) of a normalised training
    batch, on its device, with soft targets.

    As torchvision's ``v2.MixUp`` / ``v2.CutMix`` do: one share ``lam ~ Beta(alpha, alpha)`` per
    batch, each image mixed with the next one of the batch (batches are shuffled already), the
    targets mixed by the same share (cutmix: by the pasted box's true area). Both on: one of
    the two per batch, with equal odds. Not torchvision's classes because they draw from
    torch's global RNG: the draw would depend on everything else that used it and would shift
    the dropout masks; here a generator seeded by (seed, epoch, batch, rank) makes every
    batch's mix repeatable, also after a resume.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int, seed: int = 0):
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.num_classes, self.seed = num_classes, seed

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any], num_classes: int, seed: int = 0
    ) -> BatchMix | None:
        p = aug_params(cfg, warn=False)
        if not p["mixup_alpha"] and not p["cutmix_alpha"]:
            return None
        return cls(p["mixup_alpha"], p["cutmix_alpha"], num_classes, seed)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, key: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets (N, classes) summing to 1). ``key`` as BatchAugmentation's.

        The few random numbers are drawn on the host: no generator on the device, no sync.
        """
        rng = np.random.default_rng(zlib.crc32(repr((self.seed, "mix", *key)).encode()))
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < 0.5)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        other = x.roll(1, dims=0)
        if cutmix:  # a box of area ~(1 - lam) from the other image, clipped at the borders
            h, w = x.shape[-2:]
            half_h, half_w = h * math.sqrt(1 - lam) / 2, w * math.sqrt(1 - lam) / 2
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            y0, y1 = int(max(0, round(cy - half_h))), int(min(h, round(cy + half_h)))
            x0, x1 = int(max(0, round(cx - half_w))), int(min(w, round(cx + half_w)))
            x = x.clone()
            x[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area really pasted
        else:
            x = torch.lerp(x, other, 1 - lam)  # lam * x + (1 - lam) * other
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        return x, torch.lerp(onehot, onehot.roll(1, dims=0), 1 - lam)
