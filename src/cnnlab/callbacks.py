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
from torch.optim.swa_utils import get_ema_multi_avg_fn

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


# The callback hooks Lightning calls at every batch: 6 a training step, 2 an evaluation batch
BATCH_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def skip_inherited_batch_hooks(callbacks: list[pl.Callback]) -> None:
    """Let Lightning skip the batch hooks a callback only inherits from ``pl.Callback``.

    Lightning calls every callback at every batch hook, overridden or not, and each call
    formats a profiler action name and enters a context first: ~2 us, so 8 callbacks x 6
    hooks cost ~0.09 ms a training step (14% of a step of a Linear 4 -> 2 net, which is nearly
    all Lightning's loop). Its dispatcher skips a hook attribute that is not callable, so an
    inherited no-op is shadowed by None on the instance; hooks a callback overrides, in its
    class or on the instance itself, are left alone.
    """
    for callback in callbacks:
        for hook in BATCH_HOOKS:
            inherited = getattr(type(callback), hook, None) is getattr(pl.Callback, hook)
            if inherited and hook not in vars(callback):
                setattr(callback, hook, None)


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
            # the whole training state (optimiser, loops), so that the run resumes exactly
            trainer.save_checkpoint(self.path, weights_only=False)


def early_stopping(
    patience: int | None = None, monitor: str = "val/acc", mode: str = "max", min_delta: float = 0.0
) -> callbacks.EarlyStopping | None:
    """Lightning's EarlyStopping once ``patience`` is set (``callbacks.early_stopping.patience=5``);
    None, no callback, while it is null (the default), so one override turns it on."""
    if patience is None:
        return None
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError(
            f"callbacks.early_stopping.patience={patience!r} must be an integer >= 1: the "
            f"validations without improvement before training stops (e.g. 5; null never stops)."
        )
    return callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=patience, min_delta=min_delta
    )


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
        self._swapped = self._average_model is not None

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


class ResumableCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint that carries the best checkpoint along into a resumed run, and
    trusts no path stored in a checkpoint.

    Resuming ``ckpt_path=<old run>/checkpoints/last.ckpt`` starts a new run directory. Lightning
    then forgets the best score and would call the next epoch "best" even if it is worse.
    Here the old best checkpoint is copied into the new directory from the folder of the
    resumed file and its score kept, so the resumed run tests the same checkpoint an
    uninterrupted run would (the old run's files are never touched).

    The callback state in a checkpoint is data: its paths (``best_model_path``,
    ``best_k_models``...) are only names. Every path restored must lie inside this run's own
    checkpoint folder or is dropped, before Lightning's own ``load_state_dict`` (which would
    restore ``best_model_path`` from anywhere and later delete old ``best_k_models`` entries)
    sees it; nothing outside the resumed file's folder is read, nothing outside this run's
    folder is written or deleted.
    """

    def _generate_state_key(self, **kwargs: Any) -> str:
        # Lightning's own key: checkpoints of either class resume with their state
        return f"ModelCheckpoint{kwargs!r}"

    # Lightning 2.6 writes last.ckpt only in epochs that also wrote a top-k checkpoint: after
    # an epoch that did not improve val/acc, last.ckpt would be older than the run, and a
    # resumed run would train that epoch again. last.ckpt is the resume point: every epoch.
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._keep_last_current(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._keep_last_current(trainer, at_train_epoch_end=False)

    def _keep_last_current(self, trainer: pl.Trainer, at_train_epoch_end: bool) -> None:
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)  # nothing saved at this step
            and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer  # its ckpt_path says which file is being resumed

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        own = os.path.realpath(self.dirpath)
        resumed = getattr(getattr(self, "_trainer", None), "ckpt_path", None)
        source = os.path.dirname(os.path.realpath(resumed)) if resumed else own
        state: dict[str, Any] = {"dirpath": self.dirpath, "best_model_path": ""}
        state["best_model_score"] = None
        best = state_dict.get("best_model_path")
        score = _score(state_dict.get("best_model_score"))
        if source == own:  # resuming in place: keep what lies in this folder
            if _inside(best, own) and os.path.isfile(best) and score is not None:
                state["best_model_path"], state["best_model_score"] = best, score
            for key in ("kth_best_model_path", "last_model_path"):
                if _inside(state_dict.get(key), own):
                    state[key] = state_dict[key]
            if _score(state_dict.get("kth_value")) is not None:
                state["kth_value"] = _score(state_dict["kth_value"])
            top = state_dict.get("best_k_models")
            if isinstance(top, dict):
                state["best_k_models"] = {
                    k: _score(v)
                    for k, v in top.items()
                    if _inside(k, own) and _score(v) is not None
                }
        elif self.save_top_k == 1 and score is not None:  # a new run dir: carry the best along
            carried = self._carry(source, best)
            if carried:
                state.update(
                    best_model_path=carried,
                    best_model_score=score,
                    best_k_models={carried: score},
                    kth_best_model_path=carried,
                    kth_value=score,
                )
        super().load_state_dict(state)

    def _carry(self, source: str, best: Any) -> str | None:
        """Copy the best checkpoint of the resumed run (same folder as the resumed file) here."""
        if not isinstance(best, str) or not best:
            return None
        name = os.path.basename(best)
        src = os.path.join(source, name)
        if name in ("", ".", "..") or os.path.islink(src) or not os.path.isfile(src):
            return None
        os.makedirs(self.dirpath, exist_ok=True)
        dst = os.path.join(self.dirpath, name)
        if os.path.islink(dst):
            os.unlink(dst)
        shutil.copyfile(src, dst)
        return dst


def _inside(path: Any, folder: str) -> bool:
    """Whether ``path`` (a string from a checkpoint) names a file inside ``folder``."""
    if not isinstance(path, str) or not path:
        return False
    real = os.path.realpath(path)
    return os.path.dirname(real) == folder or real.startswith(folder + os.sep)


def _score(value: Any) -> torch.Tensor | None:
    """A stored score as Lightning keeps it (a scalar tensor), or None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = torch.tensor(float(value))
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return value.reshape(())
    return None


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
