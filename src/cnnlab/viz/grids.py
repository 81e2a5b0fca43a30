"""Image grids: sample batches and augmentation previews, for TensorBoard and PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

ROW_PAD = 2  # pixels between the images of a grid (and around it)


def image_grid(images: torch.Tensor, nrow: int, upscale: int = 2) -> torch.Tensor:
    """uint8 (N, C, H, W) -> one uint8 (3, H', W') grid, upscaled so 28 px digits are visible."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if upscale > 1:
        images = images.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    return make_grid(images, nrow=nrow, padding=ROW_PAD, pad_value=255)


def save_png(grid: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).cpu().numpy().astype(np.uint8)).save(path)
    return path


def augmentation_rows(datamodule, n: int = 8, repeats: int = 3) -> list[torch.Tensor]:
    """``n`` training images as stored, then one uint8 (n, C, H, W) batch per augmented draw."""
    dataset = datamodule.train_set
    positions = torch.arange(min(n, len(dataset)))  # a training split may hold fewer than n
    idx = dataset.indices[positions]
    rows = [dataset.images[idx]]
    for r in range(repeats):
        if dataset.transform is None:
            break
        hwc = dataset.transform(rows[0].permute(0, 2, 3, 1).numpy(), idx.numpy() + 7919 * (r + 1))
        rows.append(torch.from_numpy(hwc).permute(0, 3, 1, 2))
    return rows


def augmentation_preview(datamodule, n: int = 8, repeats: int = 3) -> torch.Tensor:
    """First row: ``n`` training images as stored; each further row: a new augmented draw."""
    rows = augmentation_rows(datamodule, n, repeats)
    return image_grid(torch.cat(rows), nrow=len(rows[0]))
