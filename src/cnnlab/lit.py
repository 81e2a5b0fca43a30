"""``ImageClassifier``: the one LightningModule. Any net, any dataset, softmax + cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from cnnlab.errors import ConfigError, TrainingDiverged
from cnnlab.finetune import Finetune, param_groups, scaled_scheduler
from cnnlab.lightning_workarounds import shown_step
from cnnlab.metrics import per_class_accuracy


class ImageClassifier(pl.LightningModule):
    """Trains an injected net with cross-entropy; logs loss and accuracy per split.

    ``optimizer`` and ``scheduler`` are Hydra configs (``_target_`` + arguments, without the
    params/optimizer argument) kept as plain dicts so checkpoints load with weights_only.
    ``finetune`` (``cnnlab.finetune``: the head's parameter names and the ``finetune.*``
    values) splits the parameters into a head and a backbone group and freezes the backbone
    for its first epochs. A scheduler config may carry Lightning's ``interval`` and
    ``monitor``; a ``total_steps: null`` (OneCycleLR) and an ``epochs: null`` (WarmupCosine)
    are filled in from the trainer.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        channels_last: bool = False,
        compile: bool | str = False,
        label_smoothing: float = 0.0,
        test_tta: str | None = None,
        finetune: Mapping[str, Any] | None = None,
    ):  # pragma: no mutate block (mutmut's wrapper would hide the arguments from save_hyperparameters)
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        if not (isinstance(label_smoothing, (int, float)) and 0 <= label_smoothing < 1):
            raise ConfigError(
                f"loss.label_smoothing={label_smoothing!r} must be in [0, 1): the share of each "
                f"target spread over the other classes (0.1 is common, 0 is plain cross-entropy)."
            )
        # training targets are smoothed; validation and test report plain cross-entropy, so
        # losses stay comparable between runs with and without smoothing
        self.train_criterion = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
        self.criterion = nn.CrossEntropyLoss()
        self.test_tta = test_tta  # "flip" or None; checked against the dataset by cnnlab.build
        self.lean_loop = True  # the run's lean_loop switch (cnnlab.run sets it); not a result
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # training loss sum, correct predictions, samples: three running sums instead of
        # torchmetrics objects, whose per-step bookkeeping costs ~10% of a LeNet-5 step on CPU
        self.register_buffer("train_sums", torch.zeros(3), persistent=False)
        # best validation accuracy so far and its epoch; saved in checkpoints for resuming
        self.val_acc_best = 0.0
        self.best_epoch = -1
        # validation / test confusion matrices: accuracy, per-class accuracy and the
        # diagnostics figures are all read off them (the last epoch's is kept in .confusion)
        self.val_confmat = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.test_confmat = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.confusion: dict[str, torch.Tensor] = {}
        if channels_last:  # NHWC: faster convolutions (CPU, tensor cores), same results to rounding
            self.net.to(memory_format=torch.channels_last)
        # torch.compile's wrapper is kept outside the module tree, so checkpoints hold the
        # plain net's weights and load with or without compilation
        backend = compile if isinstance(compile, str) else "inductor"
        object.__setattr__(
            self, "_run", torch.compile(self.net, backend=backend) if compile else self.net
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run(x)

    def _shared_step(
        self, batch, criterion: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # a mixup/cutmix training batch is (x, soft targets, original labels): the loss reads
        # the soft targets, accuracy the original labels
        x, target, y = batch if len(batch) == 3 else (*batch, batch[1])
        logits = self(x)
        return (criterion or self.criterion)(logits, target), logits.argmax(dim=1), y

    # -- training ----------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._shared_step(batch, self.train_criterion)
        if not torch.isfinite(loss):
            raise self._diverged(loss)
        with torch.no_grad():
            self.train_sums += torch.stack(
                [loss.detach() * len(y), (preds == y).sum(), y.new_tensor(len(y))]
            )
        if self._log_this_step(batch_idx):
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _log_this_step(self, batch_idx: int) -> bool:
        """Whether this step's loss is logged: with ``lean_loop`` (the default) only at the steps
        whose values Lightning shows (``cnnlab.lightning_workarounds.shown_step``), else at every
        step, as Lightning's own examples do."""
        trainer = self._trainer
        return trainer is None or not self.lean_loop or shown_step(trainer, batch_idx)

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
        self.log("train/loss_epoch", loss_sum / n)
        self.log("train/acc", correct / n)
        self.train_sums.zero_()

    # -- validation / test -------------------------------------------------------------
    def _eval_step(
        self, batch, loss_metric: MeanMetric, confmat: MulticlassConfusionMatrix
    ) -> None:
        loss, preds, y = self._shared_step(batch)
        # update(), not __call__: calling a metric also computes its value for this batch
        loss_metric.update(loss, weight=len(y))
        confmat.update(preds, y)

    def _eval_epoch_end(
        self, split: str, loss_metric: MeanMetric, confmat: MulticlassConfusionMatrix
    ) -> float:
        """Log loss, accuracy and per-class accuracy of the epoch; return the accuracy."""
        cm = confmat.compute()  # reduced across processes
        confmat.reset()
        self.confusion[split] = cm.cpu()
        acc = cm.trace() / cm.sum().clamp_min(1)
        self.log(f"{split}/loss", loss_metric, prog_bar=split == "val")
        self.log(f"{split}/acc", acc, prog_bar=split == "val")
        if not self.trainer.sanity_checking:
            names = self.hparams.class_names or [str(i) for i in range(len(cm))]
            per_class = per_class_accuracy(cm)
            self.log_dict(
                {
                    f"{split}/acc_class/{n.replace('/', '-')}": a
                    for n, a in zip(names, per_class, strict=True)
                }
            )
        return float(acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_confmat)

    def on_validation_epoch_end(self) -> None:
        acc = self._eval_epoch_end("val", self.val_loss, self.val_confmat)
        if not self.trainer.sanity_checking:  # the sanity pass is not an epoch
            if self.best_epoch < 0 or acc > self.val_acc_best:
                self.val_acc_best, self.best_epoch = acc, self.current_epoch
            self.log("val/acc_best", self.val_acc_best)

    def test_step(self, batch, batch_idx: int) -> None:
        if self.test_tta is None:
            return self._eval_step(batch, self.test_loss, self.test_confmat)
        x, y = batch
        probs = self.test_probs(x)
        # the cross-entropy of the averaged probabilities: what the prediction is made from
        self.test_loss.update(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y), len(y))
        self.test_confmat.update(probs.argmax(dim=1), y)

    def test_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities as the test sees them: with ``test_tta=flip`` the mean of the
        softmax of each image and of its horizontal mirror image."""
        probs = self(x).softmax(dim=1)
        if self.test_tta == "flip":
            probs = (probs + self(x.flip(-1)).softmax(dim=1)) / 2
        return probs

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_loss, self.test_confmat)

    def _diverged(self, loss: torch.Tensor) -> TrainingDiverged:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "")
        kept = f" The last good checkpoint is kept: {last}." if last else ""
        return TrainingDiverged(
            f"Training diverged: the loss became {loss.item()} at epoch {self.current_epoch}, "
            f"step {self.global_step} (learning rate {lr:g}). The learning rate is probably too "
            f"high: try optimizer.lr={lr / 10:g}, or batch norm (model.batch_norm=true).{kept}"
        )

    # -- state that Lightning does not checkpoint by itself ----------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best"] = {"val_acc": self.val_acc_best, "epoch": self.best_epoch}
        # dropout masks come from torch's RNG: restoring it makes a resumed run repeat exactly
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        best = checkpoint.get("best", {})
        self.val_acc_best, self.best_epoch = best.get("val_acc", 0.0), best.get("epoch", -1)
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    # -- optimisation ------------------------------------------------------------------
    def configure_callbacks(self) -> list[pl.Callback]:
        ft = self.hparams.finetune
        if not ft or (ft["freeze_epochs"] == 0 and ft["unfreeze"] == "all"):
            return []
        return [Finetune(ft["head"], ft["freeze_epochs"], ft["unfreeze"], ft["k"])]

    def configure_optimizers(self):
        ft = self.hparams.finetune
        if ft:  # two groups: the head at optimizer.lr, the backbone at backbone_lr x it
            groups = param_groups(
                self.net, ft["head"], ft["backbone_lr"], self.hparams.optimizer["lr"]
            )
            # _convert_: the groups reach the optimizer as plain dicts, not as OmegaConf nodes
            optimizer = instantiate(dict(self.hparams.optimizer), params=groups, _convert_="all")
        else:
            optimizer = instantiate(dict(self.hparams.optimizer), params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        cfg = dict(self.hparams.scheduler)
        if ft:
            cfg = scaled_scheduler(cfg, ft["backbone_lr"])
        interval = cfg.pop("interval", "epoch")
        monitor = cfg.pop("monitor", "val/loss")
        if "total_steps" in cfg and cfg["total_steps"] is None:
            cfg["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if "epochs" in cfg and cfg["epochs"] is None:  # WarmupCosine: epochs -> steps
            cfg["epochs"] = self.trainer.max_epochs
        # a per-group max_lr list reaches OneCycleLR as a list (finetune)
        scheduler = instantiate(cfg, optimizer=optimizer, _convert_="all" if ft else "none")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor},
        }
