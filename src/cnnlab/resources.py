"""Measured resource use: peak resident memory of this process and of its children."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MB (of the largest child process, with ``children``).

    Linux's ru_maxrss of a process starts at its parent's RSS when it was forked (a run
    started by a 1.5 GB pytest or sweep process would report 1.5 GB), so a process's own
    peak is read from VmHWM, its memory's high-water mark since exec, where there is one.
    """
    if not children:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
        except OSError:
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # macOS: bytes


# bytes per parameter while training with Adam: the weight, its gradient and two moments
TRAINING_BYTES_PER_PARAM = 4 * 4


# bytes per parameter to use a stored model: its weights, and the checkpoint's copy of them
LOADING_BYTES_PER_PARAM = 2 * 4


def check_fits_in_memory(params: int, what: str, stored: bool = False) -> None:
    """Refuse a model whose training state alone would not fit in the memory available now,
    or (``stored``: a checkpoint's model, for eval, predict, export) whose weights would not.

    Called on a net built on the ``meta`` device (shapes, no storage), so a mistyped width
    (``model.width=1e6``) is refused in a second instead of swapping the machine to death.
    """
    import psutil

    from cnnlab.errors import CheckpointError, ModelError

    need = params * (LOADING_BYTES_PER_PARAM if stored else TRAINING_BYTES_PER_PARAM)
    available = psutil.virtual_memory().available
    if need <= available:
        return
    if stored:
        raise CheckpointError(
            f"{what} stores a model of {params:,} parameters: loading it needs about "
            f"{need / 2**30:,.1f} GiB but {available / 2**30:,.1f} GiB is available (an edited "
            f"or foreign checkpoint?). Use a machine with more memory, or another checkpoint."
        )
    raise ModelError(
        f"{what} has {params:,} parameters: training it needs about {need / 2**30:,.1f} GiB "
        f"(weights, gradients and Adam's two moments, 16 bytes each) but "
        f"{available / 2**30:,.1f} GiB is available. Choose a smaller model (model.width, "
        f"model.depth, model.hidden...)."
    )


def check_accelerator(accelerator: str | None, strategy: str | None = None) -> None:
    """Refuse ``trainer.accelerator=gpu`` (``trainer=gpu``, ``trainer=ddp``) on a machine without
    a CUDA GPU before anything is built; Lightning would fail only at the Trainer, after the
    data was read, with an exception of its own."""
    import torch

    from cnnlab.errors import ConfigError

    if accelerator not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    why = "this torch is built without CUDA" if torch.version.cuda is None else "none is visible"
    alternative = "trainer=ddp_cpu (data-parallel CPU processes)" if strategy else "trainer=cpu"
    raise ConfigError(
        f"trainer.accelerator={accelerator} needs a CUDA GPU, and this machine has none ({why}). "
        f"Train on the CPU with {alternative}, or run on a machine with a GPU."
    )
