"""Lightning callbacks cnnlab adds to every run."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning import callbacks
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cnnlab.viz.grids import augmentation_preview


def tensorboard(trainer: pl.Trainer):
    """The TensorBoard SummaryWriter of the run, or None without a TensorBoard logger."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class SamplePreview(pl.Callback):
    """Logs training samples once, at the start: the first row as stored, then augmented draws."""

    def __init__(self, n: int = 8, repeats: int = 3):
        self.n, self.repeats = n, repeats

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard(trainer)
        datamodule = trainer.datamodule
        if writer is None or not trainer.is_global_zero or datamodule is None:
            return
        datamodule.setup("fit")
        augmented = datamodule.train_set.transform is not None
        grid = augmentation_preview(datamodule, self.n, self.repeats)
        writer.add_image("samples/augmented" if augmented else "samples/train", grid, 0)


class InterruptCheckpoint(pl.Callback):
    """Saves ``last.ckpt`` when a run is interrupted (Ctrl-C, SIGTERM from a cluster pre-emption).

    Lightning checkpoints mid-epoch state too (the loader's position included), so resuming
    from it continues with exactly the batches that had not been seen. Errors (a NaN loss,
    a bug) do not save: the last good ``last.ckpt`` must survive them.
    """

    def __init__(self, dirpath: str):
        self.path = f"{dirpath}/last.ckpt"
        self.saved: str | None = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if (
            isinstance(exception, (KeyboardInterrupt, SIGTERMException))
            and trainer.state.fn == "fit"
        ):
            trainer.save_checkpoint(self.path)
            self.saved = self.path


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, carrying the best checkpoint along when a run resumes elsewhere.

    Resuming ``ckpt_path=<old run>/checkpoints/last.ckpt`` starts a new run directory. Lightning
    then forgets the best score and would call the next epoch "best" even if it is worse.
    Here the old best checkpoint is copied into the new directory and its score kept, so the
    resumed run tests the same checkpoint an uninterrupted run would (the old run's files are
    never touched).
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath", self.dirpath)
        old_best = state_dict.get("best_model_path", "")
        if (
            old_dir == self.dirpath
            or self.save_top_k != 1
            or not old_best
            or not os.path.isfile(old_best)
        ):
            super().load_state_dict(state_dict)
            return
        os.makedirs(self.dirpath, exist_ok=True)
        best = os.path.join(self.dirpath, os.path.basename(old_best))
        shutil.copyfile(old_best, best)
        score = state_dict["best_model_score"]
        self.best_model_path, self.best_model_score = best, score
        self.best_k_models = {best: score}
        self.kth_best_model_path, self.kth_value = best, score
