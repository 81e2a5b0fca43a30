"""Checkpoints that describe themselves, and loading them without running pickled code.

Every checkpoint cnnlab writes carries the run's resolved config and the data facts (input
shape, classes), so eval, predict and the visualisations rebuild the exact net from the
file alone. Loading always uses ``torch.load(weights_only=True)``: opening a checkpoint from
the internet must never execute code, and the stored config is data, never instructions:
only the model, data, optimizer and scheduler classes that ``conf/`` names are built from it
(``cnnlab.allowlist``), with plain values, and no path it names is read or written.
"""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from cnnlab.allowlist import build_stored, check_stored
from cnnlab.errors import CheckpointError
from cnnlab.files import atomic_path
from cnnlab.neutral_keys import places

KEY = "cnnlab"
# the largest stored input a checkpoint may claim: a 4096x4096 image of up to 16 channels
MAX_CHANNELS, MAX_PIXELS = 16, 4096 * 4096


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: the file is written under a temp name in its
    own folder and renamed, so a crash or a full disk mid-write keeps the previous good
    ``last.ckpt`` instead of leaving half of a new one under its name."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as file:  # see atomic_path: a file
            torch.save(checkpoint, file)


class RunInfo(pl.Callback):
    """Adds the run config and data facts to every checkpoint under ``checkpoint['cnnlab']``."""

    def __init__(
        self,
        config: dict[str, Any],
        input_shape,
        classes,
        started: float | None = None,
        earlier_s: float = 0.0,
    ):
        self.info = {
            "config": config,
            "input_shape": list(input_shape),
            "classes": list(classes),
        }
        # the run's wall time so far travels in its checkpoints, so a run resumed in another
        # process reports the sum of its parts (``started``: this process's perf_counter start)
        self.started, self.earlier_s = started, earlier_s

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        info = dict(self.info)
        # the normalisation the inputs got: read at save time, as a folder dataset computes
        # its statistics from its images in setup
        datamodule = getattr(trainer, "datamodule", None)
        if getattr(datamodule, "mean", None) is not None:
            info["normalization"] = {
                "mean": [float(v) for v in datamodule.mean],
                "std": [float(v) for v in datamodule.std],
            }
        framing = getattr(getattr(datamodule, "spec", None), "framing", None)
        info["framing"] = {"box": framing.box, "centre": framing.centre} if framing else None
        if self.started is not None:
            info["elapsed_s"] = round(self.earlier_s + time.perf_counter() - self.started, 2)
        checkpoint[KEY] = info


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a cnnlab checkpoint safely; CheckpointError says what is wrong with the file."""
    p = Path(path).expanduser()
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            found = sorted(x.name for x in p.parent.glob("*.ckpt"))
            hint = f" Checkpoints in {p.parent}: {', '.join(found)}." if found else ""
        raise CheckpointError(
            f"ckpt_path={str(path)!r} does not exist.{hint} Checkpoints are written to "
            f"<run dir>/checkpoints/ (best.ckpt, last.ckpt)."
        )
    if p.is_dir():
        raise CheckpointError(f"ckpt_path={str(path)!r} is a directory; give a .ckpt file in it.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch says "Unsupported global: GLOBAL posix.system ..." (older: "global: posix...")
        found = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"global:? ([\w.]+)", str(e))
        if found is None:
            raise CheckpointError(
                f"{p} is not a readable PyTorch checkpoint (its content is not a pickle torch "
                f"can read). It may be truncated; use another checkpoint of the run."
            ) from None
        raise CheckpointError(
            f"{p} holds pickled Python objects, not just weights (it would call "
            f"{found.group(1)} when opened). cnnlab loads checkpoints with weights_only=True "
            f"so that opening one cannot run code; re-save it with plain tensors and dicts if "
            f"you trust its source."
        ) from None
    except Exception as e:  # garbage makes torch.load raise almost anything (KeyError, EOFError...)
        raise CheckpointError(
            f"{p} is not a readable PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else 'empty'}). "
            f"It may be truncated; use another checkpoint of the run (best.ckpt or last.ckpt)."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p} is not a Lightning checkpoint (no 'state_dict' inside).")
    if KEY not in ckpt:
        raise CheckpointError(
            f"{p} was not written by cnnlab (it lacks the run config needed to rebuild the model)."
        )
    check_layout(ckpt, str(p))
    return ckpt


def check_layout(ckpt: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint whose run info is incomplete, of another layout, or not plain data.

    Everything later code reads from the file is checked here, once: the run info's config
    sections (each naming only a class from conf/, see ``cnnlab.allowlist``), input shape and
    classes, and the optimizer/scheduler configs Lightning keeps in ``hyper_parameters``.
    """

    def missing(what: str) -> CheckpointError:
        return CheckpointError(
            f"{where}: {what} (written by an older cnnlab, or edited); it cannot rebuild its "
            f"model. Use a checkpoint written by this version."
        )

    info = ckpt[KEY]
    if not isinstance(info, dict):
        raise missing(f"its '{KEY}' run info is a {type(info).__name__}, not a mapping")
    config = info.get("config")
    if not isinstance(config, dict):
        raise missing(f"its '{KEY}' run info has no config")
    for section in ("model", "data", "optimizer"):
        if config.get(section) is None:
            raise missing(f"its stored config has no {section} section")
    for section in ("model", "data", "optimizer", "scheduler"):
        if section != "scheduler" or config.get(section):  # scheduler=none stores {} or None
            check_stored(config[section], section, where)
    if not isinstance(config["data"].get("name"), str):
        raise missing("its stored data config has no dataset name")
    shape = info.get("input_shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise missing(f"its input_shape is {shape!r}, not [channels, height, width]")
    if shape[0] > MAX_CHANNELS or shape[1] * shape[2] > MAX_PIXELS:
        raise CheckpointError(
            f"{where}: its stored input shape {shape} is not an image size cnnlab trains on (at "
            f"most {MAX_CHANNELS} channels and {MAX_PIXELS:,} pixels); the file is edited or "
            f"damaged. Use another checkpoint of the run."
        )
    classes = info.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise missing(f"its class list is {type(classes).__name__ if classes else 'missing'}")
    hparams = ckpt.get("hyper_parameters")
    if hparams is not None:
        if not isinstance(hparams, dict):
            raise missing("its hyper_parameters are not a mapping")
        for section in ("optimizer", "scheduler"):
            if hparams.get(section):
                check_stored(hparams[section], section, f"{where} (hyper_parameters)")


def build_net(info: dict[str, Any], where: str = "checkpoint") -> torch.nn.Module:
    """Rebuild the net a checkpoint was trained with, from its stored (checked) model config:
    sized on the ``meta`` device first, as training does, so a stored model too large for the
    memory is refused before any storage is taken."""
    from cnnlab.models import check_forward, count_params
    from cnnlab.resources import check_fits_in_memory
    from cnnlab.weights import net_args  # the start keys (model.init_from...) are no net's

    node = net_args(info["config"]["model"])
    shape = tuple(info["input_shape"])
    sizes = {"input_shape": shape, "num_classes": len(info["classes"])}
    with torch.device("meta"):
        probe = build_stored(node, "model", where, **sizes)
        check_forward(probe, shape)  # sizes lazy layers
    check_fits_in_memory(count_params(probe, trainable_only=False), where, stored=True)
    return build_stored(node, "model", where, **sizes)


# data-config keys that name places on disk: never taken from a checkpoint. data=folder's root
# is one too, but not in the neutral table: its images are the data, so it changes the result
PATH_KEYS = (*places("data"), "root")


def build_datamodule(info: dict[str, Any], where: str, data_dir: str, mirrors: list[str]):
    """The checkpoint's own DataModule, reading data from the caller's places, not the file's."""
    node = {k: v for k, v in info["config"]["data"].items() if k not in PATH_KEYS}
    node.update(data_dir=str(data_dir), mirrors=list(mirrors), aug=None)
    return build_stored(node, "data", where)


def load_classifier(path: str | Path):
    """The trained ImageClassifier (eval mode, CPU) and the checkpoint's run info."""
    from cnnlab.lit import ImageClassifier

    ckpt = load_checkpoint(path)
    info = ckpt[KEY]
    model = ImageClassifier(
        build_net(info, str(path)),
        num_classes=len(info["classes"]),
        optimizer=info["config"]["optimizer"],
        scheduler=info["config"].get("scheduler"),
        class_names=info["classes"],
        # the memory format it was trained and tested in: the same rounding, the same predictions
        channels_last=(ckpt.get("hyper_parameters") or {}).get("channels_last") is True,
    )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: its weights do not fit the model its config describes ({str(e).splitlines()[0]})."
        ) from None
    model.eval()
    return model, info


def _class_of(node: Any) -> str | None:
    target = node.get("_target_") if isinstance(node, dict) else None
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def check_compatible(
    path: str | Path, net: torch.nn.Module, data_name: str, optimizer: Any, scheduler: Any
) -> dict[str, Any]:
    """Refuse to resume from a checkpoint of another model, dataset, optimizer or scheduler,
    before training starts; return the checkpoint's run info."""
    ckpt = load_checkpoint(path)
    info = ckpt[KEY]
    # an optimizer's saved state only fits its own class (Adam's moments are no SGD momentum:
    # Lightning would fail deep inside with KeyError: 'momentum')
    for group, now in (("optimizer", optimizer), ("scheduler", scheduler)):
        before, after = _class_of(info["config"].get(group)), _class_of(now)
        if before != after:
            raise CheckpointError(
                f"{path} was trained with {group} {before or 'none'} and cannot resume with "
                f"{after or 'none'}: its saved {group} state fits only its own. Resume with the "
                f"{group}= of that run, or drop ckpt_path to start afresh."
            )
    check_resume_state(ckpt, str(path))
    then_data = info["config"]["data"]["name"]
    then_model = info["config"]["model"]["_target_"].rsplit(".", 1)[-1]
    expected = {f"net.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    if then_data != data_name or expected != found:
        raise CheckpointError(
            f"{path} belongs to another setup ({then_model} on {then_data}) and cannot resume this "
            f"run ({getattr(net, 'title', type(net).__name__)} on {data_name}). "
            f"Resume with the model= and data= of that run, or drop ckpt_path to start afresh."
        )
    return info


def check_resume_state(ckpt: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint whose stored RNG state or best-so-far record is malformed before
    training starts (torch would fail deep inside ``set_rng_state``). The best's value is only
    ever reported after being measured again (``cnnlab.run``)."""
    rng = ckpt.get("rng", {})
    expected = torch.get_rng_state()
    state = rng.get("torch") if isinstance(rng, dict) else None
    if not isinstance(rng, dict) or (
        "torch" in rng
        and not (
            isinstance(state, torch.Tensor)
            and state.dtype == expected.dtype
            and state.shape == expected.shape
        )
    ):
        raise CheckpointError(
            f"{where}: its stored random-number generator state is malformed (edited or "
            f"damaged), so the run cannot resume exactly. Resume from another checkpoint of the "
            f"run, or drop ckpt_path to start afresh."
        )
    best = ckpt.get("best", {})
    acc = best.get("val_acc", 0.0) if isinstance(best, dict) else None
    epoch = best.get("epoch", -1) if isinstance(best, dict) else None
    if not (
        isinstance(acc, (int, float))
        and not isinstance(acc, bool)
        and 0 <= acc <= 1
        and isinstance(epoch, int)
        and not isinstance(epoch, bool)
        and epoch >= -1
    ):
        raise CheckpointError(
            f"{where}: its record of the best epoch so far is malformed ({best!r:.80}). Resume "
            f"from another checkpoint of the run, or drop ckpt_path to start afresh."
        )


def elapsed_before(info: dict[str, Any]) -> float:
    """The wall time a checkpoint's run had spent when it was saved (0 if unknown or invalid)."""
    value = info.get("elapsed_s")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and 0 <= value < 1e9 else 0.0
