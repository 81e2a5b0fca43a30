"""Every Lightning internal name cnnlab.lightning_workarounds relies on still exists.

A Lightning upgrade that renames one fails here, in one line naming the workaround, instead of
as an AttributeError deep in a run (or, worse, as a workaround that silently stops working).
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, WeightAveraging


def _missing(thing: str, workaround: str, why: str) -> str:
    return (
        f"Lightning {pl.__version__} no longer has {thing}, which "
        f"cnnlab.lightning_workarounds.{workaround} relies on: {why}"
    )


@pytest.mark.parametrize(
    "method",
    [
        "_should_skip_saving_checkpoint",
        "_should_save_on_train_epoch_end",
        "_save_last_checkpoint",
        "_monitor_candidates",
    ],
)
def test_model_checkpoint_still_has_what_save_last_now_calls(method):
    assert callable(getattr(ModelCheckpoint, method, None)), _missing(
        f"ModelCheckpoint.{method}",
        "save_last_now",
        "last.ckpt is written at every epoch through the callback's own saving code; find its "
        "new name in pytorch_lightning/callbacks/model_checkpoint.py",
    )


def test_weight_averaging_still_keeps_its_average_in_average_model():
    callback = WeightAveraging()
    assert "_average_model" in vars(callback), _missing(
        "WeightAveraging()._average_model",
        "averaging",
        "it tells whether validation runs on the swapped-in average; see "
        "pytorch_lightning/callbacks/weight_averaging.py",
    )
    assert callback._average_model is None  # no average before fitting starts


def test_the_fit_loop_still_counts_the_batches_of_its_epoch(tmp_path):
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    found = trainer
    for name in ("fit_loop", "epoch_loop", "batch_progress", "current", "ready"):
        assert hasattr(found, name), _missing(
            f"trainer...{name} (of trainer.fit_loop.epoch_loop.batch_progress.current.ready)",
            "batch_position",
            "per-batch augmentation draws are keyed by the batch's place in its epoch",
        )
        found = getattr(found, name)
    assert found == 0
