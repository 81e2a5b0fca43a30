"""The field's classification nets by name: ``model=torchvision|timm model.arch=NAME``.

Each wrapper is an ordinary cnnlab net (``input_shape`` and ``num_classes`` in, logits out),
so the layer table, filters, feature maps, Grad-CAM, eval, predict, export and the search
treat it like LeNet-5. The library builds the net with ``num_classes`` outputs, which is
the head replaced for the dataset's class count (auxiliary heads included).

Grayscale data feeds the 3-channel stem by repeating its channel. A convolution is linear,
so this is exactly the same as summing the first convolution's kernels over their input
channels, but it needs no knowledge of which layer is the stem and keeps the published
architecture unchanged: the same weights file loads for gray and colour data, and a gray
image is what the net saw in ImageNet for a photo with R = G = B. Its normalisation is then
one mean and std, the average of the weights' three (``cnnlab.weights.start_inputs``).

The weights are never loaded here (a net rebuilt from a checkpoint must not download
anything): ``cnnlab.weights`` loads them after the net is built, from the file that
``published_weights`` names.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError


def _unknown(kind: str, arch: Any, names: list[str]) -> ModelError:
    close = difflib.get_close_matches(str(arch), names, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else f"{len(names)} names, e.g. {names[0]}"
    return ModelError(f"model.arch={arch!r} is not a {kind} classification model ({hint}).")


class PublishedNet(nn.Module):
    """A library's classifier: gray inputs repeated to its 3 channels, logits only."""

    library = ""

    def __init__(self, input_shape, model: nn.Module, arch: str):
        super().__init__()
        channels = input_shape[0]
        if channels not in (1, 3):
            raise ModelError(
                f"model={self.library} nets take 3-channel (or grayscale) images; this data "
                f"has {channels} channels."
            )
        self.model = model
        self.arch = arch
        self.gray = channels == 1
        self.title = f"{self.library} {arch}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:  # the same image on every channel (see the module docstring)
            x = x.expand(-1, 3, -1, -1)
        out = self.model(x)
        # googlenet and inception_v3 return auxiliary logits beside the main ones in training
        return getattr(out, "logits", out)

    # weights files name the library's own keys; this net holds them under ``model.``
    weights_prefix = "model."


@functools.cache
def torchvision_names() -> tuple[str, ...]:
    """Every classification model torchvision ships (its registry, never a hand-kept list)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


class TorchvisionNet(PublishedNet):
    """``model=torchvision model.arch=resnet50``: any classification net of torchvision."""

    library = "torchvision"

    def __init__(self, input_shape, num_classes: int, arch: str = "resnet18"):
        from torchvision.models import get_model

        if arch not in torchvision_names():
            raise _unknown("torchvision", arch, list(torchvision_names()))
        super().__init__(input_shape, get_model(arch, weights=None, num_classes=num_classes), arch)

    @staticmethod
    def published_weights(arch: str) -> dict[str, Any]:
        """Where the published weights of ``arch`` come from and what inputs they expect."""
        from torchvision.models import get_model_weights

        if arch not in torchvision_names():
            raise _unknown("torchvision", arch, list(torchvision_names()))
        weights = get_model_weights(arch).DEFAULT
        preset = weights.transforms()
        url = weights.url
        return {
            "name": f"{weights}",
            "url": url,
            "file": Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1],
            "mean": list(preset.mean),
            "std": list(preset.std),
            "image_size": int(preset.crop_size[0]),
        }


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError(
            "model=timm needs the timm package: pip install timm (or pip install 'cnnlab[timm]')."
        ) from None
    return timm


class TimmNet(PublishedNet):
    """``model=timm model.arch=convnext_atto``: any classification net of timm."""

    library = "timm"

    def __init__(self, input_shape, num_classes: int, arch: str = "resnet18"):
        timm = _timm()
        if not timm.is_model(arch):
            raise _unknown("timm", arch, timm.list_models())
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        super().__init__(input_shape, model, arch)

    @staticmethod
    def published_weights(arch: str) -> dict[str, Any]:
        timm = _timm()
        if not timm.is_model(arch):
            raise _unknown("timm", arch, timm.list_models())
        cfg = timm.get_pretrained_cfg(arch)
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            raise ModelError(f"timm publishes no weights for model.arch={arch}.")
        found = {
            "name": f"timm {cfg.hf_hub_id or cfg.url}",
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "image_size": int(cfg.input_size[-1]),
        }
        if cfg.hf_hub_id:  # the Hugging Face hub: its cache, HF_HOME / HF_HUB_CACHE
            found["hf"] = (cfg.hf_hub_id.split("@")[0], "model.safetensors")
        else:
            found["url"] = cfg.url
            found["file"] = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
        return found


# sizes tried when a net cannot take the data's images: the common ones, small to large
IMAGE_SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 299, 384, 448, 518)
# what a net's own shape checks raise (torchvision's vit asserts its image size)
_MISFITS = (ModelError, RuntimeError, AssertionError, ValueError)


def check_input_size(net: nn.Module, input_shape, make) -> None:
    """``check_forward`` on the meta device; a net that cannot take the images is refused in
    one line naming the ``data.image_size`` it takes (``make(n, shape)`` builds it)."""
    from cnnlab.models.summary import check_forward, model_title

    try:
        with torch.device("meta"):
            check_forward(net, input_shape)
    except _MISFITS as e:
        channels, h, w = input_shape
        size = smallest_image_size(lambda shape: make(2, shape), channels)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, ModelError):
            message = reason
        else:
            message = f"{model_title(net)} cannot take {h}x{w} images ({reason})."
        if size is not None and size != h:
            message += f" It takes data.image_size={size} (the smallest of {IMAGE_SIZES[0]}, 64, ... tried)."
        raise ModelError(message) from None


def smallest_image_size(make_net, channels: int) -> int | None:
    """The smallest of ``IMAGE_SIZES`` a net takes (built and run on the meta device), or None."""
    from cnnlab.models.summary import check_forward

    for size in IMAGE_SIZES:
        shape = (channels, size, size)
        try:
            with torch.device("meta"):
                check_forward(make_net(shape), shape)
        except _MISFITS:
            continue
        return size
    return None
