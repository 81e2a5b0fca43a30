"""Classify an image file with a trained checkpoint, preparing it as the training data was."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.checkpoint import load_classifier
from cnnlab.data.images import image_to_uint8
from cnnlab.data.specs import get_spec, normalize
from cnnlab.errors import CheckpointError, CnnlabError


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
    """Any size and colour mode -> uint8 (1, C, H, W), converted as training images were."""
    c, h, w = input_shape
    return image_to_uint8(img, c, (h, w)).unsqueeze(0)


def input_normalization(info: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a checkpoint's run normalised its inputs with.

    Checkpoints store them (a folder dataset's are computed from its images); older ones
    name a built-in dataset, whose spec has them.
    """
    stored = info.get("normalization")
    if stored:
        channels = info["input_shape"][0]
        try:
            mean = tuple(float(v) for v in stored["mean"])
            std = tuple(float(v) for v in stored["std"])
        except (KeyError, TypeError, ValueError):
            mean = std = ()
        if not (len(mean) == len(std) == channels and all(s > 0 for s in std)) or not all(
            math.isfinite(v) for v in mean + std
        ):
            raise CheckpointError(
                f"the checkpoint's normalization {stored!r} is not {channels} finite means "
                f"and positive stds; the file is damaged."
            )
        return mean, std
    spec = get_spec(info["config"]["data"]["name"])
    return spec.mean, spec.std


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
    img = image if isinstance(image, Image.Image) else open_image(image)
    x = normalize(to_input(img, tuple(info["input_shape"])), *input_normalization(info))
    probs = model(x).softmax(dim=1)[0]
    return Prediction(list(info["classes"]), probs)
