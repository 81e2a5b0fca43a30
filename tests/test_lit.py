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


def weights(epoch: int, val_preds=VAL_PREDS) -> torch.Tensor:
    """The net's weight at ``epoch``: sample i's logits are column i (the input is one-hot)."""
    val = _logits(val_preds[epoch], 1.0 + epoch)
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
    def __init__(self, val_preds=VAL_PREDS):
        self.val_preds = val_preds
        self.shown: list[set[str]] = []  # the progress bar's keys after training and test

    def on_train_epoch_start(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.net.weight.copy_(weights(trainer.current_epoch, self.val_preds))

    def on_train_end(self, trainer, pl_module):
        self.shown.append(set(trainer.progress_bar_metrics))

    def on_test_end(self, trainer, pl_module):
        self.shown.append(set(trainer.progress_bar_metrics))


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


def fit(
    label_smoothing: float = 0.0, class_names=CLASSES, sanity_steps: int = 0, val_preds=VAL_PREDS
):
    net = nn.Linear(N_TRAIN + N_VAL + N_TEST, 3, bias=False)
    with torch.no_grad():  # before the first epoch (the sanity pass): every sample right
        net.weight.copy_(torch.eye(3)[torch.cat([TRAIN_Y, VAL_Y, TEST_Y])].T * 5)
    model = ImageClassifier(
        net,
        num_classes=3,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.0},
        class_names=class_names,
        label_smoothing=label_smoothing,
    )
    recorder = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=recorder,
        callbacks=[SetWeights(val_preds)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=sanity_steps,
        log_every_n_steps=1,
    )
    train_loader, val_loader, test_loader = loaders()
    trainer.fit(model, train_loader, val_loader)
    trainer.test(model, test_loader, verbose=False)
    return model, recorder.values


@pytest.fixture
def fitted():  # not shared between tests: mutmut runs, for a mutant in a hook, only the
    # tests during which the hook ran, and a module-scoped fit runs during the first one only
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


def test_a_first_epoch_that_stays_best_keeps_its_place():
    # 6/8, 4/8, 3/8, 6/8: epoch 0 is best, the later epochs fall and then only tie it
    model, logged = fit(val_preds=[VAL_PREDS[1], VAL_PREDS[0], VAL_PREDS[3], VAL_PREDS[2]])
    assert logged["val/acc"] == pytest.approx([6 / 8, 4 / 8, 3 / 8, 6 / 8])
    assert logged["val/acc_best"] == pytest.approx([6 / 8] * 4)
    assert (model.val_acc_best, model.best_epoch) == (pytest.approx(6 / 8), 0)


def test_the_accuracy_of_a_one_image_validation_split():
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    model = ImageClassifier(net, 2, optimizer={"_target_": "torch.optim.SGD", "lr": 0.0})
    recorder = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=recorder,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    one = DataLoader(TensorDataset(torch.tensor([[0.0, 1.0]]), torch.tensor([1])), batch_size=1)
    trainer.fit(model, one, one)
    assert recorder.values["val/acc"] == [1.0]  # 1 of 1, not 1 of 2


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


def test_the_sanity_pass_is_not_an_epoch():
    """Lightning's sanity pass sees the net before training, here right on every sample: it
    counts for neither the best accuracy nor the per-class accuracies."""
    model, logged = fit(sanity_steps=3)
    assert logged["val/acc"] == pytest.approx([4 / 8, 6 / 8, 6 / 8, 3 / 8])
    assert (model.val_acc_best, model.best_epoch) == (pytest.approx(6 / 8), 1)
    assert logged["val/acc_best"] == pytest.approx([4 / 8, 6 / 8, 6 / 8, 6 / 8])
    assert len(logged["val/acc_class/ant"]) == EPOCHS


def test_per_class_names_are_the_class_indices_without_names_and_lose_their_slashes():
    model, logged = fit(class_names=None)
    recall = _recall(TEST_PREDS, TEST_Y)
    assert [logged[f"test/acc_class/{i}"][-1] for i in range(3)] == pytest.approx(recall)
    _, logged = fit(class_names=["t/shirt", "bag", "a/b/c"])
    assert logged["test/acc_class/t-shirt"] == pytest.approx([recall[0]])
    assert logged["test/acc_class/a-b-c"] == pytest.approx([recall[2]])


def test_the_progress_bar_shows_validation_loss_and_accuracy_not_the_tests(fitted):
    model, _ = fitted
    after_training, after_test = model.trainer.callbacks[0].shown
    assert {"val/loss", "val/acc", "train/loss"} <= after_training
    assert not any("acc_class" in k or "best" in k for k in after_training)
    assert not any(k.startswith("test/") for k in after_test)


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


# -- unit level: the steps and hooks called by hand, a stand-in trainer where one is read ---


def _classifier(net=None, **kwargs) -> ImageClassifier:
    net = net if net is not None else nn.Linear(4, 3, bias=False)
    return ImageClassifier(net, 3, optimizer={"_target_": "torch.optim.SGD", "lr": 0.1}, **kwargs)


def _stand_in_trainer(lr=0.3, last="", epoch=2, step=17, **extra):
    from types import SimpleNamespace

    return SimpleNamespace(
        optimizers=[SimpleNamespace(param_groups=[{"lr": lr}])],
        checkpoint_callback=SimpleNamespace(last_model_path=last),
        current_epoch=epoch,
        global_step=step,
        **{"progress_bar_callback": None, "log_every_n_steps": 0, "should_stop": False, **extra},
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_training_with_the_learning_rate_to_try(bad):
    from cnnlab.errors import TrainingDiverged

    model = _classifier()
    model._trainer = _stand_in_trainer(lr=0.3, epoch=2, step=17)
    with torch.no_grad():
        model.net.weight.fill_(bad)
    x, y = torch.ones(2, 4), torch.tensor([0, 1])
    with pytest.raises(TrainingDiverged) as err:
        model.training_step((x, y), 0)
    assert str(err.value) == (
        "Training diverged: the loss became nan at epoch 2, step 17 (learning rate 0.3). The "
        "learning rate is probably too high: try optimizer.lr=0.03, or batch norm "
        "(model.batch_norm=true)."
    )
    assert torch.equal(model.train_sums, torch.zeros(3))  # nothing counted


def test_a_diverged_run_names_its_last_good_checkpoint():
    model = _classifier()
    model._trainer = _stand_in_trainer(lr=2.5e-4, last="/runs/a/checkpoints/last.ckpt", step=3)
    message = str(model._diverged(torch.tensor(float("inf"))))
    assert message.startswith("Training diverged: the loss became inf at epoch 2, step 3 ")
    assert "(learning rate 0.00025)" in message and "try optimizer.lr=2.5e-05," in message
    assert message.endswith(
        "(model.batch_norm=true). The last good checkpoint is kept: /runs/a/checkpoints/last.ckpt."
    )
    model._trainer.checkpoint_callback = None  # callbacks=none: no checkpoint to name
    assert str(model._diverged(torch.tensor(float("nan")))).endswith("(model.batch_norm=true).")


def test_a_mixup_batch_takes_the_loss_from_soft_targets_and_accuracy_from_the_labels():
    model = _classifier()
    with torch.no_grad():
        model.net.weight.copy_(torch.eye(3, 4))
    x = torch.tensor([[2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 3.0, 0]])
    soft = torch.tensor([[0.6, 0.4, 0], [0.5, 0, 0.5], [0, 0.3, 0.7]])
    y = torch.tensor([0, 2, 2])  # predictions 0, 1, 2: two right
    loss = model.training_step((x, soft, y), 0)
    assert loss.item() == pytest.approx(F.cross_entropy(x[:, :3], soft).item())
    assert loss.item() != pytest.approx(F.cross_entropy(x[:, :3], y).item())
    assert model.train_sums.tolist() == pytest.approx([loss.item() * 3, 2, 3])
    # a plain batch adds to the sums
    model.training_step((x[:2], torch.tensor([0, 1])), 1)
    plain = F.cross_entropy(x[:2, :3], torch.tensor([0, 1])).item()
    assert model.train_sums.tolist() == pytest.approx([loss.item() * 3 + plain * 2, 4, 5])


def test_training_loss_is_label_smoothed_evaluation_loss_is_not():
    model = _classifier(label_smoothing=0.3)
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    logits = model.net(x).detach()
    loss = model.training_step((x, y), 0)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.3).item())
    model.validation_step((x, y), 0)
    assert model.val_loss.compute().item() == pytest.approx(F.cross_entropy(logits, y).item())


@pytest.mark.parametrize(
    "bar_rate,every,stop,expected",
    [
        (None, 0, False, [False] * 6),  # no progress bar, no logger writes
        (None, 1, False, [True] * 6),  # the logger writes every step
        (None, 4, False, [False, False, True, False, False, False]),  # steps 17 + 1..6: 20
        (None, 4, True, [True] * 6),  # training stops: the logger writes this step
        (0, 0, False, [False] * 6),  # a bar that never redraws
        (3, 0, False, [False, False, True, False, False, True]),  # batches 3 and 6 redraw
        (1, 0, False, [True] * 6),
        (3, 4, False, [False, False, True, False, False, True]),
    ],
)
def test_a_step_loss_is_logged_when_the_logger_writes_or_the_bar_redraws(
    bar_rate, every, stop, expected
):
    from types import SimpleNamespace

    model = _classifier()
    assert model._log_this_step(5) is True  # outside a trainer: always
    trainer = _stand_in_trainer(log_every_n_steps=every, should_stop=stop)
    trainer.progress_bar_callback = (
        None if bar_rate is None else SimpleNamespace(refresh_rate=bar_rate)
    )
    model._trainer = trainer
    logged = []
    for i in range(6):  # the step count moves on after each step's optimizer step
        logged.append(model._log_this_step(i))
        trainer.global_step += 1
    assert logged == expected
    model.lean_loop = False  # Lightning as shipped: every step
    assert all(model._log_this_step(i) for i in range(6))


def test_channels_last_reaches_the_net_and_changes_no_value():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x).mean(dim=(2, 3))

    torch.manual_seed(0)
    probe = Probe()
    x = torch.rand(2, 3, 5, 5)
    plain = _classifier(probe)(x)
    fast = _classifier(probe, channels_last=True)(x)
    assert seen == [False, True]
    assert torch.allclose(plain, fast)


class _Lopsided(nn.Module):
    """Logits from the left half of each image only, so mirroring changes them."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2]
        return left.flatten(1)[:, :3] * 4


def test_flip_test_time_augmentation_averages_the_image_and_its_mirror():
    x = torch.rand(4, 1, 2, 6)
    y = torch.tensor([0, 1, 2, 1])
    plain = _classifier(_Lopsided())
    probs = _Lopsided()(x).softmax(1)
    mirrored = _Lopsided()(x.flip(-1)).softmax(1)
    assert not torch.allclose(probs, mirrored)
    assert torch.allclose(plain.test_probs(x), probs)
    tta = _classifier(_Lopsided(), test_tta="flip")
    assert torch.allclose(tta.test_probs(x), (probs + mirrored) / 2)
    # the test step's loss is the cross-entropy of the averaged probabilities, per sample
    mean = (probs + mirrored) / 2
    tta.test_step((x[:3], y[:3]), 0)
    tta.test_step((x[3:], y[3:]), 1)
    assert tta.test_loss.compute().item() == pytest.approx(F.nll_loss(mean.log(), y).item())
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(y.tolist(), mean.argmax(1).tolist(), strict=True):
        expected[t, p] += 1
    assert torch.equal(tta.test_confmat.compute(), expected)


def test_flip_test_loss_of_a_certain_wrong_prediction_is_large_but_finite():
    class Certain(nn.Module):
        def forward(self, x):
            return torch.tensor([[200.0, 0.0, 0.0]]).expand(len(x), 3)

    tta = _classifier(Certain(), test_tta="flip")
    tta.test_step((torch.rand(2, 1, 2, 2), torch.tensor([1, 1])), 0)
    # probabilities clamped at 1e-12 before the log: -log(1e-12)
    assert tta.test_loss.compute().item() == pytest.approx(-torch.tensor(1e-12).log().item())


def test_a_checkpoint_without_cnnlabs_state_loads_as_a_fresh_run():
    model = _classifier()
    model.val_acc_best, model.best_epoch = 0.9, 4
    model.on_load_checkpoint({})
    assert (model.val_acc_best, model.best_epoch) == (0.0, -1)
    model.on_load_checkpoint({"best": {"val_acc": 0.5}})
    assert (model.val_acc_best, model.best_epoch) == (0.5, -1)
    model.on_load_checkpoint({"best": {"epoch": 3}})
    assert (model.val_acc_best, model.best_epoch) == (0.0, 3)


def test_a_checkpoint_restores_the_random_state_so_a_resumed_run_repeats():
    model = _classifier()
    torch.manual_seed(5)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert set(checkpoint["rng"]) == ({"torch", "cuda"} if torch.cuda.is_available() else {"torch"})
    first = torch.rand(4)
    torch.manual_seed(6)
    model.on_load_checkpoint(checkpoint)
    assert torch.equal(torch.rand(4), first)
    # without a stored state the current one is left alone
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    model.on_load_checkpoint({"best": {}})
    assert torch.equal(torch.rand(4), expected)


def _optimizers(scheduler, max_epochs=6, steps=40):
    from types import SimpleNamespace

    model = _classifier(scheduler=scheduler)
    model._trainer = SimpleNamespace(estimated_stepping_batches=float(steps), max_epochs=max_epochs)
    return model, model.configure_optimizers()


def test_without_a_scheduler_configure_optimizers_gives_the_optimizer_alone():
    for scheduler in (None, {}):
        model, optimizer = _optimizers(scheduler)
        assert isinstance(optimizer, torch.optim.SGD)
        assert optimizer.param_groups[0]["lr"] == 0.1
        assert optimizer.param_groups[0]["params"] == [model.net.weight]


def test_a_scheduler_is_stepped_per_epoch_and_monitors_val_loss_unless_told():
    step = {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.5}
    _, out = _optimizers(step)
    assert isinstance(out["optimizer"], torch.optim.SGD)
    sched = out["lr_scheduler"]
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert sched["scheduler"].optimizer is out["optimizer"] and sched["scheduler"].step_size == 2
    assert (sched["interval"], sched["monitor"]) == ("epoch", "val/loss")
    plateau = {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "mode": "max",
        "interval": "epoch",
        "monitor": "val/acc",
    }
    model, out = _optimizers(plateau)
    assert (out["lr_scheduler"]["interval"], out["lr_scheduler"]["monitor"]) == ("epoch", "val/acc")
    assert out["lr_scheduler"]["scheduler"].mode == "max"
    assert model.hparams.scheduler["interval"] == "epoch"  # the stored config is not edited


def test_total_steps_and_epochs_left_empty_are_filled_from_the_trainer():
    onecycle = {
        "_target_": "torch.optim.lr_scheduler.OneCycleLR",
        "max_lr": 0.1,
        "total_steps": None,
        "interval": "step",
    }
    _, out = _optimizers(onecycle, steps=40)
    assert out["lr_scheduler"]["scheduler"].total_steps == 40
    assert out["lr_scheduler"]["interval"] == "step"
    given = dict(onecycle, total_steps=25)
    _, out = _optimizers(given, steps=40)
    assert out["lr_scheduler"]["scheduler"].total_steps == 25
    warmup = {
        "_target_": "cnnlab.schedulers.WarmupCosine",
        "warmup_epochs": 1,
        "epochs": None,
        "total_steps": None,
    }
    _, out = _optimizers(warmup, max_epochs=4, steps=40)
    sched = out["lr_scheduler"]["scheduler"]
    # one warmup epoch of four: 10 of the 40 steps
    assert sched.total_steps == 40 and sched.warmup_steps == 10


def test_the_cuda_random_state_travels_in_the_checkpoint_where_there_is_cuda(monkeypatch):
    """On a GPU machine the CUDA generators are saved and restored too (stood in for here:
    this test runs on CPU machines)."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0 state", "gpu1 state"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    model = _classifier()
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["rng"]["cuda"] == ["gpu0 state", "gpu1 state"]
    assert torch.equal(checkpoint["rng"]["torch"], torch.get_rng_state())
    model.on_load_checkpoint(checkpoint)
    assert restored == [["gpu0 state", "gpu1 state"]]
    model.on_load_checkpoint({"rng": {"torch": torch.get_rng_state()}})  # saved without CUDA
    assert len(restored) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # loaded without CUDA
    model.on_load_checkpoint(checkpoint)
    assert len(restored) == 1


def test_with_a_progress_bar_each_redraw_shows_the_step_loss():
    from pytorch_lightning.callbacks import TQDMProgressBar

    model = ImageClassifier(
        nn.Linear(N_TRAIN + N_VAL + N_TEST, 3, bias=False),
        3,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.0},
    )
    with torch.no_grad():
        model.net.weight.copy_(weights(0))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=[TQDMProgressBar(refresh_rate=1)],
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=50,  # the logger writes no step of this epoch: only the bar asks
    )
    train_loader, val_loader, _ = loaders()
    trainer.fit(model, train_loader, val_loader)
    per_sample = F.cross_entropy(TRAIN_LOGITS, TRAIN_Y, reduction="none")
    # the last redraw shows the last step's loss: the batch of 2
    assert trainer.progress_bar_metrics["train/loss"] == pytest.approx(per_sample[4:].mean().item())
