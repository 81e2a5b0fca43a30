"""What ``lean_loop`` is worth: the CPU time it saves as a share of a whole epoch of train.py.

``python -m tools.lean_loop_share OUT_DIR [key=value ...]`` trains LeNet-5 on
Fashion-MNIST the way train.py does (``cnnlab.run.train``, every default callback) with
``lean_loop=false``, so the training loss is logged at every step, and times in CPU seconds of
the training thread (``time.thread_time``, with ``threads=1``): each ``self.log`` of the loss,
and each whole epoch after the first (training, validation, checkpoints, figures). A shared,
busy machine slows the wall clock of a step several times over and swings it by more than
the effect (alternating the switch every 10 steps in one run did not resolve it here); the
CPU work of a call hardly moves. Prints one JSON line: the median cost of one call, how many
calls an epoch ``lean_loop=true`` leaves out (``shown_step`` is false), and their share of
the epoch's CPU time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from cnnlab.lightning_workarounds import shown_step
from cnnlab.lit import ImageClassifier


class EpochClock(pl.Callback):
    """CPU seconds of the training thread per epoch, from the second epoch on; the batch the
    step in progress trains on."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.batch_idx = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_idx = batch_idx

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.thread_time()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch >= 1 and not trainer.sanity_checking:
            self.epochs.append(time.thread_time() - self._start)


def measure(out: Path, overrides: list[str]) -> dict[str, Any]:
    from cnnlab.config import compose_config
    from cnnlab.run import train

    calls: list[tuple[float, bool]] = []  # (CPU seconds, whether lean_loop would skip it)
    log = ImageClassifier.log
    clock = EpochClock()

    def timed_log(self, name, *args, **kwargs):
        start = time.thread_time()
        result = log(self, name, *args, **kwargs)
        if name == "train/loss" and self.current_epoch >= 1:
            skipped = not shown_step(self.trainer, clock.batch_idx)
            calls.append((time.thread_time() - start, skipped))
        return result

    base = ["model=lenet", "data=fashion_mnist", "threads=1", "test=false", "trainer.max_epochs=3"]
    ImageClassifier.log = timed_log
    try:
        cfg = compose_config("train", [*base, *overrides, "lean_loop=false"], output_dir=out)
        train(cfg, callbacks=[clock])
    finally:
        ImageClassifier.log = log
    cost = statistics.median(c for c, _ in calls)
    skipped = sum(s for _, s in calls) / len(clock.epochs)
    epoch = statistics.median(clock.epochs)
    return {
        "self_log_ms": round(cost * 1e3, 3),
        "calls_skipped_per_epoch": skipped,
        "epoch_cpu_s": round(epoch, 3),
        "share_of_epoch": round(cost * skipped / epoch, 4),
    }


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]), sys.argv[2:])))
