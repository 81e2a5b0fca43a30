"""Lightning callbacks cnnlab adds to every run."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning import callbacks
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cnnlab.metrics import per_class_accuracy
from cnnlab.models.summary import find_convs
from cnnlab.viz.figures import (
    bar_figure,
    confusion_figure,
    feature_map_figure,
    feature_maps,
    filters_figure,
    filters_title,
    mistakes_figure,
)
from cnnlab.viz.grids import augmentation_preview, image_grid


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

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if (
            isinstance(exception, (KeyboardInterrupt, SIGTERMException))
            and trainer.state.fn == "fit"
        ):
            trainer.save_checkpoint(self.path)


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


class Diagnostics(pl.Callback):
    """TensorBoard images of what the net does, logged at a bounded rate.

    Every validation epoch: the confusion matrix (figure, and its counts as text). After
    testing: the test confusion matrix, misclassified test images with true/predicted labels
    and confidence, per-class accuracy. At the end of training: the first conv layer's
    filters and the feature maps of one fixed validation image after each conv block.
    """

    def __init__(self, max_mistakes: int = 32, every_n_epochs: int = 1):
        self.max_mistakes = max_mistakes
        self.every_n_epochs = every_n_epochs
        self._mistakes: list[tuple[torch.Tensor, int, int, float]] = []

    def _classes(self, trainer) -> list[str]:
        return list(trainer.datamodule.classes)

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        cm = pl_module.confusion.get("val")
        if writer is None or cm is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (
            trainer.current_epoch % self.every_n_epochs == 0
            or trainer.current_epoch == trainer.max_epochs - 1
        ):
            step = trainer.global_step
            writer.add_figure(
                "val/confusion_matrix",
                confusion_figure(cm, self._classes(trainer), "Validation"),
                step,
            )
            writer.add_text("val/confusion_counts", json.dumps(cm.tolist()), step)

    def on_test_start(self, trainer, pl_module) -> None:
        self._mistakes = []

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if len(self._mistakes) >= self.max_mistakes or not trainer.is_global_zero:
            return
        x, y = batch
        with torch.no_grad():
            probs = pl_module(x).softmax(dim=1)
        conf, pred = probs.max(dim=1)
        for i in (
            torch.nonzero(pred != y).flatten()[: self.max_mistakes - len(self._mistakes)].tolist()
        ):
            self._mistakes.append((x[i].cpu(), int(y[i]), int(pred[i]), float(conf[i])))

    def on_test_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        cm = pl_module.confusion.get("test")
        if writer is None or cm is None or not trainer.is_global_zero:
            return
        classes, step = self._classes(trainer), trainer.global_step
        writer.add_figure("test/confusion_matrix", confusion_figure(cm, classes, "Test"), step)
        writer.add_text("test/confusion_counts", json.dumps(cm.tolist()), step)
        per_class = per_class_accuracy(cm).tolist()
        writer.add_figure(
            "test/accuracy_per_class",
            bar_figure(classes, per_class, "Test accuracy per class"),
            step,
        )
        if self._mistakes:
            images = torch.stack([m[0] for m in self._mistakes])
            true, pred, conf = ([m[k] for m in self._mistakes] for k in (1, 2, 3))
            writer.add_figure(
                "test/misclassified", mistakes_figure(images, true, pred, conf, classes), step
            )

    def on_fit_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        net, step = pl_module.net, trainer.global_step
        convs = find_convs(net)
        if not convs:  # an MLP has no filters to show
            return
        name, first = convs[0]
        writer.add_figure(
            "filters/" + name, filters_figure(first, filters_title(name, first)), step
        )
        datamodule = trainer.datamodule
        x, _ = datamodule.val_set[torch.arange(1)]
        sample = datamodule.normalize(x).to(pl_module.device)
        writer.add_image("feature_maps/input", image_grid(x, nrow=1, upscale=4), step)
        for layer, fmap in feature_maps(net, sample).items():
            writer.add_figure(
                f"feature_maps/{layer}", feature_map_figure(fmap, f"after {layer}"), step
            )
