"""Classify an image file with a trained checkpoint, preparing it as the training data was."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.checkpoint import load_classifier
from cnnlab.data.specs import get_spec, normalize
from cnnlab.errors import CnnlabError


def open_image(path: str | Path) -> Image.Image:
    """Open any image file PIL reads; a clear error for anything else."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CnnlabError(f"image={str(path)!r} does not exist.")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CnnlabError(
            f"{p} is not an image that can be read ({type(e).__name__}: {e}). "
            f"Give a PNG, JPEG, BMP, GIF, TIFF or WebP file."
        ) from None
    return ImageOps.exif_transpose(img)


def to_input(img: Image.Image, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Any size and colour mode -> uint8 (1, C, H, W) in the dataset's format.

    Grayscale datasets get luminance, colour ones RGB (transparency dropped onto black, as
    the datasets' backgrounds are); the image is resized to the dataset's size.
    """
    c, h, w = input_shape
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    if img.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit and float scans: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        arr = 255 * (arr - arr.min()) / max(arr.max() - arr.min(), 1e-12)
        img = Image.fromarray(arr.astype(np.uint8))
    img = img.convert("L" if c == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)


@dataclass
class Prediction:
    classes: list[str]
    probs: torch.Tensor  # probability per class

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        p, i = self.probs.topk(min(k, len(self.classes)))
        return [(self.classes[j], float(q)) for q, j in zip(p, i, strict=True)]


@torch.no_grad()
def predict(ckpt_path: str | Path, image: str | Path | Image.Image) -> Prediction:
    model, info = load_classifier(ckpt_path)
    spec = get_spec(info["config"]["data"]["name"])
    img = image if isinstance(image, Image.Image) else open_image(image)
    x = normalize(to_input(img, tuple(info["input_shape"])), spec.mean, spec.std)
    probs = model(x).softmax(dim=1)[0]
    return Prediction(list(info["classes"]), probs)
