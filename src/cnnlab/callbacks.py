"""Lightning callbacks cnnlab adds to every run."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

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
