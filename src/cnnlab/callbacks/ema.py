"""An exponential moving average of the weights (``ema.enabled=true``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning import callbacks
from torch.optim.swa_utils import get_ema_multi_avg_fn

from cnnlab.errors import ConfigError
from cnnlab.lightning_workarounds import averaging


class EMA(callbacks.WeightAveraging):
    """An exponential moving average of the weights, which validation, test and the saved
    checkpoints use (``ema.enabled=true ema.decay=0.999``).

    Lightning's WeightAveraging does the work: after the first optimizer step the average is
    that step's weights, after every later one ``average = decay * average + (1 - decay) *
    weights`` (batch-norm statistics too); validation swaps the average in; a checkpoint's
    ``state_dict`` is the average (so best.ckpt, eval, predict and export use it), the training
    weights and the step count ride beside it for resuming; the average replaces the weights
    when training ends. One change: Lightning's loading hook puts the training weights back
    whenever a checkpoint is loaded, so ``trainer.test(ckpt_path=best)`` would test them, not
    the average; here only fitting (a resume) restores them.
    """

    def __init__(self, decay: float = 0.999):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ConfigError(
                f"ema.decay={decay!r} must be in (0, 1): the share of the average kept at each "
                f"step (e.g. ema.decay=0.999; ema.enabled=false turns the average off)."
            )
        # the foreach kernel updates all tensors at once (the per-tensor avg_fn is a Python loop)
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    # During validation the module holds the average and the averaged model the training
    # weights. A checkpoint saved then (Ctrl-C or SIGTERM mid-validation) would store them the
    # wrong way round, and the resumed run would train on from the average.
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self._swapped = averaging(self)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if getattr(self, "_swapped", False) and "current_model_state" in checkpoint:
            checkpoint["state_dict"], checkpoint["current_model_state"] = (
                checkpoint["current_model_state"],
                checkpoint["state_dict"],
            )
