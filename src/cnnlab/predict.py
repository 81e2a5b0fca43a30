"""Classify an image file with a trained checkpoint, preparing it as the training data was."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.cam import Explanation, explain
from cnnlab.checkpoint import load_classifier
from cnnlab.data.images import image_to_uint8
from cnnlab.data.specs import get_spec, normalize
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.photo import Framing, Prepared, prepare


def open_image(path: str | Path) -> Image.Image:
    """Open any image file PIL reads; a clear error for anything else."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CnnlabError(f"image={str(path)!r} is a folder; give one image file in it.")
    if not p.is_file():
        raise CnnlabError(f"image={str(path)!r} does not exist.")
    try:
        img = Image.open(p)
        img.load()
    except Image.DecompressionBombError as e:  # a tiny file that would decode to gigabytes
        raise CnnlabError(
            f"{p} is refused: {e} A photo for a 28-32 px classifier needs far fewer pixels; "
            f"resize it first."
        ) from None
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


def input_framing(info: dict) -> Framing | None:
    """How the checkpoint's dataset frames its objects (None: natural images, only resized)."""
    if "framing" in info:  # stored by the run (a folder dataset has none)
        stored = info["framing"]
        if stored is None:
            return None
        try:
            framing = Framing(int(stored["box"]), str(stored["centre"]))
        except (KeyError, TypeError, ValueError):
            framing = None
        if framing is None or framing.centre not in ("box", "mass") or framing.box < 1:
            raise CheckpointError(f"the checkpoint's framing {stored!r} is damaged.")
        return framing
    return get_spec(info["config"]["data"]["name"]).framing  # older checkpoints


def prepare_input(img: Image.Image, info: dict, invert: str = "auto") -> Prepared:
    """An image file's picture -> the checkpoint's uint8 input, prepared like its dataset.

    Datasets of light objects on black (MNIST, Fashion-MNIST) get a photo or drawing
    inverted when its background is light, cropped to the content and framed as the
    dataset frames its objects; natural-image datasets (CIFAR-10, SVHN, a folder) are
    only resized.
    """
    shape = tuple(info["input_shape"])
    framing = input_framing(info)
    if framing is not None and shape[0] == 1:
        return prepare(img, shape, framing, invert)
    return Prepared(to_input(img, shape), [f"resized to {shape[2]}x{shape[1]}"])


@dataclass
class Prediction:
    classes: list[str]
    probs: torch.Tensor  # probability per class
    prepared: Prepared | None = None  # what the net saw, and how it was made
    explanation: Explanation | None = None  # Grad-CAM or saliency map, when asked for
    seen: torch.Tensor | None = None  # the normalised input (1, C, H, W) the net saw

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        p, i = self.probs.topk(min(k, len(self.classes)))
        return [(self.classes[j], float(q)) for q, j in zip(p, i, strict=True)]


def predict(
    ckpt_path: str | Path,
    image: str | Path | Image.Image,
    invert: str = "auto",
    cam: bool = False,
    cam_class: str | None = None,
    cam_layer: str | None = None,
) -> Prediction:
    """Top classes of an image file; with ``cam`` also the Grad-CAM map (saliency for a net
    without convolutions) of the top class or of ``cam_class``, at ``cam_layer`` (default
    the last conv layer)."""
    check_invert(invert)
    model, info = load_classifier(ckpt_path)
    check_class(info, cam_class)
    img = image if isinstance(image, Image.Image) else open_image(image)
    return classify(model, info, img, invert, cam, cam_class, cam_layer)


def check_invert(invert: str) -> None:
    if invert not in ("auto", "true", "false"):
        raise CnnlabError(f"invert={invert!r}: use invert=auto, invert=true or invert=false.")


def check_class(info: dict, cam_class: str | None) -> None:
    if cam_class and cam_class not in info["classes"]:
        raise CnnlabError(
            f"cam_class={cam_class!r} is not a class of this checkpoint; its classes: "
            f"{', '.join(info['classes'])}."
        )


@torch.no_grad()
def classify(
    model: torch.nn.Module,
    info: dict,
    img: Image.Image,
    invert: str = "auto",
    cam: bool = False,
    cam_class: str | None = None,
    cam_layer: str | None = None,
) -> Prediction:
    """``predict`` with the checkpoint already loaded (``load_classifier``): the demo page
    loads it once and classifies every drawing with it."""
    check_invert(invert)
    check_class(info, cam_class)
    classes = list(info["classes"])
    prepared = prepare_input(img, info, invert)
    x = normalize(prepared.image, *input_normalization(info))
    probs = model(x).softmax(dim=1)[0]
    explanation = None
    if cam:
        target = classes.index(cam_class) if cam_class else None
        explanation = explain(model.net, x, target, cam_layer or None)
    return Prediction(classes, probs, prepared, explanation, x)
