"""The standard regularisers as switches (issue 13, section 4): each does what it says,
checked against values computed here independently, and each is off by default."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cnnlab.callbacks.ema import EMA
from cnnlab.data.batch_augment import BatchMix
from cnnlab.errors import ConfigError
from tests.support.synthetic import write_mnist_like

from .conftest import QUICK, make_cfg, tiny_run


# -- mixup / cutmix ------------------------------------------------------------------------
def _batch(n=16, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.arange(n) % classes  # neighbours always differ: the mix is visible in the targets
    return x, y


def test_mixup_is_a_convex_mix_with_one_seeded_share_and_targets_summing_to_one():
    x, y = _batch()
    mix = BatchMix(mixup_alpha=0.4, cutmix_alpha=0.0, num_classes=10, seed=7)
    mixed, target = mix(x, y, key=(0, 3, 0))
    assert torch.allclose(target.sum(1), torch.ones(len(y)))
    lam = target[torch.arange(len(y)), y]  # the share of each image's own class
    assert torch.allclose(lam, lam[0].expand_as(lam)) and 0 < lam[0] < 1  # one share per batch
    assert torch.allclose(target[torch.arange(len(y)), y.roll(1)], 1 - lam)  # the rest: neighbour
    assert torch.allclose(mixed, lam[0] * x + (1 - lam[0]) * x.roll(1, 0), atol=1e-6)
    again, _ = BatchMix(0.4, 0.0, 10, seed=7)(x, y, key=(0, 3, 0))
    assert torch.equal(again, mixed)  # the same (seed, epoch, batch, rank): the same mix
    other, _ = mix(x, y, key=(0, 4, 0))
    assert not torch.equal(other, mixed)
    # no seed given: seed 0, as from_config's default
    unseeded, _ = BatchMix(0.4, 0.0, 10)(x, y, key=(0, 3, 0))
    assert torch.equal(unseeded, BatchMix(0.4, 0.0, 10, seed=0)(x, y, key=(0, 3, 0))[0])
    assert not torch.equal(unseeded, BatchMix(0.4, 0.0, 10, seed=1)(x, y, key=(0, 3, 0))[0])


def test_mixup_shares_follow_beta_alpha_alpha():
    x, y = _batch(n=2, classes=2)
    mix = BatchMix(mixup_alpha=0.2, cutmix_alpha=0.0, num_classes=2)
    lams = np.array([float(mix(x, y, key=(0, b, 0))[1][0, 0]) for b in range(3000)])
    # Beta(0.2, 0.2): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.1786 (uniform would be 0.083)
    assert abs(lams.mean() - 0.5) < 0.03
    assert abs(lams.var() - 1 / (4 * 1.4)) < 0.015


def test_cutmix_pastes_one_box_of_the_neighbour_and_weighs_targets_by_its_area():
    x, y = _batch()
    mix = BatchMix(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=10, seed=1)
    boxes = 0
    for b in range(20):
        mixed, target = mix(x, y, key=(1, b, 0))
        assert torch.allclose(target.sum(1), torch.ones(len(y)))
        pasted = (mixed != x).any(dim=(0, 1))  # (H, W): where any image took its neighbour's pixel
        assert torch.equal(mixed[..., pasted], x.roll(1, 0)[..., pasted])
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        area = 0.0
        if len(rows):  # the pasted pixels fill one rectangle
            box = pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert box.all() and box.sum() == pasted.sum()
            area, boxes = float(pasted.sum()) / pasted.numel(), boxes + 1
        assert torch.allclose(target[torch.arange(len(y)), y.roll(1)], torch.tensor(area))
    assert boxes >= 15  # Beta(1, 1): an empty box is rare


def test_the_cutmix_box_has_the_drawn_area_and_a_centre_uniform_over_the_image():
    """How often each row and column is pasted, over 4000 boxes, against the rule computed
    here: a box of side h·sqrt(1 - lam) (and w·sqrt(1 - lam)), its centre uniform over the
    image, clipped at the borders. lam ~ Beta(1e4, 1e4) is 0.5 to within 0.01."""
    h, w = 8, 12
    x = torch.zeros(2, 1, h, w)
    x[1] = 1.0  # image 0 takes its pasted pixels from image 1: ones mark the box
    mix = BatchMix(mixup_alpha=0.0, cutmix_alpha=1e4, num_classes=3)
    rows, cols = torch.zeros(h), torch.zeros(w)
    n = 4000
    for b in range(n):
        box = mix(x, torch.tensor([0, 1]), key=(0, b, 0))[0][0, 0] == 1.0
        rows += box.any(1).float()
        cols += box.any(0).float()

    def expected(size):  # pixel k is pasted when k + 0.5 lies in [centre - half, centre + half)
        half = size * 0.5**0.5 / 2
        k = np.arange(size) + 0.5
        return (np.minimum(size, k + half) - np.maximum(0, k - half)) / size

    assert np.abs(rows.numpy() / n - expected(h)).max() < 0.035, rows / n
    assert np.abs(cols.numpy() / n - expected(w)).max() < 0.035, cols / n


def test_soft_targets_have_a_column_per_class_even_when_the_batch_lacks_some():
    x, y = _batch(n=4, classes=2)
    for alphas in ((0.4, 0.0), (0.0, 1.0)):
        _, target = BatchMix(*alphas, num_classes=10)(x, y, key=(0, 0, 0))
        assert target.shape == (4, 10) and target[:, 2:].sum() == 0


def test_mixing_from_the_config_leaves_the_aug_warnings_to_the_augmentation(caplog):
    # the albumentations pipeline says once that rotate_limit without affine_p does nothing
    mix = BatchMix.from_config({"rotate_limit": 20, "mixup_alpha": 0.2}, num_classes=10)
    assert mix is not None and mix.mixup_alpha == 0.2 and caplog.messages == []


def test_the_device_path_names_each_setting_it_cannot_apply():
    from cnnlab.data.batch_augment import BatchAugmentation

    with pytest.raises(ConfigError) as e:
        BatchAugmentation.from_config({"pad_crop": 4, "rotate_limit": 20, "affine_p": 0.5})
    assert "got aug.rotate_limit=20, aug.affine_p=0.5. Use aug=cifar or aug=none" in str(e.value)


def test_both_on_mix_some_batches_each_way():
    x, y = _batch()
    mix = BatchMix(mixup_alpha=0.4, cutmix_alpha=1.0, num_classes=10)
    kinds = set()
    for b in range(20):
        mixed, _ = mix(x, y, key=(0, b, 0))
        unchanged = (mixed == x).all(dim=(0, 1)).float().mean()  # cutmix keeps most pixels
        kinds.add("cutmix" if unchanged > 0 else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_mixed_batches_learn_soft_targets_and_count_accuracy_on_labels(tmp_path, tiny_mnist):
    from cnnlab.build import build

    dm, model = build(make_cfg(tmp_path, tiny_mnist, "aug.mixup_alpha=0.2", "data.val_size=100"))
    x = torch.randn(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    soft = torch.tensor([[0.7, 0.3] + [0.0] * 8] * 4)
    loss, preds, labels = model._shared_step((x, soft, y), model.train_criterion)
    by_hand = -(soft * model(x).log_softmax(1)).sum(1).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    assert torch.equal(labels, y)  # accuracy is counted against the original labels
    assert dm.batch_mix is not None and dm.batch_mix.mixup_alpha == 0.2


@pytest.mark.parametrize("switch", ["aug.mixup_alpha=0.4", "aug.cutmix_alpha=1.0"])
def test_mixing_trains_end_to_end_on_both_data_paths(switch, tmp_path, monkeypatch):
    mixed = []
    real_call = BatchMix.__call__

    def spy(self, x, y, key=()):
        mixed.append(key)
        return real_call(self, x, y, key)

    monkeypatch.setattr(BatchMix, "__call__", spy)
    for resident in ("false", "true"):
        mixed.clear()
        _, metrics = tiny_run(
            tmp_path / resident, switch, f"data.resident={resident}", "trainer.max_epochs=2"
        )
        assert metrics["status"] == "completed" and metrics["test/acc"] > 0.3  # chance is 0.1
        # every training batch was mixed (10 a epoch), no validation or test batch
        assert len(mixed) == 20 and len(set(mixed)) == 20


def test_mixing_is_off_by_default_and_bad_alphas_are_refused(tmp_path, tiny_mnist):
    from cnnlab.build import build

    dm, _ = build(make_cfg(tmp_path, tiny_mnist))
    assert dm.batch_mix is None
    with pytest.raises(ConfigError, match=r"aug.mixup_alpha=-1 must be a number >= 0"):
        build(make_cfg(tmp_path, tiny_mnist, "aug.mixup_alpha=-1"))


# -- weight EMA ----------------------------------------------------------------------------
class _Recorder(pl.Callback):
    """The training weights after every optimizer step (floating tensors of the net)."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = pl_module.net.state_dict()
        self.steps.append({k: v.clone() for k, v in state.items() if v.is_floating_point()})


def _ema_by_hand(steps: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    average = dict(steps[0])  # the first step's weights, then the moving average
    for weights in steps[1:]:
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
    return average


def _net_state(path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k[4:]: v for k, v in state.items() if k.startswith("net.") and v.is_floating_point()}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ema_evaluates_and_saves_the_moving_average_of_the_training_weights(tmp_path, monkeypatch):
    import cnnlab.run as run

    recorder = _Recorder()
    real = run._callbacks
    monkeypatch.setattr(run, "_callbacks", lambda cfg: [*real(cfg), recorder])
    cfg, metrics = tiny_run(
        tmp_path, "ema.enabled=true", "ema.decay=0.9", "model.batch_norm=true",
        "trainer.max_epochs=2", "trainer.limit_train_batches=6",
    )  # fmt: skip
    assert len(recorder.steps) == 12
    expected = _ema_by_hand(recorder.steps, 0.9)
    folder = tmp_path / "run" / "checkpoints"
    assert _close(_net_state(folder / "last.ckpt"), expected)  # batch-norm statistics too
    assert not _close(expected, recorder.steps[-1])  # the average is not the last weights
    # the tested checkpoint holds the average of its epoch, and test/loss is that average's
    from cnnlab.build import build
    from cnnlab.checkpoint import load_classifier

    best_epoch = metrics["best_epoch"]
    assert _close(
        _net_state(folder / "best.ckpt"), _ema_by_hand(recorder.steps[: 6 * (best_epoch + 1)], 0.9)
    )
    model, _ = load_classifier(folder / "best.ckpt")
    dm, _ = build(cfg)
    dm.setup()
    x, y = dm.test_set[torch.arange(len(dm.test_set))]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(dm.normalize(x)), y)
    assert abs(float(loss) - metrics["test/loss"]) < 1e-4


def test_a_resumed_run_continues_the_same_average(tmp_path):
    ema = ("ema.enabled=true", "ema.decay=0.8", "trainer.limit_train_batches=5")
    tiny_run(tmp_path / "whole", *ema, "trainer.max_epochs=2")
    tiny_run(tmp_path / "half", *ema, "trainer.max_epochs=1")
    half = tmp_path / "half" / "run" / "checkpoints" / "last.ckpt"
    tiny_run(tmp_path / "resumed", *ema, "trainer.max_epochs=2", f"ckpt_path={half}")
    whole = _net_state(tmp_path / "whole" / "run" / "checkpoints" / "last.ckpt")
    resumed = _net_state(tmp_path / "resumed" / "run" / "checkpoints" / "last.ckpt")
    assert _close(resumed, whole)


def _floats(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and v.is_floating_point()
    }


class _InterruptInValidation(pl.Callback):
    """Ctrl-C in the middle of the second validation; keeps what each model held then."""

    def on_validation_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.current_epoch == 1:
            ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
            self.module = {k: v.clone() for k, v in pl_module.net.state_dict().items()}
            averaged = ema._average_model.module.net.state_dict()
            self.averaged = {k: v.clone() for k, v in averaged.items()}
            raise KeyboardInterrupt


def test_a_checkpoint_saved_during_validation_keeps_the_average_and_the_weights_apart(tmp_path):
    """Mid-validation the module holds the average (swapped in) and the averaged model the
    training weights: last.ckpt must still store the average as its weights and the training
    weights as the ones a resumed run trains on."""
    import cnnlab.run as run

    stop = _InterruptInValidation()
    data_dir = tmp_path / "data"
    write_mnist_like(data_dir, "mnist", n_train=600, n_test=200)
    cfg = make_cfg(
        tmp_path, data_dir, *QUICK, "ema.enabled=true", "ema.decay=0.8",
        "trainer.max_epochs=3", "trainer.limit_train_batches=5",
    )  # fmt: skip
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run.train(cfg, callbacks=[stop])
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    average, weights = _floats(stop.module, ""), _floats(stop.averaged, "")
    assert not _close(average, weights)
    assert _close(_floats(saved["state_dict"], "net."), average)
    assert _close(_floats(saved["current_model_state"], "net."), weights)


def test_ema_is_off_by_default_and_a_bad_decay_is_refused(tmp_path, tiny_mnist):
    from cnnlab.callbacks.ema import EMA
    from cnnlab.run import _callbacks

    assert not any(isinstance(c, EMA) for c in _callbacks(make_cfg(tmp_path, tiny_mnist)))
    with pytest.raises(ConfigError, match=r"ema.decay=1.5 must be in \(0, 1\)"):
        _callbacks(make_cfg(tmp_path, tiny_mnist, "ema.enabled=true", "ema.decay=1.5"))


class _Steps(pl.Callback):
    """The learning rate of every training step, and the weights before and after each."""

    def __init__(self):
        self.lrs: list[float] = []
        self.moves: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self._before = torch.cat([p.detach().flatten().clone() for p in pl_module.parameters()])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        after = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.moves.append(float((after - self._before).norm()))


def _recorded_run(tmp_path, monkeypatch, *overrides):
    import cnnlab.run as run

    steps, real = _Steps(), run._callbacks
    monkeypatch.setattr(run, "_callbacks", lambda cfg: [*real(cfg), steps])
    return steps, tiny_run(tmp_path, *overrides)[1]


# -- warmup + cosine -----------------------------------------------------------------------
def test_warmup_cosine_follows_its_formula_step_by_step(tmp_path, monkeypatch):
    steps, metrics = _recorded_run(
        tmp_path, monkeypatch, "scheduler=warmup_cosine", "scheduler.warmup_epochs=0.5",
        "optimizer.lr=0.01", "trainer.max_epochs=3", "trainer.limit_train_batches=8",
    )  # fmt: skip
    total, warmup = 24, 4  # 3 epochs x 8 batches; half an epoch of warmup
    expected = [
        0.01 * (s + 1) / warmup if s < warmup
        else 0.01 * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (total - warmup)))
        for s in range(total)
    ]  # fmt: skip
    assert np.allclose(steps.lrs, expected, rtol=1e-9)
    assert metrics["status"] == "completed"  # its checkpoint was tested: the allow-list takes it


def test_warmup_longer_than_the_run_is_refused():
    from cnnlab.schedulers import WarmupCosine

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(
        ConfigError, match=r"scheduler.warmup_epochs=4 must be a number in \[0, 3\]"
    ):
        WarmupCosine(opt, total_steps=30, epochs=3, warmup_epochs=4)


# -- gradient clipping ---------------------------------------------------------------------
PLAIN_SGD = (
    "optimizer=sgd", "optimizer.lr=1.0", "optimizer.momentum=0", "optimizer.nesterov=false",
    "optimizer.weight_decay=0", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
)  # fmt: skip


def test_gradient_clipping_bounds_the_gradient_norm(tmp_path, monkeypatch):
    # plain SGD at lr 1 moves the weights by exactly the gradient: its norm is the step's
    free, _ = _recorded_run(tmp_path / "free", monkeypatch, *PLAIN_SGD)
    assert min(free.moves) > 0.05  # unclipped gradients are larger than the limit below
    clipped, _ = _recorded_run(
        tmp_path / "clipped", monkeypatch, *PLAIN_SGD, "trainer.gradient_clip_val=0.05"
    )
    assert np.allclose(clipped.moves, 0.05, rtol=1e-4)  # clipped to the limit, not below


# -- early stopping ------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    # a learning rate too small to learn much: validation accuracy stalls, and training
    # stops `patience` epochs after its best one, long before max_epochs
    _, metrics = tiny_run(
        tmp_path, "callbacks.early_stopping.patience=2", "trainer.max_epochs=30",
        "trainer.limit_train_batches=2", "optimizer.lr=0.0001",
    )  # fmt: skip
    assert metrics["epochs"] == metrics["best_epoch"] + 2 + 1 < 30


def test_early_stopping_is_off_by_default_and_in_the_run_fingerprint(tmp_path, tiny_mnist):
    from pytorch_lightning.callbacks import EarlyStopping

    from cnnlab.record import fingerprint
    from cnnlab.run import _callbacks

    cfg = make_cfg(tmp_path, tiny_mnist)
    assert not any(isinstance(c, EarlyStopping) for c in _callbacks(cfg))
    on = make_cfg(tmp_path, tiny_mnist, "callbacks.early_stopping.patience=5")
    assert [c.patience for c in _callbacks(on) if isinstance(c, EarlyStopping)] == [5]
    assert fingerprint(on) != fingerprint(cfg)
    with pytest.raises(
        ConfigError, match=r"callbacks.early_stopping.patience=0 must be an integer"
    ):
        _callbacks(make_cfg(tmp_path, tiny_mnist, "callbacks.early_stopping.patience=0"))


def test_switches_left_off_keep_the_fingerprint_of_runs_made_before_them(tmp_path, tiny_mnist):
    from omegaconf import open_dict

    from cnnlab.neutral_keys import switches
    from cnnlab.record import fingerprint

    cfg = make_cfg(tmp_path, tiny_mnist)
    before = cfg.copy()
    with open_dict(before):  # the config as it was before these switches existed
        for path in (p for p in switches() if not p.startswith("data.aug.")):
            *parents, last = path.split(".")
            node = before
            for key in parents:
                node = node[key]
            node.pop(last, None)
        before.callbacks.pop("early_stopping")
    assert fingerprint(before) == fingerprint(cfg)
    assert fingerprint(make_cfg(tmp_path, tiny_mnist, "aug.mixup_alpha=0.2")) != fingerprint(cfg)


# -- test-time augmentation ----------------------------------------------------------------
def test_flip_tta_tests_on_the_mean_of_both_passes(tmp_path, data_dir, monkeypatch):
    from cnnlab.build import build
    from cnnlab.checkpoint import load_classifier
    from cnnlab.run import evaluate, train
    from tests.support.synthetic import write_synthetic

    write_synthetic("fashion_mnist", data_dir, n_train=600, n_test=200)
    common = ("data=fashion_mnist", "data.val_size=100", "data.batch_size=50", "optimizer.lr=0.003")
    cfg = make_cfg(tmp_path, data_dir, *common, "trainer.max_epochs=1", "test_tta=flip")
    metrics = train(cfg)
    model, _ = load_classifier(tmp_path / "run" / "checkpoints" / "best.ckpt")
    dm, _ = build(cfg)
    dm.setup()
    x, y = dm.test_set[torch.arange(len(dm.test_set))]
    x = dm.normalize(x)
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(torch.flip(x, dims=[3])).softmax(1)) / 2
        plain = model(x).softmax(1)
    assert not torch.allclose(probs, plain, atol=1e-3)  # the mirror pass changes the numbers
    assert abs(metrics["test/acc"] - float((probs.argmax(1) == y).float().mean())) < 1e-6
    assert abs(metrics["test/loss"] - float(-probs[torch.arange(len(y)), y].log().mean())) < 1e-4
    # eval.py test_tta=flip: the same numbers from the checkpoint
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    out = make_cfg(tmp_path / "eval", data_dir, f"ckpt_path={ckpt}", "test_tta=flip", config="eval")
    again = evaluate(out)
    assert abs(again["test/loss"] - metrics["test/loss"]) < 1e-5


@pytest.mark.parametrize("data", ["mnist", "svhn"])
def test_flip_tta_is_refused_for_digits(data, tmp_path):
    from cnnlab.build import build
    from cnnlab.config import compose_config

    cfg = compose_config("train", [f"data={data}", "test_tta=flip"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"test_tta=flip is refused for (MNIST|SVHN): a mirrored"):
        build(cfg)
    with pytest.raises(ConfigError, match=r"test_tta='rotate' is not a test-time augmentation"):
        build(compose_config("train", ["data=cifar10", "test_tta=rotate"], output_dir=tmp_path))


def test_a_named_regulariser_applies_over_an_experiment():
    from cnnlab.config import compose_config

    cfg = compose_config("train", ["experiment=lenet_fashion", "regulariser=warmup_cosine"])
    assert cfg.scheduler._target_ == "cnnlab.schedulers.WarmupCosine"
    assert cfg.model.batch_norm  # the experiment's own settings stay
