"""Image files -> the uint8 tensors cnnlab trains on; shared by ``data=folder`` and prediction,
so an image is prepared for a trained net exactly as its training images were."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_uint8(img: Image.Image, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Any size and colour mode -> uint8 (C, H, W), ``channels`` 1 (luminance) or 3 (RGB).

    Transparency (an alpha channel, or a PNG's transparent colour or palette entry) is
    dropped onto black, as the built-in datasets' backgrounds are; 16-bit and float images are
    scaled to 8 bits; the image is resized to ``size`` (H, W).
    """
    h, w = size
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    if img.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit and float scans: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        arr = 255 * (arr - arr.min()) / max(arr.max() - arr.min(), 1e-12)
        img = Image.fromarray(arr.astype(np.uint8))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
