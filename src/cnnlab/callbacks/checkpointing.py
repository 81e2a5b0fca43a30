"""Checkpointing: ``last.ckpt`` at every epoch and on an interrupt, best checkpoints carried
into a resumed run, and no path from a checkpoint trusted."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning import callbacks
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cnnlab.lightning_workarounds import save_last_now


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
        if self.save_last:
            save_last_now(self, trainer, at_train_epoch_end)

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
