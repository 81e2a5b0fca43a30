"""A trained checkpoint as one self-contained model file: TorchScript or ONNX.

The file takes images the way an image decoder returns them, **uint8 (N, C, H, W), 0-255**,
at the checkpoint's input size and channel count, and returns **class probabilities**
(N, classes): the normalisation the run trained with (stored in the checkpoint) and the
softmax are inside it. uint8 because it is the one image format whose scale cannot be
mistaken (0-1 or 0-255 floats look alike to a model and give quietly wrong answers).
What depends on the picture stays outside: resizing to the input size, colour conversion,
and for MNIST-style data the photo preparation of ``predict.py`` (invert, crop, frame).

The class names and the preprocessing travel in the file: TorchScript as the module's
``classes`` attribute plus an extra file ``cnnlab.json`` in the archive; ONNX as the model's
``metadata_props`` (``classes``, ``mean``, ``std``, ``input``, ``output`` ... as JSON strings).
TorchScript is deprecated by PyTorch in favour of ``torch.export``; ONNX is the format to
deploy with (onnxruntime, many runtimes) and needs the ``export`` extra:
``pip install -e ".[export]"``.
"""

# no `from __future__ import annotations`: TorchScript reads ExportedClassifier's annotations
import importlib.util
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from cnnlab.checkpoint import load_classifier
from cnnlab.data.specs import normalization_constants
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_path
from cnnlab.predict import input_normalization

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
ONNX_PACKAGES = ("onnx", "onnxscript")  # torch.onnx.export's own needs (dynamo exporter)
INPUT = "uint8 images (N, C, H, W), values 0-255"
OUTPUT = "class probabilities (N, classes), softmax of the net's logits"


class ExportedClassifier(nn.Module):
    """uint8 images -> class probabilities: the checkpoint's normalisation, net and softmax.

    It refuses any other input type or image size, as the ONNX file's typed input does: floats
    in [0, 1] would otherwise be taken for 0-255 values and answered quietly wrong (a Fashion-
    MNIST LeNet-5 then scores about 8%).
    """

    classes: list[str]
    input_shape: list[int]

    def __init__(self, net: nn.Module, mean, std, classes, input_shape):
        super().__init__()
        self.net = net
        scale, shift = normalization_constants(mean, std)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        self.classes = list(classes)
        self.input_shape = [int(n) for n in input_shape]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(  # (TorchScript prints a dtype as a number: not named here)
                "expected uint8 images (N, C, H, W), values 0-255, not another dtype; floats in "
                "[0, 1] become that by (x * 255).round().to(torch.uint8)"
            )
        if images.dim() != 4 or list(images.shape[1:]) != self.input_shape:
            raise ValueError(
                "expected uint8 images (N, C, H, W) of shape (N, " + str(self.input_shape)[1:-1]
                + "), got " + str(list(images.shape))
            )  # fmt: skip
        # (x / 255 - mean) / std as cnnlab.data.normalize computes it: one fused multiply-add
        x = torch.addcmul(self.shift, images.float(), self.scale)
        return torch.softmax(self.net(x), dim=1)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CnnlabError(f"format={fmt!r} is not one of {', '.join(FORMATS)} (e.g. format=onnx).")
    missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if fmt == "onnx" and missing:
        raise CnnlabError(
            f'format=onnx needs the package(s) {", ".join(missing)}: pip install -e ".[export]" '
            f"(or use format=torchscript, which needs nothing more)."
        )
    return fmt


def default_path(ckpt_path: str | Path, fmt: str) -> Path:
    """<run>/export/<checkpoint name>.pt|.onnx for <run>/checkpoints/<name>.ckpt."""
    ckpt = Path(ckpt_path)
    return ckpt.parent.parent / "export" / f"{ckpt.stem}{FORMATS[fmt]}"


def check_destination(path: Path, ckpt_path: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, a destination that would destroy a file: the checkpoint being
    read, or any existing file unless ``overwrite``; and a folder that cannot be written."""
    ckpt = Path(ckpt_path)
    if path.exists() and ckpt.exists() and os.path.samefile(path, ckpt):
        raise CnnlabError(
            f"out={path} is the checkpoint being exported: writing there would destroy it. "
            f"Choose another out= (or leave it out: {default_path(ckpt_path, 'onnx').parent}/)."
        )
    if path.is_dir():
        raise CnnlabError(f"out={path} is a folder; give a file name in it (e.g. {path}/model.pt).")
    if path.exists() and not overwrite:
        raise CnnlabError(
            f"out={path} exists already and is kept. Choose another out=, or add "
            f"overwrite=true to replace it."
        )
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{path.name}.{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise CnnlabError(
            f"cannot write to {folder} ({e.strerror or e}). Export elsewhere with out=PATH."
        ) from None


def export(
    ckpt_path: str | Path, fmt: str, out: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Write the checkpoint as a ``fmt`` model file (see the module docstring); return its path.

    The file is written under a temporary name beside its destination and renamed when
    complete: a failure (a full disk) leaves no fragment under the real name.
    """
    check_format(fmt)  # before the checkpoint is even opened
    model, info = load_classifier(ckpt_path)  # weights only, allow-listed classes
    mean, std = input_normalization(info)
    wrapper = ExportedClassifier(model.net, mean, std, info["classes"], info["input_shape"]).eval()
    meta = {
        "classes": list(info["classes"]),
        "mean": list(mean),
        "std": list(std),
        "input_shape": list(info["input_shape"]),
        "input": INPUT,
        "output": OUTPUT,
        "dataset": info["config"]["data"]["name"],
        "checkpoint": Path(ckpt_path).name,
    }
    path = Path(out) if out else default_path(ckpt_path, fmt)
    check_destination(path, ckpt_path, overwrite)
    # a batch of 2: a dynamic batch dimension must not be specialised to 1
    example = torch.zeros((2, *info["input_shape"]), dtype=torch.uint8)
    with torch.no_grad(), atomic_path(path) as tmp:
        if fmt == "torchscript":
            _torchscript(wrapper, example, meta, tmp)
        else:
            _onnx(wrapper, example, meta, tmp)
    return path


def _torchscript(
    wrapper: ExportedClassifier, example: torch.Tensor, meta: dict, path: Path
) -> None:
    with warnings.catch_warnings():  # torch.jit's deprecation notices: the user chose this format
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # trace the net (any nn.Module traces; not every one scripts), script the wrapper
        # around it so that its class list survives as an attribute
        wrapper.net = torch.jit.trace(wrapper.net, (torch.zeros(example.shape),))
        scripted = torch.jit.script(wrapper)
        with open(path, "wb") as file:  # a Python file: a full disk is an OSError (atomic_path)
            torch.jit.save(scripted, file, _extra_files={"cnnlab.json": json.dumps(meta)})


def _onnx(wrapper: ExportedClassifier, example: torch.Tensor, meta: dict, path: Path) -> None:
    program = torch.onnx.export(
        wrapper,
        (example,),
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    program.model.metadata_props.update({k: json.dumps(v) for k, v in meta.items()})
    program.save(str(path))  # weights inside the one file (external data only past 2 GB)
