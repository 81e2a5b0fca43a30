"""Where a net's first weights come from: published weights, a weights file, an earlier run.

``model.pretrained=true`` (the published weights of a ``model=torchvision|timm`` net, from
torch's or Hugging Face's cache, downloaded when online), ``model.pretrained=PATH`` (a state
dict: ``.pth``/``.pt`` read with ``torch.load(weights_only=True)``, or ``.safetensors``) and
``model.init_from=CKPT`` (a cnnlab checkpoint, read by ``cnnlab.checkpoint.load_checkpoint``:
its config is data, only its tensors are used) work for every net, the zoo's included: they
are applied by ``cnnlab.build.build`` after the net is built, so no net class knows of them
and a net rebuilt from a checkpoint never loads (or downloads) anything.

The head is the set of tensors whose shape depends on the class count (found by building
the net for ``num_classes`` and ``num_classes + 1`` on the meta device): for a torchvision
or timm net its replaced classifier, for LeNet-5 its last layer, and the same rule for any
net of the user's own. When the class count differs from the file's, the head keeps its
fresh initialisation; every other mismatch is listed, and ``model.strict=false`` loads what
fits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, open_dict
from torch import nn

from cnnlab.errors import ConfigError, ModelError

log = logging.getLogger("cnnlab")

# model keys that say where the weights come from, not what the net is: never passed to it
START_KEYS = ("pretrained", "init_from", "strict")
STATE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def net_args(node: Mapping[str, Any]) -> dict[str, Any]:
    """A model config without its start keys: what the net's class is called with."""
    return {k: v for k, v in node.items() if k not in START_KEYS}


def _net_class(node: Mapping[str, Any]) -> type | None:
    try:
        return get_object(str(node.get("_target_")))
    except Exception:
        return None


def _pretrained(node: Mapping[str, Any]) -> Any:
    value = node.get("pretrained")
    if value in (None, False, "", "false", "none", "null"):
        return None
    return value


def starts_from(node: Mapping[str, Any]) -> bool:
    """Whether the model config names start weights (``pretrained`` or ``init_from``)."""
    return bool(node.get("init_from")) or _pretrained(node) is not None


def published(node: Mapping[str, Any]) -> dict[str, Any]:
    """The published weights of the configured net (``model.pretrained=true``)."""
    cls = _net_class(node)
    if not hasattr(cls, "published_weights"):
        raise ConfigError(
            "model.pretrained=true needs published weights, which only model=torchvision and "
            "model=timm nets have; give a weights file (model.pretrained=PATH) or an earlier "
            "run (model.init_from=<run>/checkpoints/best.ckpt)."
        )
    return cls.published_weights(node.get("arch"))


def published_file(info: dict[str, Any]) -> Path:
    """The local file of published weights: from the cache, else downloaded into it.

    Offline and not cached: a ModelError naming the file and the folder to put it in.
    """
    if "hf" in info:
        from huggingface_hub import constants, hf_hub_download

        from cnnlab.data.sources import unreachable

        repo, filename = info["hf"]
        # offline, the hub's client retries its connection for many seconds before it gives
        # up: with no name lookup for the hub, only the cache is asked
        cached_only = unreachable(constants.ENDPOINT) is not None
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=cached_only))
        except Exception as e:
            folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
            raise ModelError(
                f"model.pretrained=true needs {filename} of {repo} (the published weights), "
                f"which is not in the Hugging Face cache ({folder}) and could not be downloaded "
                f"({type(e).__name__}). Online: run once to download it; offline: copy the "
                f"cache folder there from a machine that has it (HF_HOME moves the cache), or "
                f"give the file as model.pretrained=PATH."
            ) from None
    file: Path = info["file"]
    if not file.is_file():
        import shutil
        import tempfile

        try:  # the published file names carry the start of their sha256: checked on download
            with tempfile.TemporaryDirectory() as tmp:
                torch.hub.download_url_to_file(info["url"], f"{tmp}/{file.name}", progress=False)
                file.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(f"{tmp}/{file.name}", file)
        except Exception as e:
            raise ModelError(
                f"model.pretrained=true needs {file.name} ({info['name']}), which is not in "
                f"{file.parent} and could not be downloaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Put {info['url']} there (TORCH_HOME "
                f"moves the folder), or give the file as model.pretrained=PATH."
            ) from None
    return file


def read_state_file(path: str | Path, key: str = "model.pretrained") -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file; never runs code from it."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ConfigError(
            f"{key}={str(path)!r} is not a file. Give a state-dict file ({', '.join(STATE_SUFFIXES)}), "
            f"true for the published weights, or model.init_from=<a cnnlab checkpoint>."
        )
    if p.suffix == ".ckpt":
        raise ConfigError(
            f"{key}={str(path)!r} is a checkpoint: start from an earlier cnnlab run with "
            f"model.init_from={path}."
        )
    if p.suffix not in STATE_SUFFIXES:
        raise ConfigError(
            f"{key}={str(path)!r} is not a weights file: give a {', '.join(STATE_SUFFIXES)} file."
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage, a truncated file, a pickle naming code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{key}={str(path)!r} is not a readable weights file ({type(e).__name__}: {first}); "
            f"only plain tensors are read (weights_only)."
        ) from None
    # a training checkpoint of another tool: its weights under one of the usual keys
    for inner in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(inner), dict):
            state = state[inner]
            break
    if not (
        isinstance(state, dict)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise ConfigError(
            f"{key}={str(path)!r} holds no state dict (a mapping of names to tensors)."
        )
    return state


def checkpoint_start(path: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The net's tensors of a cnnlab checkpoint and its run info (``model.init_from``)."""
    from cnnlab.checkpoint import KEY, load_checkpoint

    ckpt = load_checkpoint(str(path))
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return state, ckpt[KEY]


def start_inputs(node: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs the start weights were trained with: mean, std and image size.

    Published weights (``pretrained=true``, or a weights file for a torchvision/timm net,
    taken to be of that net's published kind) say so in their metadata; an earlier run
    (``init_from``) in its checkpoint. They become the data's defaults (``fill_inputs``).
    """
    if node.get("init_from"):
        _, info = checkpoint_start(node["init_from"])
        found: dict[str, Any] = {"image_size": info["input_shape"][1]}
        if info.get("normalization"):
            found.update(mean=info["normalization"]["mean"], std=info["normalization"]["std"])
        return found
    if _pretrained(node) is None or not hasattr(_net_class(node), "published_weights"):
        return {}
    info = published(node)
    return {k: info[k] for k in ("mean", "std", "image_size")}


def fill_inputs(data: DictConfig, inputs: Mapping[str, Any], channels: int) -> bool:
    """Set the data keys left null (``data.mean``, ``data.std``, ``data.image_size``) from
    ``inputs``; a grayscale dataset gets the mean of 3-channel statistics. Returns whether
    anything was set."""
    changed = False
    given = data.get("mean") is not None or data.get("std") is not None
    with open_dict(data):
        for key, value in inputs.items():
            if key not in data or data[key] is not None or (key in ("mean", "std") and given):
                continue  # set by the user (mean and std: as a pair), or a folder's own size
            if key in ("mean", "std") and len(value) != channels:
                value = [sum(value) / len(value)] * channels
            data[key] = value
            changed = True
    return changed


def head_keys(make: Callable[..., nn.Module], num_classes: int, input_shape) -> set[str]:
    """The names of the tensors whose shape depends on the class count (the net's head).

    ``make(n)`` builds the net for ``n`` classes; both builds (and the forward pass that
    sizes lazy layers) happen on the meta device.
    """
    from cnnlab.models.summary import check_forward

    shapes = []
    with torch.device("meta"):
        for n in (num_classes, num_classes + 1):
            net = make(n)
            check_forward(net, input_shape)
            shapes.append({k: v.shape for k, v in net.state_dict().items()})
    a, b = shapes
    return {k for k in a if b.get(k) != a[k]}


def _align(
    state: dict[str, torch.Tensor], net: nn.Module, own: set[str]
) -> dict[str, torch.Tensor]:
    """A library's weights file names its keys without the wrapper's ``model.`` prefix."""
    prefix = getattr(net, "weights_prefix", "")
    if prefix and len(own & {prefix + k for k in state}) > len(own & state.keys()):
        return {prefix + k: v for k, v in state.items()}
    return state


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_into(
    net: nn.Module,
    state: dict[str, torch.Tensor],
    head: set[str],
    strict: bool,
    source: str,
) -> str:
    """Copy ``state`` into ``net``; the head is skipped when its shape differs (another class
    count). Returns what was loaded, for the log; ModelError lists every other mismatch."""
    own = net.state_dict()
    state = _align(state, net, set(own))
    fresh_head = sorted(k for k in head if k in state and state[k].shape != own[k].shape)
    # batch norms made before torch 0.4.1 kept no step counter; torch fills it in
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in state
        if k in own and k not in head and state[k].shape != own[k].shape
    )
    # another class count: the whole head starts afresh (its bias may fit, it is not kept alone)
    fits = {
        k: v
        for k, v in state.items()
        if k in own and v.shape == own[k].shape and not (fresh_head and k in head)
    }
    problems = [
        f"{what}: {_names(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if keys
    ]
    if problems and (strict or not fits):
        fix = (
            "model.strict=false loads the tensors that fit"
            if fits
            else "no tensor fits, so it holds another model (or another input size)"
        )
        raise ModelError(
            f"{source} does not fit {getattr(net, 'title', type(net).__name__)} "
            f"({'; '.join(problems)}): {fix}."
        )
    net.load_state_dict(fits, strict=False)
    done = f"Loaded {len(fits)} of {len(own)} tensors from {source}"
    if fresh_head:
        done += f"; the head ({_names(sorted(head), 3)}) starts afresh for this class count"
    return done + (f"; not loaded: {'; '.join(problems)}" if problems else "")


def load_start(net: nn.Module, node: Mapping[str, Any], head: set[str]) -> str | None:
    """Load the configured start weights into ``net`` (nothing if none); returns the log line.

    ``head``: the net's head tensors (``head_keys``), which start afresh for another class count.
    """
    pretrained, init_from = _pretrained(node), node.get("init_from")
    if pretrained is None and not init_from:
        return None
    if pretrained is not None and init_from:
        raise ConfigError(
            "model.pretrained and model.init_from both name a start: choose one (the other null)."
        )
    strict = node.get("strict", True)
    if strict not in (True, False):
        raise ConfigError(f"model.strict={strict!r} must be true or false.")
    if init_from:
        state, _ = checkpoint_start(init_from)
        source = f"model.init_from={init_from}"
    elif pretrained is True:
        file = published_file(published(node))
        state, source = read_state_file(file), f"the published weights {file.name}"
    else:
        state, source = read_state_file(pretrained), f"model.pretrained={pretrained}"
    return load_into(net, state, head, bool(strict), source)
