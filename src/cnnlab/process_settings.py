"""Process-wide settings of a run: torch's float and thread settings, quieter Lightning logs."""

from __future__ import annotations

import logging
import os
import warnings

import torch
from omegaconf import DictConfig, OmegaConf

from cnnlab.startup import NVML_CHECK


def configure_torch() -> None:
    """Process-wide settings every run wants."""
    # Denormal floats make CPU arithmetic several times slower; small nets' weights and
    # gradients drift into that range late in training (measured: LeNet-5 ran ~6x slower).
    torch.set_flush_denormal(True)
    # Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that looking for GPUs never initialises
    # CUDA (forked workers could not use it). torch then also looks for the NVML library on
    # every optimiser step: where there is none, a failed dlopen each step (~1% of a LeNet-5
    # step on a CPU). Without a GPU there is no CUDA to keep uninitialised.
    if os.environ.get(NVML_CHECK) == "1" and not torch.cuda.is_available():
        del os.environ[NVML_CHECK]
    # The in-memory loaders need no worker processes; Lightning's advice to add some is noise.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # an advertisement Lightning prints on every run
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in lightning_log.filters):
        lightning_log.addFilter(_NoAdverts())
    # Saving a whole training state (as the learning-rate finder does) logs "`weights_only` was
    # not set, defaulting to `False`": a save option (weights alone, or the optimiser's state
    # too), which reads as if checkpoints were loaded unsafely. They never are (checkpoint.py).
    saving_log = logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector")
    if not any(isinstance(f, _NoSaveOptionNote) for f in saving_log.filters):
        saving_log.addFilter(_NoSaveOptionNote())


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.msg)


class _NoSaveOptionNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`weights_only` was not set" not in str(record.msg)


def cpu_threads(cfg: DictConfig) -> int | None:
    """torch's CPU threads for this process: ``threads``, else a fair share of the cores when
    a parallel launcher runs several jobs at once (2 jobs x 2 threads on 2 cores spin against
    each other and run slower than one job at a time), else None (torch's default)."""
    if cfg.get("threads"):
        return int(cfg.threads)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs")
    if isinstance(n_jobs, int) and n_jobs > 1:
        return max(1, (os.cpu_count() or 1) // n_jobs)
    return None
