"""What the run shows in TensorBoard beyond its scalars: sample grids, confusion matrices,
mistakes, Grad-CAM, filters and feature maps."""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from cnnlab.errors import ConfigError
from cnnlab.metrics import per_class_accuracy
from cnnlab.models.summary import find_convs
from cnnlab.viz.grids import augmentation_preview, image_grid

# cnnlab.viz.figures (matplotlib, ~0.3 s to import) is imported where a figure is drawn


def add_figure(writer, tag: str, fig, step: int) -> None:
    """Log a matplotlib figure as an image (rendered without pyplot)."""
    from cnnlab.viz.figures import to_image

    writer.add_image(tag, to_image(fig), step, dataformats="HWC")


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


class Diagnostics(pl.Callback):
    """TensorBoard images of what the net does, logged at a bounded rate.

    Every validation epoch: the confusion counts (text); the confusion-matrix figure after
    every ``every_n_epochs`` epochs and for the final epoch, however training ends (drawing it costs
    ~0.1 s, 5% of a LeNet-5 epoch on a 2-core CPU). After testing: the test confusion matrix,
    misclassified test images with true/predicted labels and confidence, per-class accuracy,
    and a Grad-CAM grid (saliency for a net without convolutions) of ``cam_images`` correctly
    and as many wrongly classified test images, for the class the net chose.
    At the end of training: the first conv layer's filters and the feature maps of one fixed
    validation image after each conv block.
    """

    def __init__(self, max_mistakes: int = 32, every_n_epochs: int = 5, cam_images: int = 8):
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ConfigError(
                f"callbacks.diagnostics.every_n_epochs={every_n_epochs!r} must be an integer >= 1 "
                f"(the final epoch's figure is always drawn)."
            )
        self.max_mistakes = max_mistakes
        self.every_n_epochs = every_n_epochs
        self.cam_images = cam_images
        # (image, true, predicted, confidence) of wrong and of right test predictions
        self._mistakes: list[tuple[torch.Tensor, int, int, float]] = []
        self._right: list[tuple[torch.Tensor, int, int, float]] = []
        self._drawn_step = -1  # global step of the last validation figure

    def _classes(self, trainer) -> list[str]:
        return list(trainer.datamodule.classes)

    def _draw_val_confusion(self, trainer: pl.Trainer, writer, cm: torch.Tensor) -> None:
        from cnnlab.viz.figures import confusion_figure

        fig = confusion_figure(cm, self._classes(trainer), "Validation")
        add_figure(writer, "val/confusion_matrix", fig, trainer.global_step)
        self._drawn_step = trainer.global_step

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        cm = pl_module.confusion.get("val")
        if writer is None or cm is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        writer.add_text("val/confusion_counts", json.dumps(cm.tolist()), trainer.global_step)
        epoch = trainer.current_epoch
        # after every n-th epoch (not the first: a one-epoch-old net's figure says little)
        if (epoch + 1) % self.every_n_epochs == 0 or epoch == trainer.max_epochs - 1:
            self._draw_val_confusion(trainer, writer, cm)

    def on_test_start(self, trainer, pl_module) -> None:
        self._mistakes, self._right = [], []

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        full = len(self._mistakes) >= max(self.max_mistakes, self.cam_images)
        if (full and len(self._right) >= self.cam_images) or not trainer.is_global_zero:
            return
        x, y = batch
        with torch.no_grad():
            probs = pl_module.test_probs(x)  # with test-time augmentation, as test/acc counts
        conf, pred = probs.max(dim=1)
        for kept, wanted, which in (
            (self._mistakes, max(self.max_mistakes, self.cam_images), pred != y),
            (self._right, self.cam_images, pred == y),
        ):
            for i in torch.nonzero(which).flatten()[: wanted - len(kept)].tolist():
                kept.append((x[i].cpu(), int(y[i]), int(pred[i]), float(conf[i])))

    def on_test_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        cm = pl_module.confusion.get("test")
        if writer is None or cm is None or not trainer.is_global_zero:
            return
        from cnnlab.viz.figures import bar_figure, confusion_figure, mistakes_figure

        classes, step = self._classes(trainer), trainer.global_step
        add_figure(writer, "test/confusion_matrix", confusion_figure(cm, classes, "Test"), step)
        writer.add_text("test/confusion_counts", json.dumps(cm.tolist()), step)
        per_class = per_class_accuracy(cm).tolist()
        fig = bar_figure(classes, per_class, "Test accuracy per class")
        add_figure(writer, "test/accuracy_per_class", fig, step)
        mistakes = self._mistakes[: self.max_mistakes]
        if mistakes:
            images = torch.stack([m[0] for m in mistakes])
            true, pred, conf = ([m[k] for m in mistakes] for k in (1, 2, 3))
            fig = mistakes_figure(images, true, pred, conf, classes)
            add_figure(writer, "test/misclassified", fig, step)
        picked = self._right[: self.cam_images] + self._mistakes[: self.cam_images]
        if picked:
            add_figure(writer, "test/gradcam", self._cam_figure(pl_module, picked, classes), step)

    def _cam_figure(self, pl_module, picked: list, classes: list[str]):
        from cnnlab.cam import explain
        from cnnlab.viz.figures import cam_figure

        images = torch.stack([p[0] for p in picked])
        chosen = torch.tensor([p[2] for p in picked], device=pl_module.device)
        ex = explain(pl_module.net, images.to(pl_module.device), target=chosen)
        labels = [
            f"✓ {classes[p]}" if t == p else f"✗ {classes[p]}\n(true {classes[t]})"
            for _, t, p, _ in picked
        ]
        where = f" at {ex.layer}" if ex.layer else ""
        title = f"{ex.method}{where} of the predicted class: right (✓), then wrong (✗) test images"
        return cam_figure(images, ex.maps.cpu(), labels, title)

    def on_fit_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        cm = pl_module.confusion.get("val")
        if cm is not None and self._drawn_step != trainer.global_step:
            # stopped early (early stopping, max_time): the final figure is still drawn
            self._draw_val_confusion(trainer, writer, cm)
        net, step = pl_module.net, trainer.global_step
        convs = find_convs(net)
        if not convs:  # an MLP has no filters to show
            return
        from cnnlab.viz.figures import (
            feature_map_figure,
            feature_maps,
            filters_figure,
            filters_title,
        )

        name, first = convs[0]
        add_figure(
            writer, "filters/" + name, filters_figure(first, filters_title(name, first)), step
        )
        datamodule = trainer.datamodule
        x, _ = datamodule.val_set[torch.arange(1)]
        sample = datamodule.normalize(x).to(pl_module.device)
        writer.add_image("feature_maps/input", image_grid(x, nrow=1, upscale=4), step)
        for layer, fmap in feature_maps(net, sample).items():
            fig = feature_map_figure(fmap, f"after {layer}")
            add_figure(writer, f"feature_maps/{layer}", fig, step)
