"""What cnnlab does about Lightning: the per-step cost it cuts and the behaviours it fixes.

Every Lightning internal cnnlab uses is here, each in the function that needs it; everything
else in cnnlab uses Lightning's public API only. ``tests/test_lightning_workarounds.py`` checks
each internal name against the installed Lightning, so an upgrade that removes one fails in one
line naming the function here that relies on it, not somewhere deep in a run.

Speed, switched by ``lean_loop`` (conf/train.yaml; on by default, the same results):

- ``shown_step``: the training loss is logged only at the steps whose values Lightning shows.
  ``self.log`` costs about 0.9-1 ms of CPU a call and Lightning discards the step values its
  logger does not write: 4.4% of a whole LeNet-5 epoch at one thread, about twice that at two
  (``python -m tools.lean_loop_share``; docs/PERFORMANCE.md). Public API only.

Fixes of Lightning's behaviour (always on: a run is wrong without them):

- ``save_last_now``: ``last.ckpt`` at every epoch (``ModelCheckpoint`` private methods);
- ``averaging``: whether ``WeightAveraging`` holds an average (``_average_model``);
- ``batch_position``: the training batch's position in its epoch, for per-batch random draws
  that repeat after a resume (the fit loop's batch progress).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, WeightAveraging


def shown_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether Lightning shows the values a training step logs: its logger writes them (every
    ``trainer.log_every_n_steps`` optimizer steps, and when training stops) or the progress bar
    redraws after it. Called from the step, before its optimizer step: the step count
    Lightning's logger connector tests is then ``trainer.global_step``."""
    bar = trainer.progress_bar_callback
    rate = getattr(bar, "refresh_rate", 0) if bar is not None else 0
    redraw = rate > 0 and (batch_idx + 1) % rate == 0
    every = trainer.log_every_n_steps
    written = every > 0 and ((trainer.global_step + 1) % every == 0 or trainer.should_stop)
    return redraw or written


def save_last_now(
    checkpoint: ModelCheckpoint, trainer: pl.Trainer, at_train_epoch_end: bool
) -> None:
    """Write ``last.ckpt`` now, if ``checkpoint`` saves at this point of the epoch.

    Lightning 2.6 writes ``last.ckpt`` only in epochs that also wrote a top-k checkpoint: after
    an epoch that did not improve the monitored value ``last.ckpt`` would be older than the
    run, and a resumed run would train that epoch again. ``last.ckpt`` is the resume point, so
    it is written at every epoch, through the callback's own (private) saving code: the file
    name, versioning and the callback's ``last_model_path`` stay Lightning's.
    """
    if (
        not checkpoint._should_skip_saving_checkpoint(trainer)  # nothing saved at this step
        and checkpoint._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
    ):
        checkpoint._save_last_checkpoint(trainer, checkpoint._monitor_candidates(trainer))


def averaging(callback: WeightAveraging) -> bool:
    """Whether ``callback`` holds an average now (it makes one only when fitting starts), and so
    swaps it into the module for validation: Lightning keeps that only in ``_average_model``."""
    return callback._average_model is not None


def batch_position(trainer: pl.Trainer) -> int:
    """The training batch's place in its epoch: the fit loop's count of the epoch's batches
    fetched so far. Lightning passes ``batch_idx`` to the step, not to
    ``on_after_batch_transfer`` where batch augmentation draws; the loop's counter is restored
    from a checkpoint with the loader's position, so a resumed epoch draws as the original."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.ready
