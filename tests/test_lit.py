"""The classifier's bookkeeping against values computed here, on a net whose logits are set by
hand: every sample's logits are a column of a weight matrix that a callback replaces at each
epoch (learning rate 0, so training changes nothing). Batches of unequal size, a validation
accuracy that rises, ties and falls, and a confusion matrix that is not symmetric make every
slip in weighting, comparison or orientation change a number."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.lit import ImageClassifier

CLASSES = ["ant", "bee", "cat"]
N_TRAIN, N_VAL, N_TEST = 6, 8, 7
TRAIN_Y = torch.tensor([0, 1, 2, 0, 1, 2])
VAL_Y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
TEST_Y = torch.tensor([0, 0, 1, 1, 1, 2, 2])
# training logits: the first batch of 4 right with a wide margin, the last batch of 2 wrong,
# so the per-sample mean loss and the mean of the two batch means are far apart
TRAIN_LOGITS = torch.tensor(
    [[4.0, 0, 0], [0, 3.0, 0], [0, 0, 5.0], [2.0, 0, 1.0], [3.0, 0.5, 0], [0, 2.5, 0]]
)
# what the net predicts for the 8 validation samples at each epoch: 4/8, 6/8, 6/8 (a tie
# with epoch 1), 3/8 right; so the best epoch is 1, the first of the two best
VAL_PREDS = [
    [0, 1, 2, 1, 0, 2, 0, 2],
    [0, 0, 1, 1, 1, 2, 2, 0],
    [0, 0, 0, 1, 2, 2, 2, 1],
    [1, 2, 0, 1, 0, 2, 0, 1],
]
TEST_PREDS = [0, 2, 1, 1, 0, 2, 1]  # recall (2 of each row) differs from precision (columns)
EPOCHS = len(VAL_PREDS)


def _logits(preds: list[int], scale: float) -> torch.Tensor:
    """One row per sample: ``scale`` for the predicted class, a little less for the next one
    (so losses differ from sample to sample), 0 for the rest."""
    out = torch.zeros(len(preds), 3)
    for i, p in enumerate(preds):
        out[i, p] = scale + 0.3 * i
        out[i, (p + 1) % 3] = 0.5 * i / len(preds)
    return out


def weights(epoch: int) -> torch.Tensor:
    """The net's weight at ``epoch``: sample i's logits are column i (the input is one-hot)."""
    val = _logits(VAL_PREDS[epoch], 1.0 + epoch)
    test = _logits(TEST_PREDS, 2.0)
    return torch.cat([TRAIN_LOGITS, val, test]).T.contiguous()


def _one_hot(start: int, n: int) -> torch.Tensor:
    return torch.eye(N_TRAIN + N_VAL + N_TEST)[start : start + n]


def loaders(train_batch: int = 4, eval_batch: int = 3):
    def loader(x, y, batch):
        return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)

    return (
        loader(_one_hot(0, N_TRAIN), TRAIN_Y, train_batch),  # batches of 4 and 2
        loader(_one_hot(N_TRAIN, N_VAL), VAL_Y, eval_batch),  # 3, 3, 2
        loader(_one_hot(N_TRAIN + N_VAL, N_TEST), TEST_Y, eval_batch),  # 3, 3, 1
    )


class SetWeights(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.net.weight.copy_(weights(trainer.current_epoch))


class Recorder(Logger):
    """Every logged value, in order."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[float]] = {}

    @property
    def name(self):
        return "recorder"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        for key, value in metrics.items():
            self.values.setdefault(key, []).append(float(value))


def fit(label_smoothing: float = 0.0):
    net = nn.Linear(N_TRAIN + N_VAL + N_TEST, 3, bias=False)
    model = ImageClassifier(
        net,
        num_classes=3,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.0},
        class_names=CLASSES,
        label_smoothing=label_smoothing,
    )
    recorder = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=recorder,
        callbacks=[SetWeights()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    train_loader, val_loader, test_loader = loaders()
    trainer.fit(model, train_loader, val_loader)
    trainer.test(model, test_loader, verbose=False)
    return model, recorder.values


@pytest.fixture(scope="module")
def fitted():
    return fit()


def _recall(preds, y) -> list[float]:
    preds, y = torch.as_tensor(preds), torch.as_tensor(y)
    return [float((preds[y == k] == k).float().mean()) for k in range(3)]


def test_validation_accuracy_and_loss_per_epoch_are_recomputed_values(fitted):
    _, logged = fitted
    for epoch in range(EPOCHS):
        logits = weights(epoch).T[N_TRAIN : N_TRAIN + N_VAL]
        assert logits.argmax(1).tolist() == VAL_PREDS[epoch]  # the design holds
        expected_acc = float((logits.argmax(1) == VAL_Y).float().mean())
        assert logged["val/acc"][epoch] == pytest.approx(expected_acc, abs=1e-7)
        # over samples, not the mean of the three batch means (3, 3 and 2 samples)
        assert logged["val/loss"][epoch] == pytest.approx(F.cross_entropy(logits, VAL_Y).item())
    assert logged["val/acc"] == pytest.approx([4 / 8, 6 / 8, 6 / 8, 3 / 8])


def test_best_validation_accuracy_is_the_running_maximum_and_its_first_epoch(fitted):
    model, logged = fitted
    assert logged["val/acc_best"] == pytest.approx([4 / 8, 6 / 8, 6 / 8, 6 / 8])
    assert model.val_acc_best == pytest.approx(6 / 8)
    assert model.best_epoch == 1  # not 2, which only tied it, nor 3, the last


def test_train_loss_epoch_is_the_per_sample_mean_not_the_mean_of_batch_means(fitted):
    _, logged = fitted
    per_sample = F.cross_entropy(TRAIN_LOGITS, TRAIN_Y, reduction="none")
    weighted = per_sample.mean().item()
    batch_means = (per_sample[:4].mean() + per_sample[4:].mean()).item() / 2
    assert abs(weighted - batch_means) > 0.3  # the two readings are far apart here
    assert logged["train/loss_epoch"] == pytest.approx([weighted] * EPOCHS, rel=1e-6)
    # the step losses are the batch means
    steps = logged["train/loss"]
    assert steps[:2] == pytest.approx([per_sample[:4].mean().item(), per_sample[4:].mean().item()])
    right = (TRAIN_LOGITS.argmax(1) == TRAIN_Y).float().mean().item()
    assert right == pytest.approx(4 / 6)
    assert logged["train/acc"] == pytest.approx([right] * EPOCHS)


def test_label_smoothing_is_in_the_training_loss_only():
    _, logged = fit(label_smoothing=0.2)
    smoothed = F.cross_entropy(TRAIN_LOGITS, TRAIN_Y, label_smoothing=0.2).item()
    plain = F.cross_entropy(TRAIN_LOGITS, TRAIN_Y).item()
    assert abs(smoothed - plain) > 0.05
    assert logged["train/loss_epoch"][-1] == pytest.approx(smoothed, rel=1e-6)
    val_logits = weights(EPOCHS - 1).T[N_TRAIN : N_TRAIN + N_VAL]
    assert logged["val/loss"][-1] == pytest.approx(F.cross_entropy(val_logits, VAL_Y).item())


def test_per_class_accuracy_is_the_recall_of_each_class(fitted):
    model, logged = fitted
    for epoch in range(EPOCHS):
        recall = _recall(VAL_PREDS[epoch], VAL_Y)
        got = [logged[f"val/acc_class/{name}"][epoch] for name in CLASSES]
        assert got == pytest.approx(recall, abs=1e-7)
    test_recall = _recall(TEST_PREDS, TEST_Y)
    assert test_recall == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert [logged[f"test/acc_class/{n}"][-1] for n in CLASSES] == pytest.approx(test_recall)
    # the confusion matrix kept for the figures: rows are the true classes
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(TEST_Y.tolist(), TEST_PREDS, strict=True):
        expected[t, p] += 1
    assert torch.equal(model.confusion["test"], expected)
    assert not torch.equal(expected, expected.T)


def test_test_accuracy_and_loss_are_over_every_test_sample(fitted):
    _, logged = fitted
    logits = weights(0).T[N_TRAIN + N_VAL :]
    assert logged["test/acc"] == [pytest.approx(4 / 7)]
    assert logged["test/loss"] == [pytest.approx(F.cross_entropy(logits, TEST_Y).item())]


def test_the_best_epoch_survives_a_checkpoint_round_trip(fitted):
    model, _ = fitted
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    fresh = ImageClassifier(
        nn.Linear(3, 3), 3, optimizer={"_target_": "torch.optim.SGD", "lr": 0.0}
    )
    assert (fresh.val_acc_best, fresh.best_epoch) == (0.0, -1)
    fresh.on_load_checkpoint(checkpoint)
    assert (fresh.val_acc_best, fresh.best_epoch) == (pytest.approx(6 / 8), 1)
